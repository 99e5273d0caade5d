//! Calibration memory is bounded by one run's inputs and the statistics, not by the size of the
//! data set (issue 13, item 2): calibrating over a 96 MiB `.npy` must raise the process' peak
//! resident set (`VmHWM`) by much less than the file's size. Its own test binary, so no other
//! test shares the process while it measures.

use kestrel::calibrate::{CalibrationData, JitCalibrator};
use kestrel_ir::{DType, Graph, Op, TensorType, UnaryOp};
use kestrel_passes::quantize::{Calibrator, Method};
use std::io::Write;
use std::path::Path;

/// Floats per sample.
const FEATURES: usize = 4096;

/// Peak resident set size of this process in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Writes an `.npy` of `samples` rows of [`FEATURES`] f32 (values -8..=8) a megabyte at a
/// time, so writing it does not raise the peak either.
fn write_large_npy(path: &Path, samples: usize) {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({samples}, {FEATURES}), }}");
    header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
    header.push('\n');
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"\x93NUMPY\x01\x00").unwrap();
    f.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    f.write_all(header.as_bytes()).unwrap();
    let chunk: Vec<u8> = (0..1u32 << 18)
        .flat_map(|i| ((i * 7 % 17) as f32 - 8.0).to_le_bytes())
        .collect();
    let mut left = samples * FEATURES * 4;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn calibration_memory_does_not_grow_with_the_data() {
    const MIB: u64 = 1 << 20;
    // x: [16, FEATURES] -> Relu: 16 samples (256 KiB) per run.
    let batch = 16;
    let mut g = Graph::default();
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, kestrel_ir::shape_of(&[batch, FEATURES])),
    );
    let y = g.add(Op::Unary(UnaryOp::Relu), &[x], "relu").unwrap();
    g.add_output("y", y);
    let dir = tempfile::tempdir().unwrap();
    let data_path = dir.path().join("large.npy");
    let samples = 384 * batch;
    write_large_npy(&data_path, samples);
    let file_bytes = std::fs::metadata(&data_path).unwrap().len();
    assert!(file_bytes > 96 * MIB, "{file_bytes}");

    let before = peak_rss();
    let data = CalibrationData::load(&g, &data_path, None).unwrap();
    assert_eq!(
        (data.samples, data.batch, data.runs()),
        (samples, batch, 384)
    );
    let calibrator = JitCalibrator { data, threads: 1 };
    // Both passes of a histogram method over all the data.
    let ranges = calibrator
        .ranges(&g, &[x, y], Method::Percentile(100.0))
        .unwrap();
    // Every value went through: the input's exact range, and the Relu's.
    assert_eq!((ranges[0].min, ranges[0].max), (-8.0, 8.0));
    assert_eq!((ranges[1].min, ranges[1].max), (0.0, 8.0));
    let grown = peak_rss() - before;
    assert!(
        grown < file_bytes / 4,
        "calibrating over {file_bytes} bytes of data raised the peak resident set by {grown} bytes"
    );
}
