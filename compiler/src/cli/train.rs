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
    #[command(flatten)]
    pub qat: QatFlags,
    /// The trained model: .onnx or .kir.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Quantization-aware training (docs/TRAINING.md "Quantization-aware training").
#[derive(Args, Debug, Clone)]
pub struct QatFlags {
    /// Train with fake quantization at calibrated int8 scales and write int8 QDQ. A float model
    /// is quantized first (as `kestrel quantize`); a QDQ model is trained as it is.
    #[arg(long)]
    pub qat: bool,
    /// --qat calibration data (default: --data).
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// --qat calibration method: minmax, percentile, entropy or mse (default minmax).
    #[arg(long)]
    pub method: Option<String>,
    /// With --method percentile: the percentage of values kept (default 99.99).
    #[arg(long)]
    pub percentile: Option<f64>,
    /// --qat: one weight scale per tensor instead of per output channel.
    #[arg(long = "per-tensor")]
    pub per_tensor: bool,
    /// --qat: weights on an N-bit grid (2 to 8, stored as int8; default 8).
    #[arg(long = "weight-bits", value_name = "N")]
    pub weight_bits: Option<u32>,
    /// --qat: layers left in float, by node name.
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
}

impl QatFlags {
    /// The options of `--qat`, or `None` without it (then no other flag of it may be given).
    pub fn options(&self) -> Result<Option<kestrel::qat::QatOptions>> {
        if !self.qat {
            if self.calib.is_some()
                || self.method.is_some()
                || self.percentile.is_some()
                || self.per_tensor
                || self.weight_bits.is_some()
                || !self.exclude.is_empty()
            {
                bail!("--calib, --method, --percentile, --per-tensor, --weight-bits and --exclude apply with --qat");
            }
            return Ok(None);
        }
        let method = kestrel_passes::quantize::Method::parse(
            self.method.as_deref().unwrap_or("minmax"),
            self.percentile,
        )
        .map_err(|e| anyhow::anyhow!("--method: {e}"))?;
        let weight_bits = self.weight_bits.unwrap_or(8);
        if !(2..=8).contains(&weight_bits) {
            bail!("--weight-bits {weight_bits}: expected 2 to 8");
        }
        Ok(Some(kestrel::qat::QatOptions {
            calib: self.calib.clone(),
            method,
            quantize: kestrel_passes::quantize::QuantizeOptions {
                per_tensor: self.per_tensor,
                exclude: self.exclude.clone(),
                weight_bits,
            },
        }))
    }
}

/// The flags of the training loop itself, shared by `finetune`, `distill` and `compile
/// --distill-data`.
#[derive(Args, Debug, Clone)]
pub struct TrainingFlags {
    /// Passes over the data (default 200; 10 with --qat, which starts from trained weights).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// The base learning rate (default 3e-3; 1e-4 with --qat).
    #[arg(long)]
    pub lr: Option<f64>,
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

/// `--epochs` and `--lr` of quantization-aware training when not given: a short run at a low
/// rate from trained weights (docs/TRAINING.md "Quantization-aware training").
pub const QAT_EPOCHS: usize = 10;
pub const QAT_LR: f64 = 1e-4;

impl TrainingFlags {
    /// The loop's options; `qat` picks the defaults of quantization-aware training.
    pub fn options_for(&self, qat: bool) -> Result<train::TrainOptions> {
        let plain = train::TrainOptions::default();
        Ok(train::TrainOptions {
            epochs: self
                .epochs
                .unwrap_or(if qat { QAT_EPOCHS } else { plain.epochs }),
            batch: self.batch,
            lr: self.lr.unwrap_or(if qat { QAT_LR } else { plain.lr }),
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
            frozen: Vec::new(),
            unfolded: Vec::new(),
        })
    }
}

impl TrainArgs {
    pub fn options(&self) -> Result<train::TrainOptions> {
        self.flags.options_for(self.qat.qat)
    }

    /// Refuses an output that is one of `inputs` (or the data files), or of an unknown kind.
    pub fn check_output(&self, inputs: &[&Path]) -> Result<()> {
        let data = [
            Some(self.data.as_path()),
            self.labels.as_deref(),
            self.val_data.as_deref(),
            self.val_labels.as_deref(),
            self.qat.calib.as_deref(),
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

    /// Trains `model` for `objective`: the plain loop, or with `--qat` quantization-aware
    /// training; writes the result and prints the run's summary.
    pub fn train_and_write(
        &self,
        model: &kestrel_ir::Graph,
        path: &Path,
        objective: &train::Objective,
    ) -> Result<()> {
        let options = self.options()?;
        let qat = self.qat.options()?;
        let (data, val) = self.datasets(model, path)?;
        let Some(qat) = qat else {
            let trained = train::train(model, path, &data, objective, val.as_ref(), &options)?;
            return self.finish(&trained.graph, &trained, None);
        };
        let t = kestrel::qat::train(model, path, &data, objective, val.as_ref(), &options, &qat)?;
        let ptq = t.ptq_accuracy.zip(t.accuracy).map(|(before, after)| {
            format!(
                "post-training quantization: val {:.1}%, after quantization-aware training: val {:.1}% (the written int8 model)",
                100.0 * before,
                100.0 * after
            )
        });
        self.finish(&t.graph, &t.trained, ptq)
    }

    /// Writes `graph` (the trained model) and prints the run's summary.
    pub fn finish(
        &self,
        graph: &kestrel_ir::Graph,
        trained: &train::Trained,
        note: Option<String>,
    ) -> Result<()> {
        match kestrel::tensor_io::extension(&self.output).as_deref() {
            Some("kir") => kestrel::dump::write_kir(graph, &self.output, true)?,
            _ => kestrel::onnx::write_model(graph, &Default::default(), &self.output)
                .with_context(|| {
                    format!("writing the trained model to {}", self.output.display())
                })?,
        }
        // A closed stdout (`| head`) loses the summary, not the written model.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{}", train::summary(trained, self.flags.threads));
        if let Some(note) = note {
            let _ = writeln!(out, "{note}");
        }
        let _ = writeln!(out, "wrote {}", self.output.display());
        Ok(())
    }
}
