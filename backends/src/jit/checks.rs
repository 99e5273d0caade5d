//! Preconditions of compilation: every dimension known ([`check_known_dims`]) and no value over
//! the size limit ([`check_sizes`]). (The third, a graph folded for code generation, is
//! `super::lower::check_folded`.)

use super::error::JitError;
use kestrel_ir::{Dim, Graph};

/// No value may need more bytes than the interpreter's limit (checked before any allocation).
pub fn check_sizes(g: &Graph) -> Result<(), JitError> {
    let limit = crate::interp::tensor_byte_limit();
    for (i, v) in g.values.iter().enumerate() {
        let Some(dims) = v.ty.dims() else { continue };
        let bytes = dims.iter().fold(v.ty.dtype.size() as u128, |acc, &d| {
            acc.saturating_mul(d as u128)
        });
        if bytes > limit {
            let what = match &v.def {
                kestrel_ir::ValueDef::Node { node, .. } => {
                    format!("{}: its output {}", g.describe_node(*node), v.ty)
                }
                _ => format!(
                    "value {} ({})",
                    v.name.clone().unwrap_or(format!("%{i}")),
                    v.ty
                ),
            };
            return Err(JitError::TooLarge { what, bytes, limit });
        }
    }
    Ok(())
}

/// Every value's dimensions must be known.
pub fn check_known_dims(g: &Graph) -> Result<(), JitError> {
    let mut missing: Vec<String> = Vec::new();
    for (i, v) in g.values.iter().enumerate() {
        for d in &v.ty.shape {
            let s = match d {
                Dim::Known(_) => continue,
                Dim::Sym(s) => s.to_string(),
                Dim::Unknown => match &v.def {
                    // Name the node whose output shape depends on run-time data.
                    kestrel_ir::ValueDef::Node { node, .. } => {
                        format!("? in the output of {} ({})", g.describe_node(*node), v.ty)
                    }
                    _ => format!(
                        "? in {} ({})",
                        v.name.clone().unwrap_or(format!("%{i}")),
                        v.ty
                    ),
                },
            };
            if !missing.contains(&s) {
                missing.push(s);
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(JitError::UnboundDims {
            dims: missing.join(", "),
        })
    }
}
