//! Runs the whole ONNX backend test suite on one backend and prints `N passed, N failed` and a
//! per-op table.
//!
//! ```text
//! cargo run --release -p kestrel-tests --bin conformance -- [--backend interp] [--filter REGEX]
//!     [--failures] [--write-allowlist FILE]
//! ```

use anyhow::{bail, Context, Result};
use kestrel_tests::conformance::*;
use rayon::prelude::*;

fn main() -> Result<()> {
    let mut backend_name = "interp".to_string();
    let mut filter: Option<regex::Regex> = None;
    let mut show_failures = false;
    let mut write_allowlist: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--backend" => backend_name = args.next().context("--backend needs a value")?,
            "--filter" => {
                filter = Some(regex::Regex::new(
                    &args.next().context("--filter needs a value")?,
                )?)
            }
            "--failures" => show_failures = true,
            "--write-allowlist" => {
                write_allowlist = Some(args.next().context("--write-allowlist needs a file")?)
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    let backend = backend_by_name(&backend_name)
        .with_context(|| format!("unknown backend {backend_name}"))?;
    let root = ensure_data()?;
    let rules = parse_allowlist(&std::fs::read_to_string(allowlist_path())?)?;
    let cases: Vec<Case> = discover(&root)?
        .into_iter()
        .filter(|c| filter.as_ref().is_none_or(|f| f.is_match(&c.name)))
        .collect();
    let results: Vec<(Case, Outcome)> = cases
        .into_par_iter()
        .map(|case| {
            let rule = rules.iter().find(|r| r.matches(&backend_name, &case.name));
            let (atol, rtol) = rule.map_or((DEFAULT_ATOL, DEFAULT_RTOL), |r| (r.atol, r.rtol));
            let outcome = run_case(&case, backend, atol, rtol);
            (case, outcome)
        })
        .collect();
    println!("{:<28} {:>6} {:>6}", "op", "pass", "fail");
    for (op, (pass, fail)) in per_op_table(&results) {
        println!("{op:<28} {pass:>6} {fail:>6}");
    }
    let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
    for (_, o) in &results {
        *by_kind.entry(o.kind()).or_default() += 1;
    }
    if show_failures {
        for (case, o) in &results {
            if !o.passed() {
                println!(
                    "FAIL {} [{}] {}",
                    case.name,
                    o.kind(),
                    o.reason().lines().next().unwrap_or("")
                );
            }
        }
    }
    if let Some(path) = write_allowlist {
        let mut text = String::new();
        for (case, o) in &results {
            if o.passed() {
                text.push_str(&format!("{backend_name} {}\n", case.name));
            }
        }
        std::fs::write(&path, text)?;
    }
    let passed = results.iter().filter(|(_, o)| o.passed()).count();
    println!("by outcome: {by_kind:?}");
    println!("{} passed, {} failed", passed, results.len() - passed);
    Ok(())
}
