//! Hostile input (issue 3, item 5): hand-crafted malformed models, each run through the `kestrel`
//! binary (`dump`, `dump -o`, `run --outputs --output-dir`).
//!
//! Contract checked for every case: exit status 1; stderr is exactly one line starting with
//! `kestrel: error:` that names the model file and (where a node is concerned) the node's name and
//! op; no panic; the command finishes within [`TIMEOUT`]; and no output file is left behind.

mod onnx_builders;
use onnx_builders::*;

use bytes::Bytes;
use kestrel::onnx::proto::{
    tensor_shape_proto::dimension, AttributeProto, AttributeType, DataLocation, DataType,
    ModelProto, NodeProto, StringStringEntryProto, TensorProto,
};
use kestrel::onnx::tensor_to_proto;
use kestrel_ir::Tensor;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single command may take on a hostile input.
const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- running the binary

struct Outcome {
    /// `None` when killed by a signal.
    code: Option<i32>,
    stderr: String,
    secs: f64,
}

/// Runs `kestrel args` with a deadline: the child is killed after [`TIMEOUT`] and the test fails.
/// Stdout and stderr go to files in `scratch` so a chatty child cannot block on a full pipe.
fn kestrel(scratch: &Path, args: &[&str]) -> Outcome {
    let out = std::fs::File::create(scratch.join("stdout")).unwrap();
    let err_path = scratch.join("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn kestrel");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kestrel {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        secs: start.elapsed().as_secs_f64(),
    }
}

/// Exit 1, one `kestrel: error:` line containing every needle, no panic.
fn assert_clean_error(o: &Outcome, what: &str, needles: &[&str]) {
    let e = &o.stderr;
    assert_eq!(o.code, Some(1), "{what}: expected exit 1, stderr: {e}");
    assert!(!e.contains("panicked"), "{what}: panic: {e}");
    assert!(
        e.starts_with("kestrel: error: ") && e.ends_with('\n') && e.lines().count() == 1,
        "{what}: expected one `kestrel: error:` line, got: {e:?}"
    );
    for n in needles {
        assert!(e.contains(n), "{what}: stderr lacks {n:?}: {e}");
    }
}

/// Files under `dir`, recursively (outputs that must not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
                out.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Writes `m` as `<dir>/<name>.onnx` and checks that `dump`, `dump -o` and `run` (with `inputs`
/// as an `.npz`) all fail cleanly naming the file and every needle, writing nothing.
fn expect_import_error(name: &str, m: &ModelProto, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    check_fails_everywhere(dir.path(), &path, &[], needles, true);
}

/// Like [`expect_import_error`] for a file whose bytes are given.
fn expect_bytes_error(name: &str, bytes: &[u8], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    std::fs::write(&path, bytes).unwrap();
    check_fails_everywhere(dir.path(), &path, &[], needles, true);
}

/// A model that imports (`dump` succeeds) but fails when run on `inputs`.
fn expect_run_error(name: &str, m: &ModelProto, inputs: &[(&str, Tensor)], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    check_fails_everywhere(dir.path(), &path, inputs, needles, false);
}

fn check_fails_everywhere(
    dir: &Path,
    model: &Path,
    inputs: &[(&str, Tensor)],
    needles: &[&str],
    dump_fails: bool,
) {
    let scratch = dir.join("scratch");
    let out = dir.join("out");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let m = model.to_str().unwrap();
    let label = model.file_name().unwrap().to_string_lossy().into_owned();
    let mut all: Vec<&str> = vec![m];
    all.extend_from_slice(needles);
    let what = |cmd: &str| format!("{label} ({cmd})");

    let kir = out.join("m.kir");
    for args in [
        vec!["dump", m],
        vec!["dump", m, "-o", kir.to_str().unwrap()],
    ] {
        let o = kestrel(&scratch, &args);
        if dump_fails {
            assert_clean_error(&o, &what(&args.join(" ")), &all);
        } else {
            assert_eq!(o.code, Some(0), "{}: {}", what("dump"), o.stderr);
        }
    }
    if !dump_fails {
        for f in files_under(&out) {
            let _ = std::fs::remove_file(f);
        }
    }

    let npz_in = scratch.join("inputs.npz");
    let named: Vec<(String, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    kestrel::tensor_io::write_npz(&npz_in, &named).unwrap();
    let npz_out = out.join("o.npz");
    let out_dir = out.join("od");
    let args = [
        "run",
        m,
        "--inputs",
        npz_in.to_str().unwrap(),
        "--outputs",
        npz_out.to_str().unwrap(),
        "--output-dir",
        out_dir.to_str().unwrap(),
    ];
    let o = kestrel(&scratch, &args);
    assert_clean_error(&o, &what("run"), &all);
    assert!(o.secs < TIMEOUT.as_secs_f64());
    let left = files_under(&out);
    assert!(left.is_empty(), "{label}: failure left {left:?} behind");
}

// ---------------------------------------------------------------- builders

/// One node reading graph input `x` (f32 [2, 3]) and initializers, producing `y`.
fn one_node(n: NodeProto, inits: Vec<TensorProto>) -> ModelProto {
    model(17, vec![n], inits, vec![f32_in("x", &[2, 3])], &["y"])
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

// ---------------------------------------------------------------- whole files

#[test]
fn truncated_and_random_files() {
    let bytes = std::fs::read(fixtures().join("digits/digits_cnn.onnx")).unwrap();
    for cut in [0, 1, 2, 9, 100, bytes.len() / 2, bytes.len() - 1] {
        expect_bytes_error(&format!("cut{cut}"), &bytes[..cut], &[]);
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut junk = vec![0u8; 4096];
    for b in junk.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    expect_bytes_error("random", &junk, &["not a valid ONNX protobuf"]);
    // A length prefix claiming far more than the file holds, for the graph field.
    expect_bytes_error(
        "huge_len",
        &[0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        &["not a valid ONNX protobuf"],
    );
    // Deeply nested groups (wire type 3) of an unknown field.
    let mut nested = vec![0x0bu8; 200_000];
    nested.extend(std::iter::repeat_n(0x0cu8, 200_000));
    expect_bytes_error("nested", &nested, &["not a valid ONNX protobuf"]);
    // A directory and a missing file.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("dir.onnx");
    std::fs::create_dir(&d).unwrap();
    let scratch = dir.path();
    let o = kestrel(scratch, &["dump", d.to_str().unwrap()]);
    assert_clean_error(&o, "directory", &["dir.onnx"]);
    let o = kestrel(scratch, &["run", "no/such/model.onnx"]);
    assert_clean_error(&o, "missing", &["no/such/model.onnx"]);
}

#[test]
fn models_without_a_usable_graph() {
    let mut m = model(17, vec![], vec![], vec![], &[]);
    m.graph = None;
    expect_import_error("no_graph", &m, &["has no graph"]);
    expect_import_error(
        "empty_graph",
        &model(17, vec![], vec![], vec![], &[]),
        &["no outputs"],
    );
    let mut m = one_node(node("Relu", &["x"], &["y"], vec![]), vec![]);
    m.opset_import.clear();
    expect_import_error("no_opset", &m, &["Relu_y", "Relu", "no opset"]);
    let mut m = one_node(node("Relu", &["x"], &["y"], vec![]), vec![]);
    m.opset_import[0].domain = "com.example".into();
    expect_import_error("other_opset_only", &m, &["Relu_y", "no opset"]);
    let m = one_node(node("Relu", &["x"], &["y"], vec![]), vec![]);
    let mut m2 = m.clone();
    m2.graph.as_mut().unwrap().output = vec![out("ghost")];
    expect_import_error("ghost_output", &m2, &["\"ghost\"", "not defined"]);
    let mut m3 = m.clone();
    m3.graph.as_mut().unwrap().output.push(out(""));
    expect_import_error("unnamed_output", &m3, &["output"]);
    let mut m4 = m;
    m4.opset_import[0].version = -5;
    expect_import_error("negative_opset", &m4, &["opset version -5"]);
}

#[test]
fn cycles_and_undefined_values() {
    let nodes = vec![
        node("Relu", &["b"], &["a"], vec![]),
        node("Neg", &["a"], &["b"], vec![]),
    ];
    expect_import_error(
        "cycle",
        &model(17, nodes, vec![], vec![f32_in("x", &[1])], &["a"]),
        &["cycle", "Relu_a", "Neg_b"],
    );
    let self_loop = vec![node("Relu", &["a"], &["a"], vec![])];
    expect_import_error(
        "self_loop",
        &model(17, self_loop, vec![], vec![], &["a"]),
        &["Relu_a"],
    );
    expect_import_error(
        "undefined_input",
        &one_node(node("Add", &["x", "nope"], &["y"], vec![]), vec![]),
        &["Add_y", "\"nope\""],
    );
}

#[test]
fn duplicate_value_names_name_both_definitions() {
    // Two nodes define "y".
    let nodes = vec![
        node("Relu", &["x"], &["y"], vec![]),
        NodeProto {
            name: "second".into(),
            ..node("Neg", &["x"], &["y"], vec![])
        },
    ];
    expect_import_error(
        "two_nodes",
        &model(17, nodes, vec![], vec![f32_in("x", &[2, 3])], &["y"]),
        &["\"y\"", "Relu_y", "second", "Neg", "defined twice"],
    );
    // A node output named like the graph input.
    let m = one_node(node("Relu", &["x"], &["x"], vec![]), vec![]);
    expect_import_error(
        "shadows_input",
        &m,
        &["\"x\"", "Relu_x", "graph input", "defined twice"],
    );
    // A node output named like an initializer.
    let m = one_node(
        node("Add", &["x", "w"], &["w"], vec![]),
        vec![init_f32("w", &[3], &[1.0; 3])],
    );
    expect_import_error(
        "shadows_initializer",
        &m,
        &["\"w\"", "Add_w", "initializer", "defined twice"],
    );
    // Two initializers named alike.
    let m = model(
        17,
        vec![],
        vec![
            init_f32("w", &[1], &[1.0]),
            init_f32("w", &[2], &[1.0, 2.0]),
        ],
        vec![],
        &["w"],
    );
    expect_import_error("two_initializers", &m, &["\"w\"", "twice"]);
    // Two graph inputs named alike.
    let m = model(
        17,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![],
        vec![f32_in("x", &[2]), f32_in("x", &[3])],
        &["y"],
    );
    expect_import_error("two_inputs", &m, &["\"x\"", "twice"]);
    // One node listing the same output twice.
    let m = one_node(
        node("Split", &["x"], &["y", "y"], vec![a_int("axis", 1)]),
        vec![],
    );
    expect_import_error("same_output_twice", &m, &["\"y\"", "Split_y", "twice"]);
}

// ---------------------------------------------------------------- tensors and shapes

#[test]
fn absurd_dimensions() {
    use dimension::Value::DimValue;
    let relu = || vec![node("Relu", &["x"], &["y"], vec![])];
    let input = |dims: Vec<i64>| {
        model(
            17,
            relu(),
            vec![],
            vec![vi_dims(
                "x",
                DataType::Float,
                dims.into_iter().map(DimValue).collect(),
            )],
            &["y"],
        )
    };
    expect_import_error("neg_input_dim", &input(vec![2, -1]), &["\"x\"", "negative"]);
    expect_import_error(
        "huge_input_dims",
        &input(vec![1 << 62, 1 << 62, 16]),
        &["\"x\""],
    );
    expect_import_error("huge_input_dim", &input(vec![1 << 62]), &["\"x\""]);

    // Initializers claiming more than they hold.
    let mut t = init_f32("w", &[1], &[1.0]);
    t.dims = vec![1 << 40, 1 << 40];
    expect_import_error(
        "claims_2_80",
        &model(17, vec![], vec![t.clone()], vec![], &["w"]),
        &["tensor \"w\""],
    );
    t.dims = vec![i64::MAX, i64::MAX, 2];
    expect_import_error(
        "dims_overflow",
        &model(17, vec![], vec![t.clone()], vec![], &["w"]),
        &["tensor \"w\"", "too many elements"],
    );
    t.dims = vec![3, -1];
    expect_import_error(
        "neg_init_dim",
        &model(17, vec![], vec![t.clone()], vec![], &["w"]),
        &["tensor \"w\"", "negative"],
    );
    t.dims = vec![2, 2];
    expect_import_error(
        "short_raw",
        &model(17, vec![], vec![t], vec![], &["w"]),
        &["tensor \"w\"", "needs 16"],
    );
    let typed = TensorProto {
        name: "w".into(),
        dims: vec![1 << 40],
        data_type: DataType::Int64 as i32,
        int64_data: vec![1, 2, 3],
        ..Default::default()
    };
    expect_import_error(
        "short_typed",
        &model(17, vec![], vec![typed], vec![], &["w"]),
        &["tensor \"w\"", "int64_data holds 3"],
    );
    // A tensor inside a Constant node, same checks, naming the node.
    let mut t = init_f32("c", &[1], &[1.0]);
    t.dims = vec![1 << 40, 1 << 40];
    let m = model(
        17,
        vec![node("Constant", &[], &["c"], vec![a_tensor("value", t)])],
        vec![],
        vec![],
        &["c"],
    );
    expect_import_error("constant_claims", &m, &["Constant_c", "Constant"]);
    // An enormous rank of ones is fine memory-wise but not a tensor anyone has.
    let mut t = init_f32("w", &[1], &[1.0]);
    t.dims = vec![1; 1 << 20];
    expect_import_error(
        "rank_1m",
        &model(17, vec![], vec![t], vec![], &["w"]),
        &["tensor \"w\"", "rank"],
    );
}

/// Shape-producing ops whose constant shape input asks for absurd sizes: refused at import or
/// before allocating at run time.
#[test]
fn absurd_shapes_from_constant_inputs() {
    let huge = 1_000_000_000_000i64;
    let cases: Vec<(&str, NodeProto, Vec<TensorProto>)> = vec![
        (
            "reshape",
            node("Reshape", &["x", "s"], &["y"], vec![]),
            vec![init_i64("s", &[huge, huge])],
        ),
        (
            "expand",
            node("Expand", &["x", "s"], &["y"], vec![]),
            vec![init_i64("s", &[huge, 2, 3])],
        ),
        (
            "constant_of_shape",
            node("ConstantOfShape", &["s"], &["y"], vec![]),
            vec![init_i64("s", &[huge])],
        ),
        (
            "constant_of_shape_neg",
            node("ConstantOfShape", &["s"], &["y"], vec![]),
            vec![init_i64("s", &[-3])],
        ),
        (
            "tile",
            node("Tile", &["x", "s"], &["y"], vec![]),
            vec![init_i64("s", &[huge, huge])],
        ),
        (
            "tile_neg",
            node("Tile", &["x", "s"], &["y"], vec![]),
            vec![init_i64("s", &[-1, 2])],
        ),
        (
            "range",
            node("Range", &["a", "b", "c"], &["y"], vec![]),
            vec![
                tensor_to_proto("a", &Tensor::scalar(0i64)),
                tensor_to_proto("b", &Tensor::scalar(i64::MAX)),
                tensor_to_proto("c", &Tensor::scalar(1i64)),
            ],
        ),
        (
            "range_overflow",
            node("Range", &["a", "b", "c"], &["y"], vec![]),
            vec![
                tensor_to_proto("a", &Tensor::scalar(i64::MIN)),
                tensor_to_proto("b", &Tensor::scalar(i64::MAX)),
                tensor_to_proto("c", &Tensor::scalar(1i64)),
            ],
        ),
        (
            "range_zero_step",
            node("Range", &["a", "b", "c"], &["y"], vec![]),
            vec![
                tensor_to_proto("a", &Tensor::scalar(0.0f32)),
                tensor_to_proto("b", &Tensor::scalar(10.0f32)),
                tensor_to_proto("c", &Tensor::scalar(0.0f32)),
            ],
        ),
        (
            "range_float_huge",
            node("Range", &["a", "b", "c"], &["y"], vec![]),
            vec![
                tensor_to_proto("a", &Tensor::scalar(0.0f32)),
                tensor_to_proto("b", &Tensor::scalar(1e30f32)),
                tensor_to_proto("c", &Tensor::scalar(1e-30f32)),
            ],
        ),
        (
            "pad",
            node("Pad", &["x", "p"], &["y"], vec![]),
            vec![init_i64("p", &[0, 0, huge, huge])],
        ),
        (
            "pad_neg",
            node("Pad", &["x", "p"], &["y"], vec![]),
            vec![init_i64("p", &[0, -5, 0, 0])],
        ),
        (
            "resize_scales",
            node("Resize", &["x", "", "sc"], &["y"], vec![]),
            vec![init_f32("sc", &[2], &[1e12, 1e12])],
        ),
        (
            "resize_scales_inf",
            node("Resize", &["x", "", "sc"], &["y"], vec![]),
            vec![init_f32("sc", &[2], &[f32::INFINITY, f32::NAN])],
        ),
        (
            "resize_sizes",
            node("Resize", &["x", "", "", "sz"], &["y"], vec![]),
            vec![init_i64("sz", &[huge, huge])],
        ),
        (
            "resize_sizes_neg",
            node("Resize", &["x", "", "", "sz"], &["y"], vec![]),
            vec![init_i64("sz", &[-2, 3])],
        ),
    ];
    for (name, n, inits) in cases {
        let label = n.name.clone();
        let m = one_node(n, inits);
        check_import_or_run(name, &m, &[&label]);
    }
}

/// The model must either fail to import (naming `needles`) or import and then fail to run on a
/// zero input `x` f32[2, 3] (naming `needles`). Either way: exit 1, one line, nothing written.
fn check_import_or_run(name: &str, m: &ModelProto, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let scratch = dir.path().join("s");
    std::fs::create_dir(&scratch).unwrap();
    let dump = kestrel(&scratch, &["dump", path.to_str().unwrap()]);
    let x = Tensor::from_vec(vec![2, 3], vec![0.0f32; 6]);
    let imports = dump.code == Some(0);
    if !imports {
        let mut all = vec![path.to_str().unwrap()];
        all.extend_from_slice(needles);
        assert_clean_error(&dump, name, &all);
    }
    check_fails_everywhere(dir.path(), &path, &[("x", x)], needles, !imports);
}

#[test]
fn external_data_cannot_escape_or_overrun() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(root.path().join("secret.bin"), [0u8; 16]).unwrap();
    std::fs::write(dir.join("w.bin"), [0u8; 16]).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(root.path().join("secret.bin"), dir.join("link.bin")).unwrap();
        std::os::unix::fs::symlink(root.path(), dir.join("up")).unwrap();
    }
    let ext = |loc: &str, offset: Option<&str>, length: Option<&str>, dims: &[i64]| {
        let mut e = vec![StringStringEntryProto {
            key: "location".into(),
            value: loc.into(),
        }];
        for (k, v) in [("offset", offset), ("length", length)] {
            if let Some(v) = v {
                e.push(StringStringEntryProto {
                    key: k.into(),
                    value: v.into(),
                });
            }
        }
        TensorProto {
            name: "t".into(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            external_data: e,
            data_location: DataLocation::External as i32,
            ..Default::default()
        }
    };
    let secret = root.path().join("secret.bin");
    let cases: Vec<(&str, TensorProto, &str)> = vec![
        ("dotdot", ext("../secret.bin", None, None, &[4]), "\"..\""),
        (
            "dotdot_inner",
            ext("sub/../../secret.bin", None, None, &[4]),
            "\"..\"",
        ),
        (
            "etc_passwd",
            ext("/etc/passwd", None, None, &[4]),
            "relative",
        ),
        (
            "absolute",
            ext(secret.to_str().unwrap(), None, None, &[4]),
            "relative",
        ),
        #[cfg(unix)]
        ("symlink", ext("link.bin", None, None, &[4]), "outside"),
        #[cfg(unix)]
        (
            "symlink_dir",
            ext("up/secret.bin", None, None, &[4]),
            "outside",
        ),
        (
            "offset_beyond",
            ext("w.bin", Some("32"), None, &[0]),
            "beyond",
        ),
        (
            "range_beyond",
            ext("w.bin", Some("8"), Some("16"), &[4]),
            "beyond",
        ),
        (
            "range_overflow",
            ext("w.bin", Some("18446744073709551615"), Some("2"), &[4]),
            "beyond",
        ),
        (
            "negative_offset",
            ext("w.bin", Some("-4"), None, &[4]),
            "offset",
        ),
        ("short", ext("w.bin", None, None, &[8]), "needs 32"),
        (
            "huge_claim",
            ext("w.bin", None, None, &[1 << 40, 1 << 40]),
            "\"t\"",
        ),
        (
            "missing",
            ext("missing.bin", None, None, &[4]),
            "missing.bin",
        ),
        ("directory", ext("sub", None, None, &[4]), "sub"),
        ("no_location", ext("", None, None, &[4]), "location"),
        ("nul", ext("w\0.bin", None, None, &[4]), "NUL"),
    ];
    for (name, t, want) in cases {
        let m = model(17, vec![], vec![t], vec![], &["t"]);
        let path = dir.join(format!("{name}.onnx"));
        std::fs::write(&path, m.encode_to_vec()).unwrap();
        let out = root.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        check_fails_everywhere(root.path(), &path, &[], &["tensor \"t\"", want], true);
        std::fs::remove_file(&path).unwrap();
    }
    // The same checks apply to a Constant node's tensor, named by the node.
    let m = model(
        17,
        vec![node(
            "Constant",
            &[],
            &["c"],
            vec![a_tensor("value", ext("../secret.bin", None, None, &[4]))],
        )],
        vec![],
        vec![],
        &["c"],
    );
    let path = dir.join("constant.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    check_fails_everywhere(root.path(), &path, &[], &["Constant_c", "\"..\""], true);
}

// ---------------------------------------------------------------- attributes

#[test]
fn attributes_of_the_wrong_type() {
    let w = || init_f32("w", &[1, 1, 1, 1], &[1.0]);
    let x4 = || f32_in("x", &[1, 1, 4, 4]);
    let conv = |a: AttributeProto| {
        model(
            17,
            vec![node("Conv", &["x", "w"], &["y"], vec![a])],
            vec![w()],
            vec![x4()],
            &["y"],
        )
    };
    let cases: Vec<(&str, ModelProto, &str)> = vec![
        ("conv_group", conv(a_floats("group", &[1.0])), "\"group\""),
        ("conv_pads", conv(a_int("pads", 1)), "\"pads\""),
        ("conv_strides", conv(a_str("strides", b"1")), "\"strides\""),
        ("conv_auto_pad", conv(a_int("auto_pad", 1)), "\"auto_pad\""),
        (
            "conv_auto_pad_utf8",
            conv(a_str("auto_pad", b"\xff\xfe")),
            "UTF-8",
        ),
        (
            "maxpool_kernel_tensor",
            model(
                17,
                vec![node(
                    "MaxPool",
                    &["x"],
                    &["y"],
                    vec![a_tensor("kernel_shape", init_i64("k", &[1, 1]))],
                )],
                vec![],
                vec![x4()],
                &["y"],
            ),
            "\"kernel_shape\"",
        ),
        (
            "conv_dilations_graph",
            conv(AttributeProto {
                g: Some(Bytes::from_static(b"")),
                ..attr("dilations", AttributeType::Graph)
            }),
            "\"dilations\"",
        ),
        (
            "transpose_perm",
            one_node(
                node("Transpose", &["x"], &["y"], vec![a_float("perm", 1.0)]),
                vec![],
            ),
            "\"perm\"",
        ),
        (
            "softmax_axis",
            one_node(
                node("Softmax", &["x"], &["y"], vec![a_str("axis", b"1")]),
                vec![],
            ),
            "\"axis\"",
        ),
        (
            "gemm_alpha",
            one_node(
                node("Gemm", &["x", "x"], &["y"], vec![a_ints("alpha", &[1])]),
                vec![],
            ),
            "\"alpha\"",
        ),
        (
            "cast_to",
            one_node(
                node("Cast", &["x"], &["y"], vec![a_float("to", 1.0)]),
                vec![],
            ),
            "\"to\"",
        ),
        (
            "cast_to_unknown",
            one_node(node("Cast", &["x"], &["y"], vec![a_int("to", 999)]), vec![]),
            "999",
        ),
        (
            "leaky_alpha",
            one_node(
                node("LeakyRelu", &["x"], &["y"], vec![a_str("alpha", b"x")]),
                vec![],
            ),
            "\"alpha\"",
        ),
        (
            "concat_axis",
            one_node(
                node(
                    "Concat",
                    &["x", "x"],
                    &["y"],
                    vec![a_floats("axis", &[0.0])],
                ),
                vec![],
            ),
            "\"axis\"",
        ),
        (
            "concat_axis_huge",
            one_node(
                node("Concat", &["x", "x"], &["y"], vec![a_int("axis", i64::MIN)]),
                vec![],
            ),
            "Concat_y",
        ),
        (
            "flatten_axis_huge",
            one_node(
                node("Flatten", &["x"], &["y"], vec![a_int("axis", i64::MAX)]),
                vec![],
            ),
            "Flatten_y",
        ),
        (
            "gather_axis_huge",
            one_node(
                node("Gather", &["x", "i"], &["y"], vec![a_int("axis", 1 << 40)]),
                vec![init_i64("i", &[0])],
            ),
            "Gather_y",
        ),
        (
            "transpose_perm_bad",
            one_node(
                node("Transpose", &["x"], &["y"], vec![a_ints("perm", &[0, 0])]),
                vec![],
            ),
            "Transpose_y",
        ),
        (
            "transpose_perm_huge",
            one_node(
                node(
                    "Transpose",
                    &["x"],
                    &["y"],
                    vec![a_ints("perm", &[i64::MIN, 1])],
                ),
                vec![],
            ),
            "Transpose_y",
        ),
        (
            "constant_value_int_as_tensor",
            model(
                17,
                vec![node("Constant", &[], &["y"], vec![a_int("value", 3)])],
                vec![],
                vec![],
                &["y"],
            ),
            "\"value\"",
        ),
        (
            "constant_tensor_missing",
            model(
                17,
                vec![node(
                    "Constant",
                    &[],
                    &["y"],
                    vec![attr("value", AttributeType::Tensor)],
                )],
                vec![],
                vec![],
                &["y"],
            ),
            "\"value\"",
        ),
        (
            "constant_no_value",
            model(
                17,
                vec![node("Constant", &[], &["y"], vec![])],
                vec![],
                vec![],
                &["y"],
            ),
            "Constant",
        ),
        (
            "constant_no_output",
            model(
                17,
                vec![NodeProto {
                    name: "k".into(),
                    ..node("Constant", &[], &[], vec![a_float("value_float", 1.0)])
                }],
                vec![],
                vec![],
                &["y"],
            ),
            "no output",
        ),
        (
            "unknown_attr_type",
            one_node(
                node(
                    "Softmax",
                    &["x"],
                    &["y"],
                    vec![AttributeProto {
                        r#type: 77,
                        ..a_int("axis", 1)
                    }],
                ),
                vec![],
            ),
            "\"axis\"",
        ),
    ];
    for (name, m, want) in cases {
        let g = m.graph.as_ref().unwrap();
        let label = g.node[0].name.clone();
        let op = g.node[0].op_type.clone();
        expect_import_error(name, &m, &[&label, &format!("({op})"), want]);
    }
}

/// Nonsense values in attributes the shape computations divide or index by.
#[test]
fn nonsense_attribute_values() {
    let w = || init_f32("w", &[1, 1, 1, 1], &[1.0]);
    let x4 = || f32_in("x", &[1, 1, 4, 4]);
    let on_x4 = |op: &str, attrs: Vec<AttributeProto>, inits: Vec<TensorProto>, ins: &[&str]| {
        model(
            17,
            vec![node(op, ins, &["y"], attrs)],
            inits,
            vec![x4()],
            &["y"],
        )
    };
    let cases: Vec<(&str, ModelProto)> = vec![
        (
            "conv_stride0",
            on_x4(
                "Conv",
                vec![a_ints("strides", &[0, 0])],
                vec![w()],
                &["x", "w"],
            ),
        ),
        (
            "conv_dil0",
            on_x4(
                "Conv",
                vec![a_ints("dilations", &[0, 0])],
                vec![w()],
                &["x", "w"],
            ),
        ),
        (
            "conv_group0",
            on_x4("Conv", vec![a_int("group", 0)], vec![w()], &["x", "w"]),
        ),
        (
            "conv_group_neg",
            on_x4("Conv", vec![a_int("group", -1)], vec![w()], &["x", "w"]),
        ),
        (
            "conv_pads_neg",
            on_x4(
                "Conv",
                vec![a_ints("pads", &[-9, -9, -9, -9])],
                vec![w()],
                &["x", "w"],
            ),
        ),
        (
            "conv_pads_huge",
            on_x4(
                "Conv",
                vec![a_ints("pads", &[i64::MAX, 0, i64::MAX, 0])],
                vec![w()],
                &["x", "w"],
            ),
        ),
        (
            "conv_strides_huge",
            on_x4(
                "Conv",
                vec![a_ints("strides", &[i64::MAX, i64::MIN])],
                vec![w()],
                &["x", "w"],
            ),
        ),
        (
            "conv_pads_short",
            on_x4("Conv", vec![a_ints("pads", &[1])], vec![w()], &["x", "w"]),
        ),
        (
            "maxpool_k0",
            on_x4(
                "MaxPool",
                vec![a_ints("kernel_shape", &[0, 0])],
                vec![],
                &["x"],
            ),
        ),
        (
            "maxpool_k_neg",
            on_x4(
                "MaxPool",
                vec![a_ints("kernel_shape", &[-3, 2])],
                vec![],
                &["x"],
            ),
        ),
        (
            "maxpool_k_huge",
            on_x4(
                "MaxPool",
                vec![a_ints("kernel_shape", &[1 << 62, 1 << 62])],
                vec![],
                &["x"],
            ),
        ),
        (
            "avgpool_stride0",
            on_x4(
                "AveragePool",
                vec![a_ints("kernel_shape", &[2, 2]), a_ints("strides", &[0, 1])],
                vec![],
                &["x"],
            ),
        ),
        (
            "avgpool_no_kernel",
            on_x4("AveragePool", vec![], vec![], &["x"]),
        ),
        (
            "softmax_axis",
            on_x4("Softmax", vec![a_int("axis", 99)], vec![], &["x"]),
        ),
        (
            "split_neg",
            on_x4(
                "Split",
                vec![a_int("axis", 2)],
                vec![init_i64("s", &[-1, 5])],
                &["x", "s"],
            ),
        ),
        (
            "split_huge",
            on_x4(
                "Split",
                vec![a_int("axis", 2)],
                vec![init_i64("s", &[i64::MAX, i64::MAX])],
                &["x", "s"],
            ),
        ),
        (
            "squeeze_axis",
            on_x4(
                "Squeeze",
                vec![],
                vec![init_i64("a", &[1 << 40])],
                &["x", "a"],
            ),
        ),
        (
            "unsqueeze_axis",
            on_x4(
                "Unsqueeze",
                vec![],
                vec![init_i64("a", &[i64::MIN])],
                &["x", "a"],
            ),
        ),
        (
            "slice_step0",
            on_x4(
                "Slice",
                vec![],
                vec![
                    init_i64("s", &[0]),
                    init_i64("e", &[2]),
                    init_i64("a", &[2]),
                    init_i64("st", &[0]),
                ],
                &["x", "s", "e", "a", "st"],
            ),
        ),
        (
            "slice_extremes",
            on_x4(
                "Slice",
                vec![],
                vec![
                    init_i64("s", &[i64::MIN]),
                    init_i64("e", &[i64::MAX]),
                    init_i64("a", &[2]),
                    init_i64("st", &[i64::MIN]),
                ],
                &["x", "s", "e", "a", "st"],
            ),
        ),
        (
            "reshape_two_minus_one",
            on_x4(
                "Reshape",
                vec![],
                vec![init_i64("s", &[-1, -1])],
                &["x", "s"],
            ),
        ),
        (
            "reshape_zero_huge",
            on_x4(
                "Reshape",
                vec![],
                vec![init_i64("s", &[0, 0, 0, 0, 0, 0, 0])],
                &["x", "s"],
            ),
        ),
        (
            "reshape_neg",
            on_x4(
                "Reshape",
                vec![],
                vec![init_i64("s", &[-7, 16])],
                &["x", "s"],
            ),
        ),
        (
            "depth_to_space_0",
            on_x4("DepthToSpace", vec![a_int("blocksize", 0)], vec![], &["x"]),
        ),
        (
            "topk_huge",
            on_x4("TopK", vec![], vec![init_i64("k", &[1 << 40])], &["x", "k"]),
        ),
        (
            "onehot_huge",
            on_x4(
                "OneHot",
                vec![],
                vec![init_i64("d", &[1 << 40]), init_f32("v", &[2], &[0.0, 1.0])],
                &["x", "d", "v"],
            ),
        ),
        (
            "lrn_size0",
            on_x4("LRN", vec![a_int("size", 0)], vec![], &["x"]),
        ),
        (
            "reduce_axes",
            on_x4("ReduceSum", vec![], vec![init_i64("a", &[9])], &["x", "a"]),
        ),
        (
            "argmax_axis",
            on_x4("ArgMax", vec![a_int("axis", -99)], vec![], &["x"]),
        ),
        (
            "gather_idx_tensor_huge",
            on_x4(
                "Gather",
                vec![],
                vec![init_i64("i", &[i64::MIN])],
                &["x", "i"],
            ),
        ),
        (
            "resize_mode",
            on_x4(
                "Resize",
                vec![a_str("mode", b"cubicle")],
                vec![init_f32("sc", &[4], &[1.0, 1.0, 2.0, 2.0])],
                &["x", "", "sc"],
            ),
        ),
        (
            "cast_string",
            on_x4(
                "Cast",
                vec![a_int("to", DataType::String as i64)],
                vec![],
                &["x"],
            ),
        ),
    ];
    for (name, mut m) in cases {
        if name.starts_with("split") {
            // Two outputs, so that the split sizes are what is wrong.
            m.graph.as_mut().unwrap().node[0].output.push("y2".into());
        }
        let g = m.graph.as_ref().unwrap();
        let label = g.node[0].name.clone();
        // Some are legitimate ONNX (errors only at run time, or fine); every one must end in a
        // clean exit, never a crash.
        check_import_or_run_x4(name, &m, &[&label]);
    }
}

/// Dump must exit 0 or fail cleanly naming `needles`; run (on zeros of x f32[1,1,4,4]) must exit 0
/// or fail cleanly naming `needles`, leaving nothing on failure.
fn check_import_or_run_x4(name: &str, m: &ModelProto, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let scratch = dir.path().join("s");
    let out = dir.path().join("out");
    std::fs::create_dir(&scratch).unwrap();
    std::fs::create_dir(&out).unwrap();
    let p = path.to_str().unwrap();
    let mut all = vec![p];
    all.extend_from_slice(needles);
    let dump = kestrel(&scratch, &["dump", p]);
    if dump.code != Some(0) {
        assert_clean_error(&dump, name, &all);
    }
    let x = Tensor::from_vec(vec![1, 1, 4, 4], vec![0.5f32; 16]);
    let npz = scratch.join("in.npz");
    kestrel::tensor_io::write_npz(&npz, &[("x".to_string(), x)]).unwrap();
    let onpz = out.join("o.npz");
    let run = kestrel(
        &scratch,
        &[
            "run",
            p,
            "--inputs",
            npz.to_str().unwrap(),
            "--outputs",
            onpz.to_str().unwrap(),
        ],
    );
    if run.code != Some(0) {
        assert_clean_error(&run, &format!("{name} (run)"), &all);
        let left = files_under(&out);
        assert!(left.is_empty(), "{name}: failure left {left:?} behind");
    }
}

// ---------------------------------------------------------------- run time

#[test]
fn run_time_failures_name_the_node() {
    // Gather with a constant index out of range for the input's axis: refused at import (type
    // inference checks constant indices) or at run time.
    let m = one_node(
        node("Gather", &["x", "i"], &["y"], vec![a_int("axis", 1)]),
        vec![init_i64("i", &[7])],
    );
    let x = Tensor::from_vec(vec![2, 3], vec![1.0f32; 6]);
    check_import_or_run(
        "gather_oob",
        &m,
        &["Gather_y", "Gather", "7", "out of range"],
    );
    // The index arriving through a graph input: only the run can tell.
    let m = model(
        17,
        vec![node("Gather", &["x", "i"], &["y"], vec![a_int("axis", 0)])],
        vec![],
        vec![
            f32_in("x", &[2, 3]),
            vi_dims("i", DataType::Int64, vec![dimension::Value::DimValue(1)]),
        ],
        &["y"],
    );
    expect_run_error(
        "gather_oob_input",
        &m,
        &[
            ("x", x.clone()),
            ("i", Tensor::from_vec(vec![1], vec![-9i64])),
        ],
        &["Gather_y", "gather", "out of range"],
    );
    // ConstantOfShape fed a runtime shape asking for 10^12 elements.
    let m = model(
        17,
        vec![node("ConstantOfShape", &["s"], &["y"], vec![])],
        vec![],
        vec![vi_dims(
            "s",
            DataType::Int64,
            vec![dimension::Value::DimValue(1)],
        )],
        &["y"],
    );
    expect_run_error(
        "constant_of_shape_runtime",
        &m,
        &[("s", Tensor::from_vec(vec![1], vec![1_000_000_000_000i64]))],
        &["ConstantOfShape_y", "constant_of_shape"],
    );
    // Integer division by zero.
    let m = model(
        17,
        vec![node("Div", &["a", "b"], &["y"], vec![])],
        vec![init_i64("b", &[0])],
        vec![vi_dims(
            "a",
            DataType::Int64,
            vec![dimension::Value::DimValue(1)],
        )],
        &["y"],
    );
    expect_run_error(
        "int_div_zero",
        &m,
        &[("a", Tensor::from_vec(vec![1], vec![5i64]))],
        &["Div_y", "division by zero"],
    );
}

// ---------------------------------------------------------------- names and outputs

/// Names from the file are quoted, never interpreted: the message stays one line and bounded.
#[test]
fn hostile_names_stay_on_one_line() {
    let mut n = node("NoSuchOp", &["x"], &["y"], vec![]);
    n.name = "evil\nkestrel: error: forged\x1b[31m\r".into();
    expect_import_error("newline_name", &one_node(n, vec![]), &["evil\\nkestrel"]);
    let mut n = node("NoSuchOp", &["x"], &["y"], vec![]);
    n.name = "n".repeat(1 << 20);
    expect_import_error("long_name", &one_node(n, vec![]), &["elided", "NoSuchOp"]);
}

/// An output name that is not a plain file name is refused before anything is written.
#[test]
fn unsafe_output_names_write_nothing() {
    let m = model(
        17,
        vec![
            node("Relu", &["x"], &["ok"], vec![]),
            node("Neg", &["x"], &["../evil"], vec![]),
        ],
        vec![],
        vec![f32_in("x", &[2, 3])],
        &["ok", "../evil"],
    );
    let x = Tensor::from_vec(vec![2, 3], vec![1.0f32; 6]);
    expect_run_error("escape", &m, &[("x", x.clone())], &["../evil"]);
    // A --outputs path that cannot be written: the --output-dir files go again.
    let m = one_node(node("Relu", &["x"], &["y"], vec![]), vec![]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    let npz = dir.path().join("in.npz");
    kestrel::tensor_io::write_npz(&npz, &[("x".to_string(), x)]).unwrap();
    let od = dir.path().join("od");
    let o = kestrel(
        dir.path(),
        &[
            "run",
            path.to_str().unwrap(),
            "--inputs",
            npz.to_str().unwrap(),
            "--output-dir",
            od.to_str().unwrap(),
            "--outputs",
            dir.path().join("no/such/dir/o.npz").to_str().unwrap(),
        ],
    );
    assert_clean_error(&o, "unwritable --outputs", &["o.npz"]);
    assert!(!od.exists(), "--output-dir was left behind");
}
