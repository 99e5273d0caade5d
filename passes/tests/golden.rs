//! Golden IR tests: `tests/golden/<pass>.kir` (at the workspace root), one file per pass.
//!
//! File format (also in docs/PASSES.md):
//!
//! ```text
//! // Anything before the first case is a free comment.
//! // ==== case: <name>
//! // pipeline: <textual pipeline>      optional; default: the file's stem (the pass name)
//! // tolerance: <abs>                  optional; the case changes numerics by rounding
//! graph @t(...) -> (...) { ... }       the input, in the IR text form
//! // ---- expected ----
//! graph @t(...) -> (...) { ... }       the printed graph after the pipeline
//! ```
//!
//! For every case: the input parses and verifies; the pipeline runs with `verify_each`; input and
//! output round-trip through text; the printed output equals the expected section; and the
//! interpreter gives the same outputs on both graphs for seeded random inputs — bit-exactly, or
//! within `tolerance * max(1, |reference|)` when given. Symbolic input extents are bound to 2.
//! Constants print inline. `BLESS=1 cargo test -p kestrel-passes --test golden` rewrites every
//! expected section from the current output.

use kestrel_backends::interp;
use kestrel_ir::text::{parse, print, PrintOptions, WeightStyle};
use kestrel_ir::{verify, DType, Dim, Graph, Op, Tensor, TensorType};
use kestrel_passes::{PassContext, PipelineOptions};
use std::path::{Path, PathBuf};

const CASE: &str = "// ==== case:";
const EXPECTED: &str = "// ---- expected ----";

struct Case {
    name: String,
    /// Directive lines (`// pipeline: ...`) as written.
    directives: Vec<String>,
    pipeline: Option<String>,
    tolerance: Option<f64>,
    input: String,
    expected: Option<String>,
}

fn parse_cases(text: &str) -> (String, Vec<Case>) {
    let mut header = String::new();
    let mut cases: Vec<Case> = Vec::new();
    let mut in_expected = false;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix(CASE) {
            cases.push(Case {
                name: name.trim().to_string(),
                directives: Vec::new(),
                pipeline: None,
                tolerance: None,
                input: String::new(),
                expected: None,
            });
            in_expected = false;
            continue;
        }
        let Some(case) = cases.last_mut() else {
            header.push_str(line);
            header.push('\n');
            continue;
        };
        if line.trim() == EXPECTED {
            in_expected = true;
            case.expected = Some(String::new());
        } else if in_expected {
            let e = case.expected.get_or_insert_with(String::new);
            e.push_str(line);
            e.push('\n');
        } else if case.input.is_empty() && line.starts_with("// ") && line.contains(':') {
            let (k, v) = line[3..].split_once(':').unwrap();
            match k.trim() {
                "pipeline" => case.pipeline = Some(v.trim().to_string()),
                "tolerance" => {
                    case.tolerance = Some(
                        v.trim()
                            .parse()
                            .unwrap_or_else(|_| panic!("case {}: bad tolerance {v}", case.name)),
                    )
                }
                other => panic!("case {}: unknown directive {other}", case.name),
            }
            case.directives.push(line.to_string());
        } else if !(case.input.is_empty() && line.trim().is_empty()) {
            case.input.push_str(line);
            case.input.push('\n');
        }
    }
    (header, cases)
}

fn inline(g: &Graph) -> String {
    print(g, &PrintOptions::new(WeightStyle::Inline)).text
}

fn round_trip(g: &Graph, what: &str) {
    let t = inline(g);
    let g2 = parse(&t, &|_| None).unwrap_or_else(|e| panic!("{what}: reparse failed: {e}\n{t}"));
    assert_eq!(inline(&g2), t, "{what}: text does not round-trip");
}

/// Deterministic pseudo-random inputs for every graph input (symbolic extents bound to 2).
fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64) / ((1u64 << 31) as f64)
    };
    g.inputs
        .iter()
        .map(|&v| {
            let ty = g.ty(v);
            let dims: Vec<usize> = ty
                .shape
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => *n,
                    _ => 2,
                })
                .collect();
            let n: usize = dims.iter().product();
            let vals: Vec<f64> = (0..n).map(|_| next() * 2.0 - 1.0).collect();
            make_tensor(ty.dtype, dims, vals)
        })
        .collect()
}

fn make_tensor(dtype: DType, dims: Vec<usize>, vals: Vec<f64>) -> Tensor {
    match dtype {
        DType::F32 => Tensor::from_vec(dims, vals.into_iter().map(|v| v as f32).collect()),
        DType::F64 => Tensor::from_vec(dims, vals),
        DType::I64 => Tensor::from_vec(dims, vals.into_iter().map(|v| (v * 4.0) as i64).collect()),
        DType::I32 => Tensor::from_vec(dims, vals.into_iter().map(|v| (v * 4.0) as i32).collect()),
        DType::Bool => Tensor::from_vec(dims, vals.into_iter().map(|v| v > 0.0).collect()),
        other => panic!("golden inputs of dtype {other} are not supported"),
    }
}

fn evaluator() -> PassContext {
    PassContext::with_evaluator(|op: &Op, ins: &[&Tensor]| {
        Some(interp::eval_op(op, ins).map_err(|e| e.to_string()))
    })
}

fn check_numerics(name: &str, before: &Graph, after: &Graph, tol: Option<f64>) {
    for seed in 0..2 {
        let inputs = random_inputs(before, seed);
        let want = interp::run(before, &inputs)
            .unwrap_or_else(|e| panic!("{name}: interpreting the input failed: {e}"));
        let got = interp::run(after, &inputs)
            .unwrap_or_else(|e| panic!("{name}: interpreting the output failed: {e}"));
        assert_eq!(want.len(), got.len());
        for (k, (w, o)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.dtype(), o.dtype(), "{name}: output {k} dtype");
            assert_eq!(w.dims(), o.dims(), "{name}: output {k} shape");
            match tol {
                None => assert_eq!(w, o, "{name}: output {k} differs (case is exact)"),
                Some(tol) => {
                    for (i, (a, b)) in w.to_f64_vec().iter().zip(o.to_f64_vec()).enumerate() {
                        let ok =
                            (a - b).abs() <= tol * a.abs().max(1.0) || (a.is_nan() && b.is_nan());
                        assert!(ok, "{name}: output {k}[{i}]: {a} vs {b} (tolerance {tol})");
                    }
                }
            }
        }
    }
}

fn run_case(pass: &str, case: &Case) -> String {
    let name = format!("{pass}.kir: {}", case.name);
    let mut g = parse(&case.input, &|_| None)
        .unwrap_or_else(|e| panic!("{name}: input does not parse: {e}"));
    if let Err(e) = verify(&g) {
        panic!("{name}: input does not verify: {e:?}");
    }
    round_trip(&g, &format!("{name} (input)"));
    let before = g.clone();
    let opts = PipelineOptions {
        pipeline: case.pipeline.clone().unwrap_or_else(|| pass.to_string()),
        verify_each: true,
        ..Default::default()
    };
    let report = kestrel_passes::run_pipeline(&mut g, &opts, &evaluator())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(report.warnings.is_empty(), "{name}: {:?}", report.warnings);
    if let Err(e) = verify(&g) {
        panic!("{name}: output does not verify: {e:?}");
    }
    round_trip(&g, &format!("{name} (output)"));
    check_numerics(&name, &before, &g, case.tolerance);
    inline(&g)
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

#[test]
fn golden() {
    let bless = std::env::var_os("BLESS").is_some_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kir"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let mut total = 0;
    for path in files {
        let pass = path.file_stem().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let (header, cases) = parse_cases(&text);
        assert!(!cases.is_empty(), "{} has no cases", path.display());
        let mut out = header;
        for case in &cases {
            total += 1;
            let got = run_case(&pass, case);
            if !bless && case.expected.as_deref().map(str::trim_end) != Some(got.trim_end()) {
                failures.push(format!(
                    "{pass}.kir: {}: expected\n{}\ngot\n{got}",
                    case.name,
                    case.expected.as_deref().unwrap_or("(none)")
                ));
            }
            out.push_str(&format!("{CASE} {}\n", case.name));
            for d in &case.directives {
                out.push_str(d);
                out.push('\n');
            }
            out.push_str(case.input.trim_end());
            out.push('\n');
            out.push_str(EXPECTED);
            out.push('\n');
            out.push_str(&got);
            out.push('\n');
        }
        if bless {
            std::fs::write(&path, out.trim_end().to_string() + "\n").unwrap();
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} golden cases differ (BLESS=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn input_types_are_bound_for_numerics() {
    // The harness binds symbolic extents to 2; make sure that is consistent across inputs.
    let mut g = Graph::new("t");
    let x = g.add_input(
        "x",
        TensorType::new(
            DType::F32,
            [Dim::sym("N"), Dim::Known(3)].into_iter().collect(),
        ),
    );
    g.add_output("y", x);
    let ins = random_inputs(&g, 0);
    assert_eq!(ins[0].dims(), [2, 3]);
}
