//! Imports ONNX models and reports timing and failures.
//!
//! `cargo run --release -p kestrel --example onnx_import -- PATH...` where each PATH is a model
//! file or a folder searched recursively for `*.onnx`. With `--ops`, also lists every
//! (op_type, opset) pair of the default domain found in the models.

use kestrel::onnx::{load_model, proto::ModelProto};
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn collect(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            collect(&e, out);
        }
    } else if p.extension().is_some_and(|e| e == "onnx") {
        out.push(p.to_path_buf());
    }
}

fn main() {
    let mut show_ops = false;
    let mut paths = Vec::new();
    for a in std::env::args().skip(1) {
        if a == "--ops" {
            show_ops = true;
        } else {
            collect(Path::new(&a), &mut paths);
        }
    }
    let mut ops: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ok = 0usize;
    for p in &paths {
        if show_ops {
            if let Ok(bytes) = std::fs::read(p) {
                if let Ok(m) = ModelProto::decode(bytes.as_slice()) {
                    let v = m
                        .opset_import
                        .iter()
                        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
                        .map_or(0, |o| o.version);
                    for n in m.graph.iter().flat_map(|g| &g.node) {
                        *ops.entry((n.op_type.clone(), v)).or_default() += 1;
                    }
                }
            }
        }
        let t = std::time::Instant::now();
        match load_model(p) {
            Ok(m) => {
                ok += 1;
                if paths.len() <= 20 {
                    println!(
                        "{}: {} nodes, {} values in {:.1} ms",
                        p.display(),
                        m.graph.nodes.len(),
                        m.graph.values.len(),
                        t.elapsed().as_secs_f64() * 1e3
                    );
                }
            }
            Err(e) => {
                let msg = e.to_string();
                // Group by the message after the node/tensor context.
                let key = msg.rsplit("): ").next().unwrap_or(&msg).to_string();
                failures
                    .entry(key)
                    .or_default()
                    .push(p.display().to_string());
            }
        }
    }
    if show_ops {
        for ((op, v), n) in &ops {
            println!("op {op} opset {v}: {n}");
        }
    }
    for (reason, ps) in &failures {
        println!("FAIL x{}: {reason}\n    e.g. {}", ps.len(), ps[0]);
    }
    println!("{ok} passed, {} failed", paths.len() - ok);
}
