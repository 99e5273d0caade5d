//! The training flags `kestrel finetune` and `kestrel distill` share (`../shared/CLI.md`), and
//! what both do around the loop: checking output paths, loading data, writing the model.

use anyhow::{bail, Context, Result};
use clap::Args;
use kestrel::driver;
use kestrel::train::{self, augment::Augment, data::Dataset, schedule::Schedule};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training samples: .npy, .npz (one array per input) or a folder of them.
    #[arg(long)]
    pub data: PathBuf,
    /// Integer class ids, one per sample.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Held-out samples whose accuracy is printed after each reported epoch (needs --val-labels).
    #[arg(long, requires = "val_labels")]
    pub val_data: Option<PathBuf>,
    #[arg(long, requires = "val_data")]
    pub val_labels: Option<PathBuf>,
    #[command(flatten)]
    pub flags: TrainingFlags,
    /// The trained model: .onnx or .kir.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// The flags of the training loop itself, shared by `finetune`, `distill` and `compile
/// --distill-data`.
#[derive(Args, Debug, Clone)]
pub struct TrainingFlags {
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// The base learning rate.
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    /// Samples per minibatch (the last batch of an epoch holds the remainder).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Seeds the minibatch order and augmentation: one seed, one result, at any --threads.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// adamw or sgd.
    #[arg(long, default_value = "adamw")]
    pub optimizer: String,
    /// SGD's momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weight decay of conv and linear weights (decoupled for AdamW).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Learning-rate schedule: cosine (to zero over the run) or constant.
    #[arg(long, default_value = "cosine")]
    pub schedule: String,
    /// Data augmentation: none, or shift=K (random translations by up to K pixels).
    #[arg(long, default_value = "none")]
    pub augment: String,
    /// On a loss that is not finite, stop and write the weights of the last finite step.
    #[arg(long)]
    pub keep_last_good: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainingFlags {
    pub fn options(&self) -> Result<train::TrainOptions> {
        Ok(train::TrainOptions {
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            optimizer: train::OptimizerKind::parse(&self.optimizer)?,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: Schedule::parse(&self.schedule)
                .map_err(|e| anyhow::anyhow!("--schedule: {e}"))?,
            seed: self.seed,
            threads: self.threads,
            augment: Augment::parse(&self.augment)?,
            keep_last_good: self.keep_last_good,
            progress: !self.quiet,
        })
    }
}

impl TrainArgs {
    pub fn options(&self) -> Result<train::TrainOptions> {
        self.flags.options()
    }

    /// Refuses an output that is one of `inputs` (or the data files), or of an unknown kind.
    pub fn check_output(&self, inputs: &[&Path]) -> Result<()> {
        let data = [
            Some(self.data.as_path()),
            self.labels.as_deref(),
            self.val_data.as_deref(),
            self.val_labels.as_deref(),
        ];
        for input in inputs.iter().copied().chain(data.into_iter().flatten()) {
            if driver::same_file(&self.output, input) {
                bail!(
                    "{}: refusing to overwrite the input {}",
                    self.output.display(),
                    input.display()
                );
            }
        }
        let ext = kestrel::tensor_io::extension(&self.output);
        if !matches!(ext.as_deref(), Some("kir" | "onnx")) {
            bail!(
                "{}: the output must be .onnx or .kir",
                self.output.display()
            );
        }
        Ok(())
    }

    /// The training data, labelled when --labels is given, and the validation set.
    pub fn datasets(
        &self,
        model: &kestrel_ir::Graph,
        path: &Path,
    ) -> Result<(Dataset, Option<Dataset>)> {
        let classes = train::classes(model, path)?;
        let data = Dataset::load(model, &self.data, self.labels.as_deref(), classes)?;
        let val = match (&self.val_data, &self.val_labels) {
            (Some(x), Some(y)) => Some(Dataset::load(model, x, Some(y), classes)?),
            _ => None,
        };
        Ok((data, val))
    }

    /// Writes the trained model and prints the run's summary.
    pub fn finish(&self, trained: &train::Trained) -> Result<()> {
        match kestrel::tensor_io::extension(&self.output).as_deref() {
            Some("kir") => kestrel::dump::write_kir(&trained.graph, &self.output, true)?,
            _ => kestrel::onnx::write_model(&trained.graph, &Default::default(), &self.output)
                .with_context(|| {
                    format!("writing the trained model to {}", self.output.display())
                })?,
        }
        // A closed stdout (`| head`) loses the summary, not the written model.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{}", train::summary(trained, self.flags.threads));
        let _ = writeln!(out, "wrote {}", self.output.display());
        Ok(())
    }
}
