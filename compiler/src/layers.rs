//! Per-layer timing (`kestrel bench --layers`): every kernel node of the compiled graph is cut out
//! into a one-node graph (inputs known at compile time stay constants, the others become inputs with
//! deterministic data), compiled with the JIT and timed on its own. Convolutions and matrix
//! products report their rate against the FMA peak of the ISA their kernels use, measured in the
//! same run ([`fma_peak`]).
//!
//! A layer timed alone runs with warm caches for its own operands, so the sum of the layers is
//! usually a little below the whole model's latency; the difference is reported. With one thread
//! layers are timed in thread CPU time (`CLOCK_THREAD_CPUTIME_ID`), which time other processes
//! take from this machine's cores does not inflate; with more threads, in wall time.

use crate::driver;
use anyhow::{Context, Result};
use kestrel_backends::jit::{self, JitOptions};
use kestrel_ir::{Graph, NodeId, Tensor, ValueDef, ValueId};
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The timing of one node.
pub struct LayerTiming {
    /// The node's description (`node 3 "/conv1/Conv" (conv)`).
    pub node: String,
    /// The node's name in the graph.
    pub name: String,
    pub op: String,
    /// Output type, e.g. `f32[1,64,56,56]`.
    pub output: String,
    /// Multiply-adds of a convolution or matrix product (0 for other ops).
    pub macs: u64,
    /// An integer convolution or Gemm (its rate is compared with the int8 peak).
    pub integer: bool,
    pub median_ms: f64,
}

impl LayerTiming {
    pub fn gflops(&self) -> f64 {
        2.0 * self.macs as f64 / (self.median_ms * 1e-3) / 1e9
    }
}

/// Multiply-adds of a convolution, Gemm or MatMul node with known shapes.
pub fn macs(g: &Graph, id: NodeId) -> u64 {
    kestrel_ir::cost::node_macs(g, g.node(id))
}

/// An integer convolution or Gemm (8-bit operands, i32 accumulators).
fn is_integer(op: &kestrel_ir::Op) -> bool {
    match op {
        kestrel_ir::Op::Conv(a) => a.integer.is_some(),
        kestrel_ir::Op::Gemm(a) => a.integer.is_some(),
        _ => false,
    }
}

/// Whether the JIT gives `node` (of a graph folded for code generation) its own kernel: everything
/// but views and the concatenations whose inputs are written in place (`in_place`).
fn is_kernel(g: &Graph, id: NodeId, in_place: &[NodeId]) -> bool {
    !g.node(id).op.is_view() && !in_place.contains(&id)
}

/// The one-node graph of `id`: inputs known at compile time (the constants of the folded graph,
/// such as the dequantized weights of a QDQ model) are constants, the others graph inputs.
fn single_node_graph(g: &Graph, id: NodeId, known: &HashMap<ValueId, Tensor>) -> Result<Graph> {
    let node = g.node(id);
    let mut one = Graph::new(format!("{}_n{}", g.name, id.0));
    let mut ins = Vec::new();
    for (i, &v) in node.inputs.iter().enumerate() {
        let value = g.value(v);
        ins.push(match (&value.def, known.get(&v)) {
            (ValueDef::Const(c), Some(t)) => one.add_const(c.name.clone(), t.clone()),
            (_, Some(t)) => one.add_const(format!("in{i}"), t.clone()),
            (_, None) => one.add_input(format!("in{i}"), value.ty.clone()),
        });
    }
    let outs = one
        .add_node(node.op.clone(), &ins, node.name.clone())
        .with_context(|| g.describe_node(id))?;
    for (i, &o) in outs.iter().enumerate() {
        one.add_output(format!("out{i}"), o);
    }
    Ok(one)
}

/// The op's name, `conv/winograd` for a convolution the JIT computes with Winograd (its GFLOP/s
/// count the direct convolution's multiply-adds, so they can exceed the peak).
fn op_label(
    g: &Graph,
    node: &kestrel_ir::Node,
    known: &HashMap<ValueId, Tensor>,
    opts: &JitOptions,
) -> String {
    match &node.op {
        kestrel_ir::Op::Conv(a) if jit::ops::conv::uses_winograd(g, node, a, known, opts) => {
            "conv/winograd".to_string()
        }
        op => kestrel_ir::op_name(op).to_string(),
    }
}

/// Times every kernel node of `g` (dimensions known; folded for code generation first, as every
/// compile is) alone: median of `iters` runs after two warm-up runs.
pub fn profile(
    g: &Graph,
    opts: &JitOptions,
    iters: usize,
    model: &Path,
) -> Result<Vec<LayerTiming>> {
    let mut folded = g.clone();
    driver::fold_for_codegen(&mut folded, model)?;
    let g = &folded;
    let known = jit::constant_values(g);
    let in_place = jit::in_place_concats(g, &known);
    let mut out = Vec::new();
    for i in 0..g.nodes.len() {
        let id = NodeId(i as u32);
        if !is_kernel(g, id, &in_place) {
            continue;
        }
        let one = single_node_graph(g, id, &known)?;
        let inputs = driver::synthetic_inputs(&one, model)?;
        let compiled = jit::compile(&one, opts)
            .with_context(|| format!("{}: compiling {}", model.display(), g.describe_node(id)))?;
        let cpu_time = opts.threads <= 1;
        let once = || -> Result<Duration> {
            let (t, c) = (Instant::now(), thread_cpu_time());
            compiled
                .run(&inputs)
                .with_context(|| format!("{}: running {}", model.display(), g.describe_node(id)))?;
            Ok(match (cpu_time, c, thread_cpu_time()) {
                (true, Some(c0), Some(c1)) => c1.saturating_sub(c0),
                _ => t.elapsed(),
            })
        };
        once()?;
        once()?;
        let times = (0..iters).map(|_| once()).collect::<Result<Vec<_>>>()?;
        let node = g.node(id);
        let op = op_label(g, node, &known, opts);
        let plain = format!("({})", kestrel_ir::op_name(&node.op));
        out.push(LayerTiming {
            node: g.describe_node(id).replace(&plain, &format!("({op})")),
            name: node.name.clone(),
            op,
            output: g.ty(node.outputs[0]).to_string(),
            macs: macs(g, id),
            integer: is_integer(&node.op),
            median_ms: driver::LatencyStats::of(&times).median_ms,
        });
    }
    Ok(out)
}

/// An FMA peak and the ISA it was measured in, and the int8 dot-product peak where the integer
/// kernels have one measured.
pub struct Peak {
    pub gflops: f64,
    /// The vector ISA measured (`avx512f`, `avx2+fma`, `128-bit`).
    pub isa: &'static str,
    /// The `vpdpbusd` peak in G ops/s (two per multiply-add, as GFLOP/s) and its ISA
    /// (`avx512vnni`, `avx-vnni`), when the full-width int8 kernels run.
    pub int8: Option<(f64, &'static str)>,
}

/// The FMA peak the kernels of a JIT compilation with `opts` can reach on this host, measured
/// now by a register-only loop (median of seven runs) in the ISA they use: the full-width
/// micro-kernels' (`jit::asm`, AVX-512 or AVX2, whose clock can differ from the 128-bit one)
/// when `opts.wide_kernels` and the host has one, else Cranelift's 128-bit vectors. Times
/// `opts.threads` cores. [`table`] compares the rates of convolutions and matrix products with it.
pub fn fma_peak(opts: &JitOptions) -> Result<Peak> {
    let host = jit::model::host_isa().context("measuring the FMA peak")?;
    let flags = jit::isa::IsaFlags::from_isa(&*host);
    let wide = jit::asm::WideIsa::for_target(&flags).filter(|_| opts.wide_kernels);
    let (one, isa) = match wide {
        Some(w) => (jit::asm::peak::peak_gflops(w, 7), w.name()),
        None => (jit::peak::fma_peak_gflops(7), "128-bit"),
    };
    let one = one.context("measuring the FMA peak")?;
    let cores = opts.threads.max(1) as f64;
    let int8 = match wide.and_then(|_| jit::asm::int8_tile::Int8Isa::for_target(&flags)) {
        Some(i) => {
            let r = jit::asm::peak::peak_gops_int8(i, 7).context("measuring the int8 peak")?;
            Some((r * cores, i.name()))
        }
        None => None,
    };
    Ok(Peak {
        gflops: one * cores,
        isa,
        int8,
    })
}

/// The per-layer table and its summary lines, as `kestrel bench --layers` prints them:
/// `peak` is the FMA peak the rates are compared with ([`fma_peak`]), `model_ms` the whole
/// model's median latency.
pub fn table(layers: &[LayerTiming], peak: &Peak, model_ms: f64) -> String {
    let peak_gflops = peak.gflops;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<54} {:<26} {:>10} {:>9} {:>8} {:>7}",
        "node", "output", "MMACs", "ms", "GFLOP/s", "% peak"
    );
    // The peak of a layer's kernels: the int8 one for integer layers (none measured: no %).
    let peak_of = |l: &LayerTiming| match (l.integer, peak.int8) {
        (false, _) => Some(peak_gflops),
        (true, Some((p, _))) => Some(p),
        (true, None) => None,
    };
    for l in layers {
        let (rate, pct) = if l.macs > 0 {
            (
                format!("{:.1}", l.gflops()),
                peak_of(l).map_or(String::new(), |p| format!("{:.0}", 100.0 * l.gflops() / p)),
            )
        } else {
            (String::new(), String::new())
        };
        let name: String = l.node.chars().take(54).collect();
        let _ = writeln!(
            s,
            "{name:<54} {:<26} {:>10.2} {:>9.4} {rate:>8} {pct:>7}",
            l.output,
            l.macs as f64 / 1e6,
            l.median_ms
        );
    }
    let total: f64 = layers.iter().map(|l| l.median_ms).sum();
    let dense: Vec<&LayerTiming> = layers.iter().filter(|l| l.macs > 0).collect();
    let dense_ms: f64 = dense.iter().map(|l| l.median_ms).sum();
    let dense_macs: u64 = dense.iter().map(|l| l.macs).sum();
    let dense_rate = 2.0 * dense_macs as f64 / (dense_ms * 1e-3).max(1e-12) / 1e9;
    let rate_of = |ls: &[&LayerTiming]| {
        let ms: f64 = ls.iter().map(|l| l.median_ms).sum();
        let macs: u64 = ls.iter().map(|l| l.macs).sum();
        2.0 * macs as f64 / (ms * 1e-3).max(1e-12) / 1e9
    };
    let float: Vec<&LayerTiming> = dense.iter().copied().filter(|l| !l.integer).collect();
    let int8: Vec<&LayerTiming> = dense.iter().copied().filter(|l| l.integer).collect();
    let mut peaks = String::new();
    if !float.is_empty() {
        let r = rate_of(&float);
        let _ = write!(
            peaks,
            "; float at {r:.1} GFLOP/s = {:.0}% of the {peak_gflops:.1} GFLOP/s {} FMA peak",
            100.0 * r / peak_gflops,
            peak.isa
        );
    }
    if !int8.is_empty() {
        let r = rate_of(&int8);
        let _ = match peak.int8 {
            Some((p, isa)) => write!(
                peaks,
                "; int8 at {r:.1} G ops/s = {:.0}% of the {p:.1} G ops/s {isa} vpdpbusd peak",
                100.0 * r / p
            ),
            None => write!(peaks, "; int8 at {r:.1} G ops/s (no int8 peak measured)"),
        };
    }
    let _ = writeln!(
        s,
        "layers: {:.3} ms in total (the whole model: {model_ms:.3} ms); conv/gemm/matmul {dense_ms:.3} ms ({:.0}%) at {dense_rate:.1} GFLOP/s{peaks}; the FMA peak {peak_gflops:.1} GFLOP/s ({}); other ops {:.3} ms",
        total,
        100.0 * dense_ms / total.max(1e-12),
        peak.isa,
        total - dense_ms
    );
    let mut by_op: std::collections::BTreeMap<&str, (usize, f64)> = Default::default();
    for l in layers {
        let e = by_op.entry(&l.op).or_default();
        e.0 += 1;
        e.1 += l.median_ms;
    }
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let line: Vec<String> = ops
        .iter()
        .map(|(op, (n, ms))| format!("{op} {ms:.3} ms ({n})"))
        .collect();
    let _ = writeln!(s, "by op: {}", line.join(", "));
    s
}

/// CPU time consumed by the calling thread, where the platform reports it.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Option<Duration> {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid timespec and the clock id exists on Linux.
    let ok = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    ok.then(|| Duration::new(ts.sec as u64, ts.nsec as u32))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Option<Duration> {
    None
}
