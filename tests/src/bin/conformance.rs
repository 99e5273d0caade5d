//! Runs the whole ONNX backend test suite on one backend and prints `N passed, N failed` and a
//! per-op table.
//!
//! ```text
//! cargo run --release -p kestrel-tests --bin conformance -- [--backend interp] [--filter REGEX]
//!     [--failures] [--write-allowlist FILE] [--markdown]
//! ```
//!
//! `--markdown` prints, instead of the plain report, the counts per suite folder, the per-op
//! table and every failing case grouped by reason, as the markdown of `docs/CONFORMANCE.md`.

use anyhow::{bail, Context, Result};
use kestrel_tests::conformance::*;
use rayon::prelude::*;

fn main() -> Result<()> {
    let mut backend_name = "interp".to_string();
    let mut filter: Option<regex::Regex> = None;
    let mut show_failures = false;
    let mut write_allowlist: Option<String> = None;
    let mut markdown = false;
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
            "--markdown" => markdown = true,
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
    if let Some(path) = &write_allowlist {
        // The header comments and other backends' lines stay; this backend's lines (one block,
        // where the first one was) become the passing cases, each keeping the tolerances its
        // old line gave it.
        let old = std::fs::read_to_string(path).unwrap_or_default();
        let prefix = format!("{backend_name} ");
        let (mut before, mut after) = (String::new(), String::new());
        let mut tolerances = std::collections::HashMap::new();
        let mut seen = false;
        for line in old.lines() {
            match line.strip_prefix(&prefix) {
                Some(rest) => {
                    seen = true;
                    let mut parts = rest.splitn(2, ' ');
                    if let (Some(case), Some(tol)) = (parts.next(), parts.next()) {
                        tolerances.insert(case.to_string(), tol.to_string());
                    }
                }
                None if seen => after.push_str(&format!("{line}\n")),
                None => before.push_str(&format!("{line}\n")),
            }
        }
        let mut text = before;
        for (case, o) in &results {
            if o.passed() {
                match tolerances.get(&case.name) {
                    Some(tol) => text.push_str(&format!("{prefix}{} {tol}\n", case.name)),
                    None => text.push_str(&format!("{prefix}{}\n", case.name)),
                }
            }
        }
        text.push_str(&after);
        std::fs::write(path, text)?;
    }
    if markdown {
        print!("{}", markdown_report(&results));
        return Ok(());
    }
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
    let passed = results.iter().filter(|(_, o)| o.passed()).count();
    println!("by outcome: {by_kind:?}");
    println!("{} passed, {} failed", passed, results.len() - passed);
    Ok(())
}

/// The failure group of an outcome: a heading, and a sub-key (op or dtype name) where the reason
/// names one.
fn classify(o: &Outcome) -> (String, String) {
    let reason = o.reason().lines().next().unwrap_or("");
    let word_after = |marker: &str| {
        reason
            .split(marker)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string)
    };
    if reason.contains("is not supported") {
        if let Some(op) = word_after("operator ") {
            return ("Unsupported op".into(), op);
        }
        if let Some(dt) = word_after("data type ") {
            return ("Unsupported dtype".into(), dt);
        }
    }
    if reason.contains("not a dense tensor") {
        return (
            "Non-tensor inputs or outputs (sequence, map, optional, sparse)".into(),
            String::new(),
        );
    }
    if reason.contains("training mode") {
        return ("Training-mode ops".into(), String::new());
    }
    // Otherwise the reason without the file path and node number.
    let short = reason.rsplit("model.onnx: ").next().unwrap_or(reason);
    let short = match short.split_once("): ") {
        Some((_, rest)) if short.starts_with("node ") => rest,
        _ => short,
    };
    (format!("Other ({})", o.kind()), short.to_string())
}

fn markdown_report(results: &[(Case, Outcome)]) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let mut md = String::new();
    let passed = results.iter().filter(|(_, o)| o.passed()).count();
    let _ = writeln!(
        md,
        "**{passed} passed of {} cases** ({} failed).\n",
        results.len(),
        results.len() - passed
    );
    let mut suites: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (case, o) in results {
        let suite = case.name.split('/').next().unwrap_or("");
        let e = suites.entry(suite).or_default();
        e.0 += o.passed() as usize;
        e.1 += 1;
    }
    let _ = writeln!(md, "| suite folder | passed | cases |\n|---|---:|---:|");
    for (suite, (p, n)) in &suites {
        let _ = writeln!(md, "| `{suite}/` | {p} | {n} |");
    }
    let _ = writeln!(md, "\n### Per ONNX op\n");
    let _ = writeln!(
        md,
        "Cases using the op (a case with several ops counts for each).\n\n| op | pass | fail |\n|---|---:|---:|"
    );
    for (op, (p, f)) in per_op_table(results) {
        let _ = writeln!(md, "| {op} | {p} | {f} |");
    }
    // group -> key -> cases
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<&str>>> = BTreeMap::new();
    for (case, o) in results.iter().filter(|(_, o)| !o.passed()) {
        let (g, k) = classify(o);
        groups
            .entry(g)
            .or_default()
            .entry(k)
            .or_default()
            .push(&case.name);
    }
    let _ = writeln!(md, "\n### Failing cases by reason\n");
    for (group, keys) in &groups {
        let total: usize = keys.values().map(Vec::len).sum();
        let _ = writeln!(md, "#### {group}: {total} cases\n");
        let mut keys: Vec<_> = keys.iter().collect();
        keys.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        for (key, cases) in keys {
            let label = if key.is_empty() {
                String::new()
            } else {
                format!("**{key}** ({}): ", cases.len())
            };
            let list: Vec<String> = cases.iter().map(|c| format!("`{c}`")).collect();
            let _ = writeln!(md, "- {label}{}", list.join(", "));
        }
        let _ = writeln!(md);
    }
    md
}
