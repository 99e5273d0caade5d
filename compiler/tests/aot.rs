//! `kestrel compile` as users call it: shared objects for every target and `--cpu` choice that
//! import nothing, a C program built against the generated header (host, and aarch64/riscv64
//! under qemu-user with cross compilers), `kestrel run m.so` equal to the JIT bit for bit, and
//! clear errors without partial files.
//!
//! The cross tests need `qemu-user`, `gcc-aarch64-linux-gnu` and `gcc-riscv64-linux-gnu` (with
//! their libc6-dev packages; `.ci/run` installs them). Without them the tests skip with a note,
//! except under CI (`CI` or `KESTREL_MODELS` set), where a missing tool fails the test.

use kestrel::aot::{self, AotOptions, Arch};
use kestrel_ir::testing;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kestrel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kestrel"))
        .args(args)
        .output()
        .expect("spawn kestrel")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn digits_onnx() -> String {
    root()
        .join("examples/digits.onnx")
        .to_string_lossy()
        .into_owned()
}

fn digit_npy() -> String {
    root()
        .join("examples/digit.npy")
        .to_string_lossy()
        .into_owned()
}

fn fixture(name: &str) -> String {
    root()
        .join("tests/fixtures/digits")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "kestrel failed: {}", stderr(o));
}

fn assert_user_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Files in `dir` (names), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Whether a missing cross tool must fail the test (CI) rather than skip it.
fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("KESTREL_MODELS").is_some()
}

/// `true` when `tool` runs; otherwise skips (returns false) or, under CI, fails.
fn have_tool(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        assert!(
            !required(),
            "{tool} is missing (CI installs it: see DEVELOPERS.md and .ci/run)"
        );
        eprintln!("{tool} is missing: skipping (install it as DEVELOPERS.md says)");
    }
    found
}

/// The logits the C example prints (`logits: v0 v1 ...`), as f32.
fn parse_logits(stdout: &str) -> Vec<f32> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("logits:"))
        .unwrap_or_else(|| panic!("no logits line in {stdout:?}"));
    line["logits:".len()..]
        .split_whitespace()
        .map(|v| v.parse::<f32>().unwrap())
        .collect()
}

/// The JIT's logits for examples/digit.npy (through the CLI, default pipeline).
fn jit_logits(dir: &Path) -> Vec<f32> {
    let out = dir.join("jit.npz");
    ok(&kestrel(&[
        "run",
        &digits_onnx(),
        "--input",
        &digit_npy(),
        "--outputs",
        p(&out),
    ]));
    kestrel::tensor_io::read_npz(&out).unwrap()[0]
        .1
        .to_f32_vec()
}

/// The interpreter's logits for examples/digit.npy (the reference).
fn interp_logits() -> Vec<f32> {
    let g = kestrel::driver::load_graph(Path::new(&digits_onnx())).unwrap();
    let x = kestrel::tensor_io::read_npy(Path::new(&digit_npy())).unwrap();
    kestrel_backends::interp::run(&g, &[x]).unwrap()[0].to_f32_vec()
}

/// The quantization step of a QDQ model's output (the scale of its last DequantizeLinear).
fn output_step(onnx: &Path) -> f32 {
    let g = kestrel::driver::load_graph(onnx).unwrap();
    let node = g.node(g.producer(g.outputs[0].value).unwrap());
    assert!(matches!(node.op, kestrel_ir::Op::DequantizeLinear { .. }));
    match &g.value(node.inputs[1]).def {
        kestrel_ir::ValueDef::Const(c) => c.data.as_ref().unwrap().to_f32_vec()[0],
        _ => panic!("output scale is not constant"),
    }
}

/// Quantize-dequantize models: within two output steps of onnxruntime's integer arithmetic, the
/// bound `tests/tests/shared_models.rs` holds the host JIT to.
fn assert_within_steps(got: &[f32], want: &[f32], step: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    if let Err(m) = testing::check_within_steps(got, want, step, 2.0) {
        panic!(
            "{what}: {} differs from the reference {} by more than two steps of {step}",
            m.got, m.want
        );
    }
}

/// Max |got - want| <= 1e-4 * max(1, max |want|).
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    assert!(
        testing::max_abs_diff(got, want) <= 1e-4 * testing::magnitude(want),
        "{what}: {got:?} differs from the interpreter's {want:?}"
    );
}

#[test]
fn compile_then_run_so_equals_the_jit_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture("digits_cnn.io.npz");
    let jit = dir.path().join("jit.npz");
    ok(&kestrel(&[
        "run",
        &fixture("digits_cnn.onnx"),
        "--inputs",
        &bundle,
        "--outputs",
        p(&jit),
    ]));
    let jit = kestrel::tensor_io::read_npz(&jit).unwrap();
    // Single task, and split into tasks run by 1 or 2 threads: the same bits.
    for (tasks, threads) in [("1", "1"), ("3", "2"), ("3", "1")] {
        let so = dir.path().join(format!("m{tasks}.so"));
        let o = kestrel(&[
            "compile",
            &fixture("digits_cnn.onnx"),
            "-o",
            p(&so),
            "--inputs",
            &bundle,
            "--tasks",
            tasks,
            "--min-task-macs",
            "1",
        ]);
        ok(&o);
        assert!(o.stdout.is_empty());
        assert!(so.with_extension("h").is_file(), "no header beside {so:?}");
        let out = dir.path().join(format!("so{tasks}-{threads}.npz"));
        ok(&kestrel(&[
            "run",
            p(&so),
            "--inputs",
            &bundle,
            "--threads",
            threads,
            "--outputs",
            p(&out),
        ]));
        let got = kestrel::tensor_io::read_npz(&out).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "logits");
        assert_eq!(got[0].1.dims(), &[360, 10]);
        assert!(
            got[0].1.bytes() == jit[0].1.bytes(),
            "--tasks {tasks}, --threads {threads}: .so output differs from the JIT's"
        );
    }
    // Temporary files are gone.
    assert!(
        listing(dir.path()).iter().all(|n| !n.contains(".tmp")),
        "{:?}",
        listing(dir.path())
    );
}

#[test]
fn run_so_checks_inputs_like_onnx_models() {
    let dir = tempfile::tempdir().unwrap();
    let so = dir.path().join("d.so");
    ok(&kestrel(&["compile", &digits_onnx(), "-o", p(&so)]));
    // The batch dimension defaulted to 1, so the 360-sample bundle does not fit.
    let o = kestrel(&["run", p(&so), "--inputs", &fixture("digits_cnn.io.npz")]);
    assert_user_error(&o, &["input", "shape"]);
    let o = kestrel(&["run", p(&so)]);
    assert_user_error(&o, &["not bound"]);
    let o = kestrel(&[
        "run",
        p(&so),
        "--input",
        &digit_npy(),
        "--backend",
        "interp",
    ]);
    assert_user_error(&o, &["--backend interp"]);
    let o = kestrel(&["run", p(&so), "--input", &digit_npy(), "--print"]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("argmax=7"));
    // Files that are not Kestrel models.
    let junk = dir.path().join("junk.so");
    std::fs::write(&junk, b"not an ELF file").unwrap();
    let o = kestrel(&["run", p(&junk), "--input", &digit_npy()]);
    assert_user_error(&o, &["junk.so", "not a shared object"]);
    let o = kestrel(&[
        "run",
        p(&dir.path().join("missing.so")),
        "--input",
        &digit_npy(),
    ]);
    assert_user_error(&o, &["missing.so"]);
    let o = kestrel(&["dump", p(&so)]);
    assert_user_error(&o, &["compiled shared object"]);
}

#[test]
fn symbol_prefix_names_every_export_and_run_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let so = dir.path().join("digits.so");
    ok(&kestrel(&[
        "compile",
        &digits_onnx(),
        "-o",
        p(&so),
        "--symbol-prefix",
        "my_digits",
    ]));
    let bytes = std::fs::read(&so).unwrap();
    let names = exported(&bytes);
    for s in [
        "my_digits_model",
        "my_digits_run",
        "my_digits_run_parallel",
        "my_digits_check_cpu",
        "my_digits_entry",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} not in {names:?}");
    }
    assert!(
        names.iter().all(|n| n.starts_with("my_digits_")),
        "{names:?}"
    );
    let header = std::fs::read_to_string(so.with_extension("h")).unwrap();
    assert!(header.contains("int32_t my_digits_run("));
    assert!(header.contains("#define MY_DIGITS_INPUT0_SHAPE {1, 1, 8, 8}"));
    ok(&kestrel(&["run", p(&so), "--input", &digit_npy()]));
    let o = kestrel(&[
        "compile",
        &digits_onnx(),
        "-o",
        p(&so),
        "--symbol-prefix",
        "9x",
    ]);
    assert_user_error(&o, &["--symbol-prefix", "C identifier"]);
}

/// Defined dynamic symbols of an ELF file.
fn exported(bytes: &[u8]) -> Vec<String> {
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(bytes).unwrap();
    file.dynamic_symbols()
        .filter(|s| !s.is_undefined())
        .filter_map(|s| s.name().ok().map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect()
}

/// DT_NEEDED entries and undefined dynamic symbols of an ELF shared object, read with the
/// `object` crate independently of the compiler's own check.
fn imports(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    use object::read::elf::{Dyn, FileHeader, SectionHeader};
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(bytes).unwrap();
    assert_eq!(file.kind(), object::ObjectKind::Dynamic);
    let undefined = file
        .dynamic_symbols()
        .filter(|s| s.is_undefined())
        .filter_map(|s| s.name().ok().map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect();
    let header = object::elf::FileHeader64::<object::Endianness>::parse(bytes).unwrap();
    let endian = header.endian().unwrap();
    let sections = header.sections(endian, bytes).unwrap();
    let mut needed = Vec::new();
    for s in sections.iter() {
        if let Some((dyns, link)) = s.dynamic(endian, bytes).unwrap() {
            let strings = sections.strings(endian, bytes, link).unwrap();
            for d in dyns {
                if d.tag32(endian) == Some(object::elf::DT_NEEDED as i32) {
                    needed.push(String::from_utf8_lossy(d.string(endian, strings).unwrap()).into());
                }
            }
        }
    }
    (needed, undefined)
}

/// Every `--cpu` choice of every target: the feature alone, all together, the baseline, and
/// `native` for the host.
#[test]
fn every_target_and_cpu_choice_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = kestrel::driver::load_graph(Path::new(&digits_onnx())).unwrap();
    kestrel::driver::bind_default_batch(&mut g, Path::new("digits.onnx")).unwrap();
    let mut count = 0;
    for arch in [Arch::X86_64, Arch::Aarch64, Arch::Riscv64] {
        let mut choices: Vec<String> = vec!["generic".into()];
        if Arch::host() == Some(arch) {
            choices.push("native".into());
        }
        for f in arch.features() {
            choices.push(format!("+{}", f.name));
        }
        let all: Vec<String> = arch
            .features()
            .iter()
            .map(|f| format!("+{}", f.name))
            .collect();
        choices.push(all.join(","));
        for cpu in choices {
            let so = dir.path().join(format!("m{count}.so"));
            count += 1;
            let opts = AotOptions {
                target: Some(arch.triple().into()),
                cpu: Some(cpu.clone()),
                prefix: "m".into(),
                tasks: 2,
                min_task_macs: 1,
                scalarize: false,
            };
            let out = aot::compile_graph(&g, &opts, &so, "digits.onnx")
                .unwrap_or_else(|e| panic!("{} --cpu {cpu}: {e:#}", arch.triple()));
            let bytes = std::fs::read(&so).unwrap();
            let (needed, undefined) = imports(&bytes);
            assert!(
                needed.is_empty() && undefined.is_empty(),
                "{} --cpu {cpu}: DT_NEEDED {needed:?}, undefined {undefined:?}",
                arch.triple()
            );
            assert!(out.sizes.code > 0 && out.sizes.rodata > 0);
        }
    }
}

/// Compiles examples/c/run_digits.c against `so` and its header with `cc`.
fn build_c_example(cc: &str, so: &Path) -> PathBuf {
    let dir = so.parent().unwrap();
    let exe = dir.join("run_digits");
    let o = Command::new(cc)
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(dir)
        .arg(root().join("examples/c/run_digits.c"))
        .arg(so)
        .args(["-Wl,-rpath,$ORIGIN", "-pthread", "-o"])
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("{cc}: {e}"));
    assert!(
        o.status.success(),
        "{cc} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    exe
}

fn compile_digits_for(dir: &Path, target: &str, cpu: &str) -> PathBuf {
    let so = dir.join("digits.so");
    ok(&kestrel(&[
        "compile",
        &digits_onnx(),
        "-o",
        p(&so),
        "--target",
        target,
        "--cpu",
        cpu,
        "--symbol-prefix",
        "digits",
        "--tasks",
        "2",
        "--min-task-macs",
        "1",
    ]));
    so
}

#[test]
fn c_program_with_the_header_runs_the_host_so() {
    if !have_tool("cc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let so = compile_digits_for(dir.path(), "x86_64-unknown-linux-gnu", "native");
    let exe = build_c_example("cc", &so);
    let jit = jit_logits(dir.path());
    for threads in ["1", "2"] {
        let o = Command::new(&exe)
            .arg(digit_npy())
            .arg(threads)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let got = parse_logits(&String::from_utf8_lossy(&o.stdout));
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            jit.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "C program ({threads} threads) differs from the JIT"
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("class: 7"));
    }
}

/// Shared objects for the full-width kernels of AVX2+FMA (6×16 `ymm` tiles) and of AVX-512 (14×32
/// `zmm`), run on this host where it has the features: both give the JIT's bits (the wide and
/// 128-bit kernels agree bit for bit). A host without a feature skips that build with a reason.
#[test]
fn shared_objects_with_wide_kernels_match_the_jit() {
    if !have_tool("cc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let jit = jit_logits(dir.path());
    #[cfg(target_arch = "x86_64")]
    let builds = [
        (
            "+avx2,+fma",
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        ),
        (
            "+avx2,+fma,+avx512f,+avx512vnni",
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"),
        ),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let builds: [(&str, bool); 0] = [];
    for (cpu, runs_here) in builds {
        if !runs_here {
            eprintln!("skipped --cpu {cpu}: this host lacks a feature of it");
            continue;
        }
        let so = compile_digits_for(dir.path(), "x86_64-unknown-linux-gnu", cpu);
        let exe = build_c_example("cc", &so);
        let o = Command::new(&exe)
            .arg(digit_npy())
            .arg("2")
            .output()
            .unwrap();
        assert!(o.status.success(), "--cpu {cpu}: {}", stderr(&o));
        let got = parse_logits(&String::from_utf8_lossy(&o.stdout));
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            jit.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "--cpu {cpu}: the shared object differs from the JIT"
        );
    }
}

/// The cross-compiled C example under qemu-user matches the interpreter.
fn cross_run(target: &str, cpu: &str, cc: &str, qemu: &[&str], sysroot: &str) {
    if !have_tool(cc) || !have_tool(qemu[0]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let so = compile_digits_for(dir.path(), target, cpu);
    let exe = build_c_example(cc, &so);
    let want = interp_logits();
    for threads in ["1", "2"] {
        let o = Command::new(qemu[0])
            .args(&qemu[1..])
            .args(["-L", sysroot])
            .arg(&exe)
            .arg(digit_npy())
            .arg(threads)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{target} --cpu {cpu} under {}: {}",
            qemu[0],
            stderr(&o)
        );
        let got = parse_logits(&String::from_utf8_lossy(&o.stdout));
        assert_close(
            &got,
            &want,
            &format!("{target} --cpu {cpu}, {threads} threads"),
        );
    }
}

#[test]
fn aarch64_so_runs_under_qemu() {
    cross_run(
        "aarch64-unknown-linux-gnu",
        "generic",
        "aarch64-linux-gnu-gcc",
        &["qemu-aarch64"],
        "/usr/aarch64-linux-gnu",
    );
    cross_run(
        "aarch64-unknown-linux-gnu",
        "+dotprod,+i8mm,+lse,+fp16",
        "aarch64-linux-gnu-gcc",
        &["qemu-aarch64", "-cpu", "max"],
        "/usr/aarch64-linux-gnu",
    );
}

#[test]
fn riscv64_scalar_so_runs_under_qemu() {
    cross_run(
        "riscv64gc-unknown-linux-gnu",
        "generic",
        "riscv64-linux-gnu-gcc",
        &["qemu-riscv64"],
        "/usr/riscv64-linux-gnu",
    );
}

#[test]
fn riscv64_vector_so_runs_under_qemu() {
    cross_run(
        "riscv64gc-unknown-linux-gnu",
        "+v",
        "riscv64-linux-gnu-gcc",
        &["qemu-riscv64", "-cpu", "rv64,v=true,vlen=128"],
        "/usr/riscv64-linux-gnu",
    );
}

#[test]
fn bad_targets_features_and_outputs_are_clear_errors_without_files() {
    let dir = tempfile::tempdir().unwrap();
    let so = dir.path().join("m.so");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--target", "mips-unknown-linux-gnu"],
            vec!["mips", "supported targets"],
        ),
        (
            vec!["--cpu", "+avx3"],
            vec!["unknown", "avx3", "known features"],
        ),
        (vec!["--cpu", "avx2"], vec!["avx2", "native, generic"]),
        (
            vec!["--target", "aarch64-unknown-linux-gnu", "--cpu", "+avx2"],
            vec!["avx2", "dotprod"],
        ),
        (
            vec!["--target", "aarch64-unknown-linux-gnu", "--cpu", "native"],
            vec!["native", "generic"],
        ),
        (vec!["--tasks", "0"], vec!["--tasks"]),
        (vec!["--quantize", "int8"], vec!["--calib"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["compile", &*digits_onnx(), "-o", p(&so)]
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = kestrel(&args);
        assert_user_error(&o, &needles);
        assert!(
            listing(dir.path()).is_empty(),
            "{extra:?}: {:?}",
            listing(dir.path())
        );
    }
    // An output folder that does not exist, and a path under a regular file.
    let file = dir.path().join("f.txt");
    std::fs::write(&file, b"x").unwrap();
    for out in [dir.path().join("missing/m.so"), file.join("m.so")] {
        let o = kestrel(&["compile", &digits_onnx(), "-o", p(&out)]);
        assert_user_error(&o, &["-o", "cannot write"]);
    }
    assert_eq!(listing(dir.path()), vec!["f.txt".to_string()]);
    // Unbound non-batch dimensions are listed.
    let o = kestrel(&[
        "compile",
        &digits_onnx(),
        "-o",
        p(&so),
        "--input-shape",
        "input=1x1x8",
    ]);
    assert_user_error(&o, &["input-shape"]);
}

#[test]
fn missing_linker_is_a_clear_error_without_files() {
    let dir = tempfile::tempdir().unwrap();
    let so = dir.path().join("m.so");
    let run = |envs: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kestrel"));
        c.env_clear();
        for (k, v) in envs {
            c.env(k, v);
        }
        c.args(["compile", &digits_onnx(), "-o", p(&so)])
            .output()
            .unwrap()
    };
    let o = run(&[("PATH", "/nonexistent")]);
    assert_user_error(
        &o,
        &["no linker found", "rust-lld", "ld.lld", "KESTREL_LINKER"],
    );
    let o = run(&[("KESTREL_LINKER", "/nonexistent/rust-lld")]);
    assert_user_error(&o, &["KESTREL_LINKER", "/nonexistent/rust-lld"]);
    // A "linker" that fails: its message is shown and nothing is left behind.
    let o = run(&[("KESTREL_LINKER", "/bin/false"), ("PATH", "/usr/bin:/bin")]);
    assert_user_error(&o, &["linker", "failed"]);
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

#[test]
fn a_cpu_without_the_features_gets_an_error_not_a_fault() {
    if !cfg!(target_arch = "x86_64") || std::arch::is_x86_feature_detected!("avxvnni") {
        eprintln!("this CPU has AVX-VNNI: no feature left to test the refusal with");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let so = dir.path().join("m.so");
    ok(&kestrel(&[
        "compile",
        &digits_onnx(),
        "-o",
        p(&so),
        "--cpu",
        "+avxvnni",
    ]));
    let o = kestrel(&["run", p(&so), "--input", &digit_npy()]);
    assert_user_error(&o, &["lacks features", "+avxvnni"]);
    let model = kestrel_runtime::Model::load(&so)
        .err()
        .expect("load must refuse");
    assert!(
        matches!(model, kestrel_runtime::ModelError::Cpu { .. }),
        "{model}"
    );
    // The run functions refuse by themselves, before touching any buffer (hosts that do not
    // call kestrel_check_cpu get KESTREL_ERR_CPU, not an illegal instruction).
    // SAFETY: the symbols have the ABI's types; with the check failing no pointer is read.
    unsafe {
        let lib = libloading::Library::new(std::path::absolute(&so).unwrap()).unwrap();
        let check: libloading::Symbol<kestrel_runtime::abi::CheckCpuFn> =
            lib.get(b"kestrel_check_cpu").unwrap();
        assert_eq!(check(), kestrel_runtime::abi::ERR_CPU);
        let run: libloading::Symbol<kestrel_runtime::abi::RunFn> = lib.get(b"kestrel_run").unwrap();
        let st = run(std::ptr::null(), std::ptr::null(), std::ptr::null_mut());
        assert_eq!(st, kestrel_runtime::abi::ERR_CPU);
        let run_parallel: libloading::Symbol<kestrel_runtime::abi::RunParallelFn> =
            lib.get(b"kestrel_run_parallel").unwrap();
        let st = run_parallel(
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null_mut(),
            None,
            std::ptr::null_mut(),
        );
        assert_eq!(st, kestrel_runtime::abi::ERR_CPU);
    }
}

#[test]
fn run_time_errors_and_bad_workspaces_are_statuses() {
    use kestrel_ir::{DType, Graph, Op, Tensor, TensorType};
    // y = table[idx]: an index out of range is status 1, named after the node.
    let mut g = Graph::new("gather");
    let table = Tensor::from_vec(vec![4, 2], (0..8).map(|i| i as f32).collect());
    let data = g.add_const("table", table);
    let idx = g.add_input("idx", TensorType::known(DType::I64, &[2]));
    let y = g
        .add(Op::Gather { axis: 0 }, &[data, idx], "lookup")
        .unwrap();
    g.add_output("y", y);
    let dir = tempfile::tempdir().unwrap();
    let so = dir.path().join("g.so");
    aot::compile_graph(&g, &AotOptions::default(), &so, "gather").unwrap();
    let m = kestrel_runtime::Model::load(&so).unwrap();
    let run = |idx: [i64; 2]| {
        let bytes: Vec<u8> = idx.iter().flat_map(|i| i.to_le_bytes()).collect();
        m.run_to_vec(
            None,
            &[kestrel_runtime::TensorRef {
                dtype: kestrel_runtime::DType::I64,
                shape: &[2],
                data: &bytes,
            }],
        )
    };
    let out = run([3, -4]).unwrap();
    let vals: Vec<f32> = out[0]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(vals, vec![6.0, 7.0, 0.0, 1.0]);
    match run([0, 4]) {
        Err(kestrel_runtime::ModelError::Runtime { status: 1, message }) => {
            assert!(
                message.contains("lookup") && message.contains("out of range"),
                "{message}"
            )
        }
        Err(e) => panic!("expected status 1, got {e}"),
        Ok(_) => panic!("expected status 1, got success"),
    }
    drop(m);
    // A null or misaligned workspace is refused by the run function when the model needs one.
    let so = dir.path().join("d.so");
    ok(&kestrel(&["compile", &digits_onnx(), "-o", p(&so)]));
    // SAFETY: the symbol has the ABI's type; with a bad workspace no pointer is read.
    unsafe {
        let lib = libloading::Library::new(&so).unwrap();
        let run: libloading::Symbol<kestrel_runtime::abi::RunFn> = lib.get(b"kestrel_run").unwrap();
        let mut ws = vec![0u8; 256];
        let base = ws.as_mut_ptr();
        let misaligned = base.add(base.align_offset(64) + 1);
        assert_eq!(
            run(std::ptr::null(), std::ptr::null(), misaligned),
            kestrel_runtime::abi::ERR_WORKSPACE
        );
        assert_eq!(
            run(std::ptr::null(), std::ptr::null(), std::ptr::null_mut()),
            kestrel_runtime::abi::ERR_WORKSPACE
        );
    }
}

#[test]
fn runtime_checks_abi_version_and_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let so = dir.path().join("m.so");
    ok(&kestrel(&["compile", &digits_onnx(), "-o", p(&so)]));
    let model = kestrel_runtime::Model::load(&so).unwrap();
    assert_eq!(model.inputs()[0].name, "input");
    assert_eq!(model.inputs()[0].shape, vec![1, 1, 8, 8]);
    assert_eq!(model.outputs()[0].shape, vec![1, 10]);
    assert_eq!(model.target(), "x86_64-unknown-linux-gnu");
    // Wrong dtype / shape / buffer size are errors, not undefined behaviour.
    let x = vec![0u8; 256];
    let bad_shape = [kestrel_runtime::TensorRef {
        dtype: kestrel_runtime::DType::F32,
        shape: &[1, 64],
        data: &x,
    }];
    assert!(model.run_to_vec(None, &bad_shape).is_err());
    let bad_dtype = [kestrel_runtime::TensorRef {
        dtype: kestrel_runtime::DType::I32,
        shape: &[1, 1, 8, 8],
        data: &x,
    }];
    assert!(model.run_to_vec(None, &bad_dtype).is_err());
    let short = [kestrel_runtime::TensorRef {
        dtype: kestrel_runtime::DType::F32,
        shape: &[1, 1, 8, 8],
        data: &x[..100],
    }];
    assert!(model.run_to_vec(None, &short).is_err());
    assert!(model.run_to_vec(None, &[]).is_err());
    drop(model);
    // A descriptor from a future ABI version is refused by load.
    let mut bytes = std::fs::read(&so).unwrap();
    let magic = b"KSTL\x01\x00\x00\x00";
    let at = bytes
        .windows(magic.len())
        .position(|w| w == magic)
        .expect("descriptor in the file");
    bytes[at + 4] = 2;
    let future = dir.path().join("future.so");
    std::fs::write(&future, &bytes).unwrap();
    match kestrel_runtime::Model::load(&future) {
        Err(kestrel_runtime::ModelError::AbiVersion { found: 2, .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a version-2 descriptor was accepted"),
    }
    // A shared object for another architecture, and a wrong prefix, are load errors.
    let arm = dir.path().join("arm.so");
    ok(&kestrel(&[
        "compile",
        &digits_onnx(),
        "-o",
        p(&arm),
        "--target",
        "aarch64-unknown-linux-gnu",
    ]));
    assert!(matches!(
        kestrel_runtime::Model::load(&arm),
        Err(kestrel_runtime::ModelError::Load { .. })
    ));
    assert!(matches!(
        kestrel_runtime::Model::load_with_prefix(&so, "other"),
        Err(kestrel_runtime::ModelError::MissingSymbol { .. })
    ));
}

/// Quantized models compiled for aarch64 (widening, `sdot`, `usdot`) and riscv64 (`+v`, scalar)
/// run under qemu-user by `examples/c/run_model.c` and give the interpreter's outputs at `O2`
/// (integer ops) bit for bit: onnxruntime's QDQ digits_cnn.int8 and the same float model
/// quantized by `kestrel quantize`, on the 360 images of the fixture's bundle.
#[test]
fn quantized_so_files_equal_the_interpreter_under_qemu() {
    // (target, --cpu, cross compiler, qemu command, sysroot)
    type Cross<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a str);
    let targets: [Cross; 5] = [
        (
            "aarch64-unknown-linux-gnu",
            "generic",
            "aarch64-linux-gnu-gcc",
            &["qemu-aarch64"],
            "/usr/aarch64-linux-gnu",
        ),
        (
            "aarch64-unknown-linux-gnu",
            "+dotprod",
            "aarch64-linux-gnu-gcc",
            &["qemu-aarch64"],
            "/usr/aarch64-linux-gnu",
        ),
        (
            "aarch64-unknown-linux-gnu",
            "+dotprod,+i8mm",
            "aarch64-linux-gnu-gcc",
            &["qemu-aarch64", "-cpu", "max"],
            "/usr/aarch64-linux-gnu",
        ),
        (
            "riscv64gc-unknown-linux-gnu",
            "+v",
            "riscv64-linux-gnu-gcc",
            &["qemu-riscv64", "-cpu", "rv64,v=true,vlen=128"],
            "/usr/riscv64-linux-gnu",
        ),
        (
            "riscv64gc-unknown-linux-gnu",
            "generic",
            "riscv64-linux-gnu-gcc",
            &["qemu-riscv64"],
            "/usr/riscv64-linux-gnu",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let bundle = fixture("digits_cnn.int8.io.npz");
    let arrays = kestrel::tensor_io::read_npz(Path::new(&bundle)).unwrap();
    let input = arrays.iter().find(|(k, _)| k == "input").unwrap().1.clone();
    let input_bin = dir.path().join("input.bin");
    std::fs::write(&input_bin, &input.bytes()[..]).unwrap();
    let calib = dir.path().join("calib.npy");
    kestrel::tensor_io::write_npy(&calib, &input).unwrap();
    let ours = dir.path().join("kestrel_int8.onnx");
    ok(&kestrel(&[
        "quantize",
        &fixture("digits_cnn.onnx"),
        "--calib",
        p(&calib),
        "--samples",
        "32",
        "-o",
        p(&ours),
    ]));
    let theirs = PathBuf::from(fixture("digits_cnn.int8.onnx"));
    for model in [&theirs, &ours] {
        let reference = dir.path().join("interp.npz");
        ok(&kestrel(&[
            "run",
            p(model),
            "--backend",
            "interp",
            "--pipeline",
            "O2",
            "--inputs",
            &bundle,
            "--outputs",
            p(&reference),
        ]));
        let want = kestrel::tensor_io::read_npz(&reference).unwrap()[0]
            .1
            .to_f32_vec();
        for (k, (target, cpu, cc, qemu, sysroot)) in targets.iter().enumerate() {
            if !have_tool(cc) || !have_tool(qemu[0]) {
                continue;
            }
            let harness = dir.path().join(format!("run_model_{k}"));
            if !harness.exists() {
                let o = Command::new(cc)
                    .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
                    .arg(root().join("examples/c/run_model.c"))
                    .args(["-ldl", "-o"])
                    .arg(&harness)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{cc}: {}", stderr(&o));
            }
            let so = dir.path().join(format!("model_{k}.so"));
            ok(&kestrel(&[
                "compile",
                p(model),
                "-o",
                p(&so),
                "--target",
                target,
                "--cpu",
                cpu,
                "--inputs",
                &bundle,
            ]));
            let out = dir.path().join(format!("model_{k}.out"));
            let o = Command::new(qemu[0])
                .args(&qemu[1..])
                .args(["-L", sysroot])
                .arg(&harness)
                .arg(&so)
                .arg(&input_bin)
                .arg("-o")
                .arg(&out)
                .output()
                .unwrap();
            let what = format!("{} for {target} --cpu {cpu}", model.display());
            assert!(o.status.success(), "{what}: {}", stderr(&o));
            let got: Vec<f32> = std::fs::read(&out)
                .unwrap()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(got.len(), want.len(), "{what}");
            let differ = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differ,
                0,
                "{what}: {differ} of {} outputs differ from the interpreter",
                want.len()
            );
        }
    }
}

/// Shared models (`KESTREL_MODELS`) compiled for aarch64 and riscv64 (scalar and +v), run under
/// qemu-user by `examples/c/run_model.c` (dlopen and the descriptor), match torch's reference
/// outputs with the tolerance of the float model tests. They cover what digits does not: exp,
/// hard-swish and sigmoid (mobilenet_v3_small), concatenation and global pooling (squeezenet1_1),
/// layer norm, fused attention (its GEMMs and softmax) and GELU epilogues (vit_tiny_16; not on
/// scalar riscv64, which takes minutes under qemu), QuantizeLinear/DequantizeLinear
/// (digits_cnn.int8 at O2: integer kernels on the widening route, sdot and usdot on aarch64,
/// lane-wise on riscv64; within two output steps).
#[test]
fn shared_models_run_under_qemu() {
    let Some(models) = testing::shared_models() else {
        eprintln!("KESTREL_MODELS is not set: skipping the shared models under qemu");
        return;
    };
    // (target, --cpu, cross compiler, qemu command, sysroot, file tag)
    type Cross<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a str, &'a str);
    let targets: [Cross; 5] = [
        (
            "aarch64-unknown-linux-gnu",
            "generic",
            "aarch64-linux-gnu-gcc",
            &["qemu-aarch64"],
            "/usr/aarch64-linux-gnu",
            "a64",
        ),
        // The int8 model's integer kernels on sdot and usdot (docs/QUANTIZATION.md).
        (
            "aarch64-unknown-linux-gnu",
            "+dotprod",
            "aarch64-linux-gnu-gcc",
            &["qemu-aarch64"],
            "/usr/aarch64-linux-gnu",
            "a64dot",
        ),
        (
            "aarch64-unknown-linux-gnu",
            "+dotprod,+i8mm",
            "aarch64-linux-gnu-gcc",
            &["qemu-aarch64"],
            "/usr/aarch64-linux-gnu",
            "a64mm",
        ),
        (
            "riscv64gc-unknown-linux-gnu",
            "+v",
            "riscv64-linux-gnu-gcc",
            &["qemu-riscv64", "-cpu", "rv64,v=true,vlen=128"],
            "/usr/riscv64-linux-gnu",
            "rvv",
        ),
        (
            "riscv64gc-unknown-linux-gnu",
            "generic",
            "riscv64-linux-gnu-gcc",
            &["qemu-riscv64"],
            "/usr/riscv64-linux-gnu",
            "rvs",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (target, cpu, cc, qemu, sysroot, tag) in targets {
        if !have_tool(cc) || !have_tool(qemu[0]) {
            continue;
        }
        let harness = dir.path().join(format!("run_model_{tag}"));
        let o = Command::new(cc)
            .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"])
            .arg(root().join("examples/c/run_model.c"))
            .args(["-ldl", "-o"])
            .arg(&harness)
            .output()
            .unwrap();
        assert!(o.status.success(), "{cc}: {}", stderr(&o));
        for model in [
            "torchvision/mobilenet_v3_small",
            "torchvision/squeezenet1_1",
            "torchvision/vit_tiny_16",
            "digits/digits_cnn.int8",
        ] {
            if model.ends_with("vit_tiny_16") && tag == "rvs" {
                continue;
            }
            if tag.starts_with("a64") && tag != "a64" && !model.ends_with("int8") {
                continue;
            }
            let onnx = models.join(format!("{model}.onnx"));
            let bundle = models.join(format!("{model}.io.npz"));
            let model = model.rsplit('/').next().unwrap();
            assert!(onnx.is_file(), "{} is missing", onnx.display());
            let arrays = kestrel::tensor_io::read_npz(&bundle).unwrap();
            let get = |n: &str| arrays.iter().find(|(k, _)| k == n).unwrap().1.clone();
            let (input, logits) = (get("input"), get("logits"));
            let input_bin = dir.path().join(format!("{model}.in.bin"));
            std::fs::write(&input_bin, &input.bytes()[..]).unwrap();
            let so = dir.path().join(format!("{model}_{tag}.so"));
            ok(&kestrel(&[
                "compile",
                p(&onnx),
                "-o",
                p(&so),
                "--target",
                target,
                "--cpu",
                cpu,
                "--inputs",
                p(&bundle),
            ]));
            let out = dir.path().join(format!("{model}_{tag}.out"));
            let o = Command::new(qemu[0])
                .args(&qemu[1..])
                .args(["-L", sysroot])
                .arg(&harness)
                .arg(&so)
                .arg(&input_bin)
                .arg("-o")
                .arg(&out)
                .output()
                .unwrap();
            assert!(o.status.success(), "{model} {target} {cpu}: {}", stderr(&o));
            let got: Vec<f32> = std::fs::read(&out)
                .unwrap()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let what = format!("{model} {target} --cpu {cpu}");
            if model.ends_with("int8") {
                assert_within_steps(&got, &logits.to_f32_vec(), output_step(&onnx), &what);
            } else {
                assert_close(&got, &logits.to_f32_vec(), &what);
            }
        }
    }
}
