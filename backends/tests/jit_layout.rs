//! The JIT's module structure (docs/JIT.md, "Modules"), checked on the sources: the files of
//! `backends/src/jit` import one another without cycles, micro-kernels (`kernels/`) never import
//! op lowerings, the context or the lowering driver, op lowerings never import their dispatcher
//! (`ops/mod.rs`), and the kernel context (`context.rs`) sits below both, importing only the
//! emitter and the error and option types.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The JIT's source folder.
fn jit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/jit")
}

/// Every `.rs` file under `dir`, relative to the JIT folder (`ops/conv.rs`).
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("jit sources") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(jit_dir()).expect("under jit/");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The module path (inside `jit`) of a file: `ops/conv.rs` → `[ops, conv]`, `lower/mod.rs` →
/// `[lower]`, `mod.rs` → `[]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The file a path inside `jit` names: the deepest module file along it (items of a module
/// resolve to the module's file).
fn file_of(path: &[String]) -> String {
    let dir = jit_dir();
    let mut found = "mod.rs".to_string();
    let mut at = PathBuf::new();
    for seg in path {
        let as_file = at.join(format!("{seg}.rs"));
        let as_dir = at.join(seg).join("mod.rs");
        if dir.join(&as_file).is_file() {
            found = as_file.to_string_lossy().into_owned();
        } else if dir.join(&as_dir).is_file() {
            found = as_dir.to_string_lossy().into_owned();
        } else {
            break;
        }
        at = at.join(seg);
    }
    found
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').expect("balanced braces")];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(&format!("{prefix}{}", p.trim())))
        .collect()
}

/// A `use` tree without whitespace and without its renames (`a as b` is `a`).
fn without_renames(tree: &str) -> String {
    let toks: Vec<&str> = tree.split_whitespace().collect();
    let mut kept = String::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == "as" && i + 1 < toks.len() {
            // Keep what follows the alias (`,` or `}`).
            kept.push_str(
                toks[i + 1].trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'),
            );
            i += 2;
        } else {
            kept.push_str(toks[i]);
            i += 1;
        }
    }
    kept
}

/// The JIT files `file` refers to through `use` items and inline `crate::jit::`/`super::` paths.
fn imports(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(jit_dir().join(file)).expect("read source");
    // Unit-test modules (at the end of a file, by convention) are not part of the structure.
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let module = module_of(file);
    let mut paths: Vec<String> = Vec::new();
    for stmt in code.split(';') {
        let s = stmt.trim();
        let s = s.strip_prefix("pub ").unwrap_or(s);
        let s = s.strip_prefix("pub(crate) ").unwrap_or(s);
        if let Some(tree) = s.strip_prefix("use ") {
            paths.extend(expand(&without_renames(tree)));
        }
    }
    for marker in ["crate::jit::", "super::"] {
        for (i, _) in code.match_indices(marker) {
            let before = code[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest: String = code[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(rest);
        }
    }
    // Inline paths through a child module (`placement::place(..)` in `lower/mod.rs`).
    let dir = jit_dir().join(module.join("/"));
    let own_dir = file.ends_with("mod.rs") || module.is_empty();
    if own_dir {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            let name = match (p.is_dir(), p.file_stem()) {
                (true, _) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
                (false, Some(stem)) if stem != "mod" => Some(stem.to_string_lossy().into_owned()),
                _ => None,
            };
            let Some(name) = name else { continue };
            let needle = format!("{name}::");
            for (i, _) in code.match_indices(&needle) {
                let before = code[..i].chars().last();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    paths.push(format!("self::{name}"));
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    for p in paths {
        let segs: Vec<String> = p.split("::").map(String::from).collect();
        let resolved: Vec<String> = match segs.first().map(String::as_str) {
            Some("crate") if segs.get(1).is_some_and(|s| s == "jit") => segs[2..].to_vec(),
            Some("super") => {
                // `super` of a file's module, repeated.
                let mut base = module.clone();
                let mut rest = &segs[..];
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                base
            }
            Some("self") => {
                let mut base = module.clone();
                base.extend(segs[1..].iter().cloned());
                base
            }
            // A path relative to the file's own module (`use lower::lower;` in `mod.rs`).
            Some(first) => {
                let mut base = module.clone();
                base.push(first.to_string());
                if file_of(&base) == file {
                    continue;
                }
                base.extend(segs[1..].iter().cloned());
                base
            }
            None => continue,
        };
        let target = file_of(&resolved);
        if target != file {
            out.insert(target);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(&jit_dir(), &mut files);
    files
        .into_iter()
        .map(|f| (f.clone(), imports(&f)))
        .collect()
}

#[test]
fn the_parser_reads_imports() {
    let g = graph();
    assert!(
        g["ops/conv.rs"].contains("context.rs"),
        "{:?}",
        g["ops/conv.rs"]
    );
    assert!(
        g["ops/conv.rs"].contains("kernels/gemm/mod.rs"),
        "{:?}",
        g["ops/conv.rs"]
    );
    assert!(
        g["lower/functions.rs"].contains("ops/mod.rs"),
        "{:?}",
        g["lower/functions.rs"]
    );
    assert_eq!(
        expand("a::{b,c::{d,e}}"),
        vec!["a::b".to_string(), "a::c::d".into(), "a::c::e".into()]
    );
    assert_eq!(without_renames("super::x as y"), "super::x");
    assert_eq!(without_renames("a::{b as c, d}"), "a::{b,d}");
}

#[test]
fn kernels_import_no_op_lowering_context_or_driver() {
    for (file, deps) in graph() {
        if !file.starts_with("kernels/") {
            continue;
        }
        for d in deps {
            assert!(
                !(d.starts_with("ops/") || d.starts_with("lower/") || d == "context.rs"),
                "{file} imports {d}: kernels sit below op lowerings and their context"
            );
        }
    }
}

#[test]
fn op_lowerings_do_not_import_the_dispatcher() {
    for (file, deps) in graph() {
        if file.starts_with("ops/") && file != "ops/mod.rs" {
            assert!(
                !deps.contains("ops/mod.rs"),
                "{file} imports the dispatcher ops/mod.rs"
            );
        }
    }
}

#[test]
fn the_context_is_a_leaf() {
    let allowed = ["emit.rs", "error.rs", "options.rs", "isa.rs"];
    for d in &graph()["context.rs"] {
        assert!(allowed.contains(&d.as_str()), "context.rs imports {d}");
    }
}

#[test]
fn no_import_cycles() {
    let g = graph();
    // Depth-first search for a back edge; report the cycle.
    fn visit(
        f: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(f) {
            return;
        }
        if let Some(pos) = stack.iter().position(|s| s == f) {
            panic!("import cycle: {} -> {f}", stack[pos..].join(" -> "));
        }
        stack.push(f.to_string());
        for d in g.get(f).into_iter().flatten() {
            visit(d, g, stack, done);
        }
        stack.pop();
        done.insert(f.to_string());
    }
    let mut done = BTreeSet::new();
    for f in g.keys() {
        visit(f, &g, &mut Vec::new(), &mut done);
    }
}
