//! The registry: the one place that maps pass names (and their options) to passes.

use crate::pipeline::{self, Pipeline};
use crate::{Pass, PassError};

/// Every pass: registry name and one-line description, in the order `kestrel passes` lists them.
const PASSES: &[(&str, &str)] = &[
    (
        "fold-constants",
        "evaluate nodes whose inputs are constants (and Shape/Size of known shapes) into constants; options: max_elements=N, fold_quant=true|false",
    ),
    ("dce", "remove nodes whose outputs are unused and constants nothing references"),
    (
        "cse",
        "merge nodes with the same op and inputs, and constants with identical data",
    ),
    (
        "remove-identity",
        "remove Identity and no-op Reshape/Transpose/Cast/Expand/Slice/Pad/Squeeze/Unsqueeze/Flatten/Concat",
    ),
    (
        "fold-batchnorm",
        "fold BatchNorm into a preceding Conv/Gemm/MatMul(+Add), else rewrite it as Mul+Add",
    ),
    (
        "fuse",
        "e-graph fusion: activations/residual adds into conv/gemm epilogues, SE scales into the next conv, matmul+bias as gemm, element-wise chains into map, GELU and LayerNorm recovered, attention as one op; options: node_limit=N, iter_limit=N, time_ms=N",
    ),
    (
        "fold-qdq",
        "fold quantize/dequantize islands into integer ops: quantized Conv/Gemm/MatMul with requantization (Relu/Clip folded into its bounds), data movement and max pooling on 8-bit values, redundant quantize-dequantize pairs removed; options: requant=float|fixed_point (float: onnxruntime's f32 requantization, the default; fixed_point: TFLite's, as the int8 pipeline uses)",
    ),
    (
        "quantize",
        "int8 post-training quantization: QDQ around Conv/Gemm/MatMul, s8 per-channel weights, u8 activations from calibration data (--calib); options: method=minmax|percentile|entropy|mse, percentile=P, per_tensor=true, weight_bits=2..8 (default 8), exclude=NODE (repeatable)",
    ),
    (
        "prune",
        "structured pruning: whole channels removed from every layer of their dependency group (docs/PRUNING.md); options: ratio=R, importance=l2|l1|bn, global=true, round_to=N, keep=NODE (repeatable)",
    ),
    (
        "cancel-transpose-reshape",
        "compose Transpose pairs, collapse Reshape/Flatten/Squeeze/Unsqueeze chains, drop no-op reshapes",
    ),
];

/// Groups: names that stand for a pipeline, with their description.
const GROUPS: &[(&str, &str)] = &[(
    "canonicalize",
    "fixpoint(fold-constants,remove-identity,fold-batchnorm,cancel-transpose-reshape,cse,dce)",
)];

/// Named pipelines with a description.
const PIPELINES: &[(&str, &str)] = &[
    ("O0", "no passes"),
    ("O1", "canonicalisation"),
    (
        "O2",
        "canonicalisation, quantize-dequantize islands folded into integer ops, and fusion (the default for the JIT)",
    ),
    (
        "int8",
        "canonicalisation, int8 quantization from calibration data (--calib), then O2",
    ),
];

/// Every pass: `(name, one-line description)`.
pub fn list_passes() -> Vec<(&'static str, &'static str)> {
    PASSES.iter().chain(GROUPS).copied().collect()
}

/// Every named pipeline: `(name, textual pipeline, description)`.
pub fn list_pipelines() -> Vec<(&'static str, String, &'static str)> {
    PIPELINES
        .iter()
        .filter_map(|&(name, descr)| {
            pipeline::named_pipeline(name).map(|p| (name, p.to_string(), descr))
        })
        .collect()
}

/// Whether `name` is a registered pass (not a group).
pub fn is_pass(name: &str) -> bool {
    PASSES.iter().any(|&(n, _)| n == name)
}

/// The pipeline a group name stands for.
pub fn group(name: &str) -> Option<Pipeline> {
    match name {
        "canonicalize" => Some(pipeline::canonicalize()),
        _ => None,
    }
}

/// Comma-separated names of every pass and group (for error messages).
pub fn known_names() -> String {
    PASSES
        .iter()
        .chain(GROUPS)
        .map(|&(n, _)| n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds the pass called `name` with `options`. Unknown names and options are errors.
pub fn create_pass(name: &str, options: &[(String, String)]) -> Result<Box<dyn Pass>, PassError> {
    let opts = Options::new(name, options);
    let pass: Box<dyn Pass> = match name {
        "fold-constants" => Box::new(crate::fold_constants::FoldConstants::from_options(&opts)?),
        "dce" => Box::new(crate::dce::Dce),
        "cse" => Box::new(crate::cse::Cse),
        "remove-identity" => Box::new(crate::remove_identity::RemoveIdentity),
        "fold-batchnorm" => Box::new(crate::fold_batchnorm::FoldBatchNorm),
        "fold-qdq" => Box::new(crate::fold_qdq::FoldQdq::from_options(&opts)?),
        "cancel-transpose-reshape" => {
            Box::new(crate::cancel_transpose_reshape::CancelTransposeReshape)
        }
        "quantize" => Box::new(crate::quantize::Quantize::from_options(&opts)?),
        "prune" => Box::new(crate::prune::Prune::from_options(&opts)?),
        "fuse" => Box::new(crate::fuse::Fuse::from_options(
            opts.get("node_limit")?,
            opts.get("iter_limit")?,
            opts.get("time_ms")?,
        )),
        _ => {
            return Err(PassError::UnknownPass {
                name: name.to_string(),
                known: known_names(),
            })
        }
    };
    opts.finish()?;
    Ok(pass)
}

/// A pass's `key=value` options; [`Options::finish`] rejects any the pass did not read.
pub struct Options<'a> {
    pass: &'a str,
    options: &'a [(String, String)],
    used: std::cell::RefCell<Vec<bool>>,
}

impl<'a> Options<'a> {
    fn new(pass: &'a str, options: &'a [(String, String)]) -> Self {
        Options {
            pass,
            options,
            used: std::cell::RefCell::new(vec![false; options.len()]),
        }
    }

    fn bad(&self, reason: String) -> PassError {
        PassError::BadOption {
            pass: self.pass.to_string(),
            reason,
        }
    }

    /// The last value given for `key`, parsed.
    pub fn get<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, PassError> {
        let mut found = None;
        for (i, (k, v)) in self.options.iter().enumerate() {
            if k == key {
                self.used.borrow_mut()[i] = true;
                found = Some(v);
            }
        }
        match found {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                self.bad(format!(
                    "option {key}={v}: expected {}",
                    std::any::type_name::<T>()
                ))
            }),
        }
    }

    /// Every value given for `key`, in order (an option that may repeat).
    pub fn get_all(&self, key: &str) -> Vec<String> {
        let mut found = Vec::new();
        for (i, (k, v)) in self.options.iter().enumerate() {
            if k == key {
                self.used.borrow_mut()[i] = true;
                found.push(v.clone());
            }
        }
        found
    }

    fn finish(&self) -> Result<(), PassError> {
        let used = self.used.borrow();
        match self.options.iter().zip(used.iter()).find(|(_, &u)| !u) {
            Some(((k, _), _)) => Err(self.bad(format!("unknown option \"{k}\""))),
            None => Ok(()),
        }
    }
}
