//! The `quantize` pass of a pipeline, and what it needs from the driver: a [`Calibrator`].

use super::{apply, plan, QuantizeError, QuantizeOptions, Range, Ranges};
use crate::registry::Options;
use crate::{Pass, PassContext, PassError};
use kestrel_ir::{Graph, ValueId};

/// How a calibrated range is chosen from the values a tensor took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// The smallest and largest value seen.
    MinMax,
    /// The range holding this percentage of the values, the rest cut in equal halves from
    /// both ends.
    Percentile(f64),
    /// The threshold minimising the KL divergence between the histogram and its quantized form
    /// (TensorRT's entropy calibration).
    Entropy,
    /// The threshold minimising the mean squared quantization error over the histogram.
    Mse,
}

/// Default of [`Method::Percentile`] (`--percentile`).
pub const DEFAULT_PERCENTILE: f64 = 99.99;

impl Method {
    /// The name `--method` and `quantize(method=...)` take.
    pub fn name(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Percentile(_) => "percentile",
            Method::Entropy => "entropy",
            Method::Mse => "mse",
        }
    }

    /// The method called `name`; `percentile` (in `(0, 100]`, default [`DEFAULT_PERCENTILE`])
    /// is accepted only with `percentile`.
    pub fn parse(name: &str, percentile: Option<f64>) -> Result<Method, String> {
        let method = match name {
            "minmax" => Method::MinMax,
            "percentile" => {
                let p = percentile.unwrap_or(DEFAULT_PERCENTILE);
                if !(p > 0.0 && p <= 100.0) {
                    return Err(format!("percentile {p} is not in (0, 100]"));
                }
                return Ok(Method::Percentile(p));
            }
            "entropy" => Method::Entropy,
            "mse" => Method::Mse,
            other => {
                return Err(format!(
                    "unknown calibration method {other:?} (expected minmax, percentile, entropy or mse)"
                ))
            }
        };
        if percentile.is_some() {
            return Err(format!(
                "a percentile applies to method percentile, not {name}"
            ));
        }
        Ok(method)
    }

    /// Whether the method needs a histogram of the values (all but `minmax`).
    pub fn needs_histogram(self) -> bool {
        self != Method::MinMax
    }
}

/// Calibration as the pass sees it: runs a graph over the calibration data and reports the
/// range of some of its tensors. The driver implements it (`kestrel::calibrate`) and hands it
/// over in [`PassContext::calibrator`] when the user gives calibration data (`--calib`).
pub trait Calibrator {
    /// The range of each of `tensors` (f32 values of `g`, in that order) under `method`. The
    /// error is a complete sentence naming the data and the reason.
    fn ranges(&self, g: &Graph, tensors: &[ValueId], method: Method) -> Result<Vec<Range>, String>;
}

/// The `quantize` pass: [`plan`], the calibrator's ranges, [`apply`]. Options:
/// `method=minmax|percentile|entropy|mse`, `percentile=P`, `per_tensor=true|false`, `weight_bits=2..8` (default 8),
/// `exclude=NODE` (repeatable).
#[derive(Clone, Debug, PartialEq)]
pub struct Quantize {
    pub method: Method,
    pub options: QuantizeOptions,
}

impl Quantize {
    pub(crate) fn from_options(opts: &Options) -> Result<Quantize, PassError> {
        let name: Option<String> = opts.get("method")?;
        let percentile: Option<f64> = opts.get("percentile")?;
        let method =
            Method::parse(name.as_deref().unwrap_or("minmax"), percentile).map_err(|reason| {
                PassError::BadOption {
                    pass: "quantize".into(),
                    reason,
                }
            })?;
        Ok(Quantize {
            method,
            options: QuantizeOptions {
                per_tensor: opts.get("per_tensor")?.unwrap_or(false),
                exclude: opts.get_all("exclude"),
                weight_bits: match opts.get::<u32>("weight_bits")? {
                    None => 8,
                    Some(b @ 2..=8) => b,
                    Some(b) => {
                        return Err(PassError::BadOption {
                            pass: "quantize".into(),
                            reason: format!("weight_bits={b}: expected 2 to 8"),
                        })
                    }
                },
            },
        })
    }
}

fn failed(e: impl std::fmt::Display) -> PassError {
    PassError::failed("quantize", e)
}

impl Pass for Quantize {
    fn name(&self) -> &'static str {
        "quantize"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<bool, PassError> {
        // What can be quantized is checked before asking for calibration data.
        let plan = plan(g);
        plan.check_exclude(&self.options.exclude).map_err(failed)?;
        if plan.calibration_tensors(&self.options.exclude).is_empty() {
            return Err(failed(QuantizeError::NothingToQuantize {
                excluded: self.options.exclude.len(),
            }));
        }
        let calibrator = cx.calibrator.as_ref().ok_or_else(|| {
            failed(
                "needs calibration data, and a textual pipeline has none: give --calib DATA \
                 (or run `kestrel quantize MODEL --calib DATA`)",
            )
        })?;
        let applied = quantize_calibrated(g, calibrator.as_ref(), self.method, &self.options)
            .map_err(failed)?;
        cx.note(format!(
            "quantize({}): {} layers quantized, {} float, {} activation QDQ pairs",
            self.method.name(),
            applied.quantized.len(),
            applied.float.len(),
            applied.activation_pairs
        ));
        Ok(true)
    }
}

/// [`plan`], the ranges `calibrator` finds with `method`, [`apply`]: what the pass does, with
/// what `apply` reports (quantization-aware training needs its
/// [`Applied::weight_sources`](super::Applied::weight_sources)).
pub fn quantize_calibrated(
    g: &mut Graph,
    calibrator: &dyn Calibrator,
    method: Method,
    options: &QuantizeOptions,
) -> Result<super::Applied, QuantizeError> {
    let plan = plan(g);
    plan.check_exclude(&options.exclude)?;
    let tensors: Vec<ValueId> = plan.calibration_tensors(&options.exclude);
    if tensors.is_empty() {
        return Err(QuantizeError::NothingToQuantize {
            excluded: options.exclude.len(),
        });
    }
    let found = calibrator
        .ranges(g, &tensors, method)
        .map_err(QuantizeError::Calibration)?;
    let ranges: Ranges = tensors.into_iter().zip(found).collect();
    apply(g, &plan, &ranges, options)
}
