//! `kestrel distill --teacher T --student S --data X [--labels Y] -o OUT.onnx`: trains the
//! student on `α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y)` against the teacher's
//! logits (docs/TRAINING.md, docs/DISTILLATION.md).

use super::train::TrainArgs;
use anyhow::Result;
use clap::Args;
use kestrel::driver;
use kestrel::train::Objective;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DistillArgs {
    #[arg(long)]
    pub teacher: PathBuf,
    /// The model trained: untrained, pruned, or already trained.
    #[arg(long)]
    pub student: PathBuf,
    /// Softens both distributions: softmax(logits / T).
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f64,
    /// Weight of the teacher term; 1 − α weighs cross-entropy on --labels. Default: 0.9 with
    /// --labels, 1 without.
    #[arg(long)]
    pub alpha: Option<f64>,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub fn run(args: DistillArgs) -> Result<()> {
    let t = &args.train;
    t.check_output(&[&args.student, &args.teacher])?;
    let student = driver::load(&args.student)?.graph;
    let teacher = driver::load(&args.teacher)?.graph;
    let alpha = args
        .alpha
        .unwrap_or(if t.labels.is_some() { 0.9 } else { 1.0 });
    let objective = Objective::Distill {
        teacher: &teacher,
        teacher_path: &args.teacher,
        temperature: args.temperature,
        alpha,
    };
    t.train_and_write(&student, &args.student, &objective)
}
