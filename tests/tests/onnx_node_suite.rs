//! Every allowlisted ONNX backend test case passes (`tests/conformance/allowlist.txt`).
//! The data is fetched by `scripts/fetch-onnx-tests.sh` when missing.

use kestrel_tests::conformance::*;
use rayon::prelude::*;

#[test]
fn allowlisted_cases_pass_on_the_interpreter() {
    check_backend("interp", interp_backend);
}

#[test]
fn allowlisted_cases_pass_on_the_jit() {
    check_backend("jit", jit_backend);
}

fn check_backend(name: &str, backend: Backend) {
    let root = ensure_data().expect("ONNX test data");
    let rules = parse_allowlist(&std::fs::read_to_string(allowlist_path()).unwrap()).unwrap();
    let cases = discover(&root).unwrap();
    assert!(
        cases.len() > 1700,
        "only {} cases found under {}",
        cases.len(),
        root.display()
    );
    for rule in rules.iter().filter(|r| r.backend == name) {
        assert!(
            cases.iter().any(|c| rule.matches(name, &c.name)),
            "allowlist line {} matches no case",
            rule.line
        );
    }
    let listed: Vec<(&Case, &AllowRule)> = cases
        .iter()
        .filter_map(|c| {
            rules
                .iter()
                .find(|r| r.matches(name, &c.name))
                .map(|r| (c, r))
        })
        .collect();
    let failures: Vec<String> = listed
        .par_iter()
        .filter_map(|(case, rule)| {
            let outcome = run_case(case, backend, rule.atol, rule.rtol);
            (!outcome.passed())
                .then(|| format!("{} [{}]: {}", case.name, outcome.kind(), outcome.reason()))
        })
        .collect();
    eprintln!(
        "{name}: {} allowlisted cases, {} failed",
        listed.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} allowlisted cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
