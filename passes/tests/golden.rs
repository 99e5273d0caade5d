//! Golden IR tests: `tests/golden/<pass>.kir` (at the workspace root), one file per pass, one test
//! per case, named `<pass>::<case>` (the case name in lower case, every run of other characters
//! one `_`), e.g. `cargo test -p kestrel-passes --test golden fuse::epilogue_conv_relu`.
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
//! output round-trip through text; the printed output equals the expected section (a failure
//! prints a unified diff, expected against actual); and the interpreter gives the same outputs on
//! both graphs for seeded random inputs — bit-exactly, or within `tolerance * max(1, |reference|)`
//! when given. Symbolic input extents are bound to 2. Constants print inline.
//!
//! The tests are the cases found in the files when the binary starts (this target has no libtest
//! harness: `libtest-mimic` runs them), so a case cannot exist without its test. Two cases whose
//! test names coincide, a case without a name and a file without cases stop the binary.
//!
//! `BLESS=1 cargo test -p kestrel-passes --test golden [FILTER]` rewrites the expected section of
//! every case that ran (all, or those the filter selects) from its current output; the other
//! cases, and cases whose checks failed, keep theirs.

use kestrel_backends::interp;
use kestrel_ir::testing::{check_close, random_inputs, unified_diff};
use kestrel_ir::text::{parse, print, PrintOptions, WeightStyle};
use kestrel_ir::{verify, DType, Dim, Graph, Op, Tensor, TensorType, ValueId};
use kestrel_passes::quantize::{Calibrator, Method, Range};
use kestrel_passes::{PassContext, PipelineOptions};
use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const CASE: &str = "// ==== case:";
const EXPECTED: &str = "// ---- expected ----";

struct Case {
    name: String,
    /// The 1-based line of the case's `// ==== case:` header.
    line: usize,
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
    for (index, line) in text.lines().enumerate() {
        if let Some(name) = line.strip_prefix(CASE) {
            cases.push(Case {
                name: name.trim().to_string(),
                line: index + 1,
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

fn evaluator() -> PassContext {
    let mut cx = PassContext::with_evaluator(|op: &Op, ins: &[&Tensor]| {
        Some(interp::eval_op(op, ins).map_err(|e| e.to_string()))
    });
    cx.calibrator = Some(Arc::new(SeededCalibrator));
    cx
}

/// The calibration data of golden cases: the inputs the numerics check uses (seeds 0 and 1),
/// run by the interpreter; min/max ranges only.
struct SeededCalibrator;

impl Calibrator for SeededCalibrator {
    fn ranges(&self, g: &Graph, tensors: &[ValueId], method: Method) -> Result<Vec<Range>, String> {
        if method != Method::MinMax {
            return Err("golden cases calibrate with method=minmax only".into());
        }
        let mut probe = g.clone();
        probe.outputs.clear();
        for (k, &t) in tensors.iter().enumerate() {
            probe.add_output(format!("t{k}"), t);
        }
        let mut ranges = vec![
            Range {
                min: f32::INFINITY,
                max: f32::NEG_INFINITY
            };
            tensors.len()
        ];
        for seed in 0..2 {
            let outs = interp::run(&probe, &random_inputs(g, seed)).map_err(|e| e.to_string())?;
            for (r, t) in ranges.iter_mut().zip(outs) {
                for v in t.to_f32_vec() {
                    r.min = r.min.min(v);
                    r.max = r.max.max(v);
                }
            }
        }
        Ok(ranges)
    }
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
                    if let Err(m) = check_close(&o.to_f64_vec(), &w.to_f64_vec(), tol) {
                        panic!(
                            "{name}: output {k}[{}]: {} vs {} (tolerance {tol})",
                            m.index, m.want, m.got
                        );
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

/// One `tests/golden/<pass>.kir` file as parsed.
struct GoldenFile {
    path: PathBuf,
    pass: String,
    /// The text before the first case.
    header: String,
    cases: Vec<Case>,
}

impl GoldenFile {
    /// `tests/golden/<pass>.kir:<line>`, the way an editor opens it.
    fn location(&self, case: &Case) -> String {
        format!("tests/golden/{}.kir:{}", self.pass, case.line)
    }

    /// The file with each case's expected section replaced by its entry in `outputs` (keyed by
    /// case index); cases without one keep theirs.
    fn rewritten(&self, outputs: &HashMap<usize, String>) -> String {
        let mut out = self.header.clone();
        for (index, case) in self.cases.iter().enumerate() {
            out.push_str(&format!("{CASE} {}\n", case.name));
            for d in &case.directives {
                out.push_str(d);
                out.push('\n');
            }
            out.push_str(case.input.trim_end());
            out.push('\n');
            if let Some(expected) = outputs.get(&index).or(case.expected.as_ref()) {
                out.push_str(EXPECTED);
                out.push('\n');
                out.push_str(expected.trim_end());
                out.push_str("\n\n");
            }
        }
        out.trim_end().to_string() + "\n"
    }
}

/// Every `*.kir` file of `dir`, sorted by name.
///
/// # Panics
/// When the folder cannot be read, or a file cannot be read or has no case.
fn golden_files(dir: &Path) -> Vec<GoldenFile> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kir"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .kir files in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let pass = path.file_stem().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let (header, cases) = parse_cases(&text);
            assert!(!cases.is_empty(), "{} has no cases", path.display());
            GoldenFile {
                path,
                pass,
                header,
                cases,
            }
        })
        .collect()
}

/// `<pass>::<case>`: the case name in lower case with every run of characters other than ASCII
/// letters and digits replaced by one `_`.
fn test_name(pass: &str, case: &str) -> String {
    let mut slug = String::new();
    for c in case.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('_') {
            slug.push('_');
        }
    }
    format!("{pass}::{}", slug.trim_end_matches('_'))
}

/// `Ok` when the printed output `got` equals the case's expected section (trailing whitespace
/// aside); otherwise the case's location and a unified diff, expected against actual.
fn check_expected(file: &GoldenFile, case: &Case, got: &str) -> Result<(), String> {
    let got = got.trim_end().to_string() + "\n";
    let Some(expected) = &case.expected else {
        return Err(format!(
            "{}: case \"{}\" has no `{EXPECTED}` section (BLESS=1 writes it); the output is\n{got}",
            file.location(case),
            case.name
        ));
    };
    let expected = expected.trim_end().to_string() + "\n";
    if expected == got {
        return Ok(());
    }
    Err(format!(
        "{}: case \"{}\": the output differs from the expected section (BLESS=1 rewrites it)\n{}",
        file.location(case),
        case.name,
        unified_diff(&expected, &got)
    ))
}

/// The outputs of the cases that ran under `BLESS=1`, by (file index, case index).
type Blessed = Arc<Mutex<BTreeMap<(usize, usize), String>>>;

fn main() {
    let args = Arguments::from_args();
    let bless = std::env::var_os("BLESS").is_some_and(|v| v == "1");
    let files = Arc::new(golden_files(&golden_dir()));
    let blessed: Blessed = Arc::default();

    let mut trials = vec![
        Trial::test("input_types_are_bound_for_numerics", || {
            input_types_are_bound_for_numerics();
            Ok(())
        }),
        Trial::test("a_wrong_expectation_fails_with_a_diff", || {
            a_wrong_expectation_fails_with_a_diff();
            Ok(())
        }),
    ];
    let mut names: HashMap<String, String> = HashMap::new();
    for (file_index, file) in files.iter().enumerate() {
        for (case_index, case) in file.cases.iter().enumerate() {
            let name = test_name(&file.pass, &case.name);
            assert!(
                !name.ends_with("::"),
                "{}: a case needs a name with a letter or digit",
                file.location(case)
            );
            if let Some(first) = names.insert(name.clone(), file.location(case)) {
                panic!(
                    "{} and {first}: both cases would be the test {name}; rename one",
                    file.location(case)
                );
            }
            let (files, blessed) = (files.clone(), blessed.clone());
            trials.push(Trial::test(name, move || {
                let file = &files[file_index];
                let case = &file.cases[case_index];
                let got = run_case(&file.pass, case);
                if bless {
                    blessed
                        .lock()
                        .unwrap()
                        .insert((file_index, case_index), got);
                    return Ok(());
                }
                check_expected(file, case, &got).map_err(Failed::from)
            }));
        }
    }

    let conclusion = libtest_mimic::run(&args, trials);
    if bless {
        let blessed = blessed.lock().unwrap();
        for (file_index, file) in files.iter().enumerate() {
            let outputs: HashMap<usize, String> = blessed
                .range((file_index, 0)..(file_index + 1, 0))
                .map(|(&(_, case), out)| (case, out.clone()))
                .collect();
            if !outputs.is_empty() {
                std::fs::write(&file.path, file.rewritten(&outputs))
                    .unwrap_or_else(|e| panic!("{}: {e}", file.path.display()));
            }
        }
    }
    conclusion.exit();
}

/// The harness binds symbolic extents to 2; make sure that is consistent across inputs.
fn input_types_are_bound_for_numerics() {
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

/// The comparison can fail: a case whose expected section is not the output is refused with its
/// location and a unified diff that shows the wrong line against the right one.
fn a_wrong_expectation_fails_with_a_diff() {
    let text = "\
// ==== case: dead node
graph @t(%x: f32[2]) -> (y: f32[2]) {
  %d = neg(%x) : f32[2]
  %y = relu(%x) : f32[2]
  return %y
}
// ---- expected ----
graph @t(%x: f32[2]) -> (y: f32[2]) {
  %0 = relu(%x) : f32[2]
  return %0
}
";
    let (header, cases) = parse_cases(text);
    let mut file = GoldenFile {
        path: PathBuf::from("dce.kir"),
        pass: "dce".to_string(),
        header,
        cases,
    };
    let got = run_case("dce", &file.cases[0]);
    assert_eq!(check_expected(&file, &file.cases[0], &got), Ok(()));
    let right = file.cases[0].expected.clone().unwrap();
    file.cases[0].expected = Some(right.replace("relu", "sigmoid"));
    let err = check_expected(&file, &file.cases[0], &got).unwrap_err();
    assert!(
        err.starts_with("tests/golden/dce.kir:1: case \"dead node\": the output differs"),
        "{err}"
    );
    assert!(
        err.contains("--- expected\n+++ actual\n@@ -1,4 +1,4 @@\n graph @t(%x: f32[2]) -> (y: f32[2]) {\n-  %0 = sigmoid(%x) : f32[2]\n+  %0 = relu(%x) : f32[2]\n"),
        "{err}"
    );
    file.cases[0].expected = None;
    assert!(check_expected(&file, &file.cases[0], &got)
        .unwrap_err()
        .contains("has no `// ---- expected ----` section"));
}
