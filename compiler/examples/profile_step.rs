//! Where a training step's time goes: `cargo run --release -p kestrel --example profile_step --
//! MODEL [BATCH]` compiles the cross-entropy + AdamW step of MODEL at BATCH (default 64) as
//! `kestrel finetune` does, times every kernel node alone on one thread (`kestrel::layers`,
//! thread CPU time, median of 20), and prints the time per op kind and the slowest nodes
//! (docs/PERFORMANCE.md "Training throughput").

use anyhow::{Context, Result};
use kestrel::train::step::{Step, StepSpec};
use kestrel_passes::autodiff::{BatchNormMode, DecayOn, Loss, Optimizer, ParamSelection};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().context("usage: profile_step MODEL [BATCH]")?);
    let batch: usize = match args.next() {
        Some(b) => b.parse().context("BATCH must be a positive integer")?,
        None => 64,
    };
    let g = kestrel::driver::load(&path)?.graph;
    let spec = StepSpec {
        params: ParamSelection::FloatConstants,
        unfolded: Vec::new(),
        loss: Loss::cross_entropy(),
        optimizer: Optimizer::adamw(0.01),
        decay_on: DecayOn::Weights,
        batch_norm: if g
            .nodes
            .iter()
            .any(|n| matches!(n.op, kestrel_ir::Op::BatchNorm { .. }))
        {
            BatchNormMode::Train { momentum: 0.9 }
        } else {
            BatchNormMode::Eval
        },
        threads: 1,
    };
    let step = Step::compile(&g, &path, batch, &spec)?;
    let opts = kestrel_backends::jit::JitOptions::with_threads(1);
    let mut layers = kestrel::layers::profile(&step.graph.graph, &opts, 20, &path)?;
    let total: f64 = layers.iter().map(|l| l.median_ms).sum();
    let mut by_op: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for l in &layers {
        let e = by_op.entry(l.op.clone()).or_default();
        e.0 += l.median_ms;
        e.1 += 1;
    }
    let mut by_op: Vec<_> = by_op.into_iter().collect();
    by_op.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!(
        "{}: step of {batch} samples, {total:.3} ms in its nodes timed alone (1 thread)",
        path.display()
    );
    println!("| op | nodes | ms | share |\n|---|---:|---:|---:|");
    for (op, (ms, n)) in by_op.iter().filter(|(_, (ms, _))| *ms >= 0.01 * total) {
        println!("| {op} | {n} | {ms:.3} | {:.1} % |", 100.0 * ms / total);
    }
    layers.sort_by(|a, b| b.median_ms.total_cmp(&a.median_ms));
    println!("\n| node | output | ms | GFLOP/s |\n|---|---|---:|---:|");
    for l in layers.iter().take(8) {
        let rate = if l.macs > 0 {
            format!("{:.1}", l.gflops())
        } else {
            "-".into()
        };
        println!(
            "| {} | {} | {:.3} | {rate} |",
            l.node, l.output, l.median_ms
        );
    }
    Ok(())
}
