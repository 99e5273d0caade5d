//! `kestrel finetune MODEL --data X --labels Y -o OUT.onnx`: trains a model on labelled data
//! (cross-entropy), with the training flags of `distill` (docs/TRAINING.md).

use super::train::TrainArgs;
use anyhow::Result;
use clap::Args;
use kestrel::driver;
use kestrel::train::Objective;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    pub model: PathBuf,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub fn run(args: FinetuneArgs) -> Result<()> {
    let t = &args.train;
    t.check_output(&[&args.model])?;
    if t.labels.is_none() {
        anyhow::bail!("finetune trains on labels: give --labels Y (class ids, one per sample)");
    }
    let model = driver::load(&args.model)?.graph;
    t.train_and_write(&model, &args.model, &Objective::Labels)
}
