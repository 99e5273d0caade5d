//! A second opinion on protobuf decoding: every model file the tests have is decoded by Kestrel's
//! prost messages and by the independent `onnx-protobuf` crate (rust-protobuf, generated from the
//! official `onnx.proto`), and the graphs must agree: nodes, attributes, initializer bytes, I/O.

mod common;

use kestrel::onnx::proto as ours;
use onnx_protobuf as theirs;
use protobuf::Message as _;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn tensor_ours(t: &ours::TensorProto) -> String {
    format!(
        "tensor {:?} dims={:?} type={} raw={:?} f={:?} i32={:?} i64={:?} d={:?} u64={:?} s={:?} loc={} ext={:?}",
        t.name,
        t.dims,
        t.data_type,
        t.raw_data.as_ref(),
        t.float_data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        t.int32_data,
        t.int64_data,
        t.double_data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        t.uint64_data,
        t.string_data.iter().map(|s| s.as_ref()).collect::<Vec<_>>(),
        t.data_location,
        t.external_data.iter().map(|e| (&e.key, &e.value)).collect::<Vec<_>>(),
    )
}

fn tensor_theirs(t: &theirs::TensorProto) -> String {
    format!(
        "tensor {:?} dims={:?} type={} raw={:?} f={:?} i32={:?} i64={:?} d={:?} u64={:?} s={:?} loc={} ext={:?}",
        t.name,
        t.dims,
        t.data_type,
        t.raw_data.as_slice(),
        t.float_data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        t.int32_data,
        t.int64_data,
        t.double_data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        t.uint64_data,
        t.string_data.iter().map(|s| s.as_slice()).collect::<Vec<_>>(),
        t.data_location.value(),
        t.external_data.iter().map(|e| (&e.key, &e.value)).collect::<Vec<_>>(),
    )
}

fn summary_ours(m: &ours::ModelProto) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "ir {} opsets {:?}",
        m.ir_version,
        m.opset_import
            .iter()
            .map(|o| (&o.domain, o.version))
            .collect::<Vec<_>>()
    )
    .unwrap();
    let Some(g) = &m.graph else { return s };
    writeln!(s, "graph {:?}", g.name).unwrap();
    for v in &g.input {
        writeln!(s, "input {:?}", v.name).unwrap();
    }
    for v in &g.output {
        writeln!(s, "output {:?}", v.name).unwrap();
    }
    for t in &g.initializer {
        writeln!(s, "{}", tensor_ours(t)).unwrap();
    }
    for n in &g.node {
        writeln!(
            s,
            "node {:?} {:?} {:?} in={:?} out={:?}",
            n.name, n.domain, n.op_type, n.input, n.output
        )
        .unwrap();
        for a in &n.attribute {
            writeln!(
                s,
                "  attr {:?} type={} f={:?} i={} s={:?} floats={:?} ints={:?} strings={:?}",
                a.name,
                a.r#type,
                a.f.unwrap_or(0.0).to_bits(),
                a.i.unwrap_or(0),
                a.s.as_deref().unwrap_or(&[]),
                a.floats.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                a.ints,
                a.strings.iter().map(|s| s.as_ref()).collect::<Vec<_>>(),
            )
            .unwrap();
            if let Some(t) = &a.t {
                writeln!(s, "    {}", tensor_ours(t)).unwrap();
            }
            for t in &a.tensors {
                writeln!(s, "    {}", tensor_ours(t)).unwrap();
            }
        }
    }
    s
}

fn summary_theirs(m: &theirs::ModelProto) -> String {
    let mut s = String::new();
    writeln!(
        s,
        "ir {} opsets {:?}",
        m.ir_version,
        m.opset_import
            .iter()
            .map(|o| (&o.domain, o.version))
            .collect::<Vec<_>>()
    )
    .unwrap();
    let Some(g) = m.graph.as_ref() else { return s };
    writeln!(s, "graph {:?}", g.name).unwrap();
    for v in &g.input {
        writeln!(s, "input {:?}", v.name).unwrap();
    }
    for v in &g.output {
        writeln!(s, "output {:?}", v.name).unwrap();
    }
    for t in &g.initializer {
        writeln!(s, "{}", tensor_theirs(t)).unwrap();
    }
    for n in &g.node {
        writeln!(
            s,
            "node {:?} {:?} {:?} in={:?} out={:?}",
            n.name, n.domain, n.op_type, n.input, n.output
        )
        .unwrap();
        for a in &n.attribute {
            writeln!(
                s,
                "  attr {:?} type={} f={:?} i={} s={:?} floats={:?} ints={:?} strings={:?}",
                a.name,
                a.type_.value(),
                a.f.to_bits(),
                a.i,
                a.s.as_slice(),
                a.floats.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                a.ints,
                a.strings.iter().map(|s| s.as_slice()).collect::<Vec<_>>(),
            )
            .unwrap();
            if let Some(t) = a.t.as_ref() {
                writeln!(s, "    {}", tensor_theirs(t)).unwrap();
            }
            for t in &a.tensors {
                writeln!(s, "    {}", tensor_theirs(t)).unwrap();
            }
        }
    }
    s
}

/// Decodes with both and returns the first differing line, if any.
fn compare(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let a = <ours::ModelProto as prost::Message>::decode(bytes.as_slice())
        .map_err(|e| format!("kestrel failed to decode: {e}"))?;
    let b = theirs::ModelProto::parse_from_bytes(&bytes)
        .map_err(|e| format!("onnx-protobuf failed to decode: {e}"))?;
    let (sa, sb) = (summary_ours(&a), summary_theirs(&b));
    if sa == sb {
        return Ok(());
    }
    let line = sa
        .lines()
        .zip(sb.lines())
        .find(|(x, y)| x != y)
        .map(|(x, y)| {
            format!(
                "kestrel: {}\nonnx-protobuf: {}",
                &x[..x.len().min(300)],
                &y[..y.len().min(300)]
            )
        })
        .unwrap_or_else(|| "summaries differ in length".into());
    Err(line)
}

fn onnx_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            onnx_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "onnx") {
            out.push(p);
        }
    }
}

#[test]
fn both_decoders_agree_on_every_model_file() {
    let mut files = Vec::new();
    onnx_files(&common::fixtures(), &mut files);
    if let Some(dir) = common::shared_models() {
        onnx_files(&dir, &mut files);
    }
    let suite = kestrel_tests::conformance::ensure_data().expect("ONNX test data");
    onnx_files(&suite, &mut files);
    assert!(files.len() > 1700, "only {} model files found", files.len());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| compare(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    eprintln!(
        "{} model files decoded identically by both decoders",
        files.len() - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} files differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
