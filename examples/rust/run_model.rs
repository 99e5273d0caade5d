//! Runs a model compiled ahead of time by Kestrel, from Rust, through `kestrel_runtime::Model`.
//!
//! ```sh
//! kestrel compile examples/digits.onnx -o digits.so
//! cargo run --release -p kestrel-runtime --example run_model -- digits.so examples/digit.npy
//! ```
//!
//! Usage: `run_model MODEL.so [INPUT.npy ...] [--prefix NAME] [--threads N] [--iters N]`.
//! Inputs are `.npy` files in graph order (zeros when none are given); `--prefix` is the
//! `--symbol-prefix` the model was compiled with (default `kestrel`). Prints the model's
//! description, the first values of each output, and the load and run times.

use kestrel_runtime::{DType, Model, TensorRef, ThreadPool};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

/// The `.npy` descr of a dtype (little-endian).
fn npy_descr(d: DType) -> &'static str {
    match d {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        DType::U8 => "|u1",
        DType::I8 => "|i1",
        DType::U16 => "<u2",
        DType::I16 => "<i2",
        DType::U32 => "<u4",
        DType::I32 => "<i4",
        DType::U64 => "<u8",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
        DType::BF16 => "<V2",
    }
}

/// A C-order `.npy` file: (descr, shape, data bytes).
fn read_npy(path: &str) -> Result<(String, Vec<usize>, Vec<u8>), Error> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{path}: not a .npy file").into());
    }
    let (len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        let b = bytes.get(8..12).ok_or(format!("{path}: truncated"))?;
        (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
    };
    let header = std::str::from_utf8(bytes.get(start..start + len).ok_or("truncated header")?)?;
    let field = |key: &str| -> Result<&str, Error> {
        let at = header
            .find(key)
            .ok_or(format!("{path}: no {key} in header"))?
            + key.len();
        Ok(header[at..].trim_start_matches([' ', ':']))
    };
    let descr = field("'descr'")?;
    let descr = descr[1..]
        .split('\'')
        .next()
        .unwrap_or_default()
        .to_string();
    if field("'fortran_order'")?.starts_with("True") {
        return Err(format!("{path}: Fortran-order arrays are not supported").into());
    }
    let shape_text = field("'shape'")?;
    let shape_text = &shape_text[1..shape_text.find(')').ok_or("bad shape")?];
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok((descr, shape, bytes[start + len..].to_vec()))
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (mut model_path, mut files) = (None, Vec::new());
    let (mut prefix, mut threads, mut iters) = ("kestrel".to_string(), 1usize, 1usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--prefix" => prefix = args.next().ok_or("--prefix needs a value")?,
            "--threads" => threads = args.next().ok_or("--threads needs a value")?.parse()?,
            "--iters" => iters = args.next().ok_or("--iters needs a value")?.parse()?,
            _ if model_path.is_none() => model_path = Some(a),
            _ => files.push(a),
        }
    }
    let model_path = model_path.ok_or(
        "usage: run_model MODEL.so [INPUT.npy ...] [--prefix NAME] [--threads N] [--iters N]",
    )?;

    let start = Instant::now();
    let model = Model::load_with_prefix(&model_path, &prefix)?;
    let load = start.elapsed();
    println!(
        "{model_path}: graph {:?} for {} ({}), workspace {} bytes, up to {} tasks per node",
        model.name(),
        model.target(),
        if model.cpu_features().is_empty() {
            "baseline"
        } else {
            model.cpu_features()
        },
        model.workspace_size(),
        model.num_tasks()
    );
    for t in model.inputs() {
        println!("  input  {:?}: {}{:?}", t.name, t.dtype, t.shape);
    }
    for t in model.outputs() {
        println!("  output {:?}: {}{:?}", t.name, t.dtype, t.shape);
    }

    if !files.is_empty() && files.len() != model.inputs().len() {
        return Err(format!(
            "the model has {} inputs, {} files given",
            model.inputs().len(),
            files.len()
        )
        .into());
    }
    let mut data: Vec<(Vec<usize>, Vec<u8>)> = Vec::new();
    for (i, info) in model.inputs().iter().enumerate() {
        match files.get(i) {
            Some(f) => {
                let (descr, shape, bytes) = read_npy(f)?;
                if descr != npy_descr(info.dtype) {
                    return Err(format!(
                        "{f}: dtype {descr}, the model wants {}",
                        npy_descr(info.dtype)
                    )
                    .into());
                }
                data.push((shape, bytes));
            }
            None => data.push((info.shape.clone(), vec![0u8; info.size_bytes()])),
        }
    }
    // Shapes and sizes are checked by `run`: a mismatch is an error naming the input.
    let refs: Vec<TensorRef> = model
        .inputs()
        .iter()
        .zip(&data)
        .map(|(info, (shape, bytes))| TensorRef {
            dtype: info.dtype,
            shape,
            data: bytes,
        })
        .collect();
    let pool = if threads > 1 {
        Some(ThreadPool::new(threads)?)
    } else {
        None
    };
    let mut times: Vec<Duration> = Vec::new();
    let mut outputs = Vec::new();
    for _ in 0..iters.max(1) {
        let start = Instant::now();
        outputs = model.run_to_vec(pool.as_ref(), &refs)?;
        times.push(start.elapsed());
    }
    times.sort();
    for (info, bytes) in model.outputs().iter().zip(&outputs) {
        if info.dtype == DType::F32 {
            let v: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let best = (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
            let head: Vec<String> = v.iter().take(10).map(|x| format!("{x:.6}")).collect();
            println!(
                "{}: [{}{}] argmax={best}",
                info.name,
                head.join(", "),
                if v.len() > 10 { ", ..." } else { "" }
            );
        } else {
            println!("{}: {} bytes of {}", info.name, bytes.len(), info.dtype);
        }
    }
    println!(
        "load {:.3} ms, run median {:.3} ms over {} run(s) on {threads} thread(s)",
        load.as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times.len()
    );
    Ok(())
}
