//! The printer.

use super::attrs::op_attrs;
use super::lexer::name_text;
use super::number::{fmt_f32, DenseFmt};
use crate::graph::{Graph, ValueDef};
use crate::tensor::Tensor;
use crate::types::{Dim, TensorType};
use std::collections::HashSet;
use std::fmt::Write;

/// Constants with at most this many elements are always printed inline as `dense<...>`.
pub const INLINE_LIMIT: usize = 16;

/// How constants larger than [`INLINE_LIMIT`] elements are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightStyle {
    /// `const @"name"`: the data is to be stored elsewhere under that name; the printer reports
    /// the referenced tensors in [`Printed::weights`].
    Reference,
    /// `const elided`: the data is dropped (human-readable dumps, golden tests).
    #[default]
    Elided,
    /// `const dense<[...]>`: everything inline (self-contained but large).
    Inline,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrintOptions {
    pub weights: WeightStyle,
}

impl PrintOptions {
    pub fn new(weights: WeightStyle) -> Self {
        PrintOptions { weights }
    }
}

/// The result of [`print()`].
#[derive(Clone, Debug)]
pub struct Printed<'g> {
    pub text: String,
    /// With [`WeightStyle::Reference`]: every constant printed as `@"name"`, in order of
    /// appearance, under its (unique within this print) reference name. Empty otherwise.
    pub weights: Vec<(String, &'g Tensor)>,
}

/// Returns `name`, or `name#1`, `name#2`, ... — the first not yet in `used` — and records it.
fn unique(name: &str, used: &mut HashSet<String>) -> String {
    let mut candidate = name.to_string();
    let mut k = 0usize;
    while used.contains(&candidate) {
        k += 1;
        candidate = format!("{name}#{k}");
    }
    used.insert(candidate.clone());
    candidate
}

/// `f32[N,3,?]` followed by ` quant(...)` when the type carries quantization parameters.
pub fn fmt_type(ty: &TensorType) -> String {
    let mut s = String::new();
    s.push_str(ty.dtype.name());
    s.push('[');
    for (i, d) in ty.shape.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match d {
            Dim::Known(n) => {
                let _ = write!(s, "{n}");
            }
            Dim::Sym(name) => s.push_str(&name_text(name)),
            Dim::Unknown => s.push('?'),
        }
    }
    s.push(']');
    if let Some(q) = &ty.quant {
        let floats = |v: &[crate::F32]| {
            let items: Vec<String> = v.iter().map(|f| fmt_f32(f.0)).collect();
            format!("[{}]", items.join(", "))
        };
        let ints = |v: &[i64]| {
            let items: Vec<String> = v.iter().map(|i| i.to_string()).collect();
            format!("[{}]", items.join(", "))
        };
        if q.axis.is_none() && q.scale.len() == 1 && q.zero_point.len() == 1 {
            let _ = write!(
                s,
                " quant(scale={}, zero_point={})",
                fmt_f32(q.scale[0].0),
                q.zero_point[0]
            );
        } else {
            s.push_str(" quant(");
            if let Some(a) = q.axis {
                let _ = write!(s, "axis={a}, ");
            }
            let _ = write!(
                s,
                "scale={}, zero_point={})",
                floats(&q.scale),
                ints(&q.zero_point)
            );
        }
    }
    s
}

/// Prints `g` in the text form (see the [module documentation](super) for the grammar).
///
/// Deterministic: graph inputs keep their names (made unique with `#k` suffixes if needed), every
/// other value is numbered `%0, %1, ...` — constants first in value order, then node outputs in
/// node order — regardless of source names.
pub fn print<'g>(g: &'g Graph, opts: &PrintOptions) -> Printed<'g> {
    let mut labels: Vec<Option<String>> = vec![None; g.values.len()];
    let mut used_inputs = HashSet::new();
    for &v in &g.inputs {
        let name = g.value(v).name.clone().unwrap_or_default();
        if let Some(l) = labels.get_mut(v.index()) {
            *l = Some(format!("%{}", name_text(&unique(&name, &mut used_inputs))));
        }
    }
    let mut next = 0usize;
    let mut fresh = || {
        let l = format!("%{next}");
        next += 1;
        l
    };
    for (i, v) in g.values.iter().enumerate() {
        if matches!(v.def, ValueDef::Const(_)) {
            labels[i] = Some(fresh());
        }
    }
    for n in &g.nodes {
        for &o in &n.outputs {
            if let Some(l) = labels.get_mut(o.index()) {
                *l = Some(fresh());
            }
        }
    }
    let label = |v: crate::ValueId| -> String {
        labels
            .get(v.index())
            .cloned()
            .flatten()
            .unwrap_or_else(|| format!("%\"<invalid value {}>\"", v.0))
    };
    let ty_of = |v: crate::ValueId| -> String {
        g.values
            .get(v.index())
            .map(|x| fmt_type(&x.ty))
            .unwrap_or_else(|| "?".to_string())
    };

    let mut out = String::new();
    let _ = write!(out, "graph @{}(", name_text(&g.name));
    for (i, &v) in g.inputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: {}", label(v), ty_of(v));
    }
    out.push_str(") -> (");
    for (i, o) in g.outputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}: {}", name_text(&o.name), ty_of(o.value));
    }
    out.push_str(") {\n");

    let mut weights = Vec::new();
    let mut used_weights = HashSet::new();
    for (i, v) in g.values.iter().enumerate() {
        let ValueDef::Const(c) = &v.def else { continue };
        let _ = write!(out, "  {} = const ", labels[i].as_deref().unwrap_or("%?"));
        match &c.data {
            None => out.push_str("elided"),
            Some(t) if t.numel() <= INLINE_LIMIT || opts.weights == WeightStyle::Inline => {
                let _ = write!(out, "{}", DenseFmt(t));
            }
            Some(t) => match opts.weights {
                WeightStyle::Elided | WeightStyle::Inline => out.push_str("elided"),
                WeightStyle::Reference => {
                    let name = unique(&c.name, &mut used_weights);
                    let _ = write!(out, "@{}", name_text(&name));
                    weights.push((name, t));
                }
            },
        }
        let _ = writeln!(out, " : {}", fmt_type(&v.ty));
    }

    for n in &g.nodes {
        out.push_str("  ");
        for (i, &o) in n.outputs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&label(o));
        }
        if !n.outputs.is_empty() {
            out.push_str(" = ");
        }
        out.push_str(n.op.name());
        out.push('(');
        for (i, &a) in n.inputs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&label(a));
        }
        out.push(')');
        let attrs = op_attrs(&n.op);
        if !attrs.is_empty() {
            out.push_str(" {");
            for (i, (k, v)) in attrs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{k}={v}");
            }
            out.push('}');
        }
        if !n.outputs.is_empty() {
            out.push_str(" : ");
            for (i, &o) in n.outputs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&ty_of(o));
            }
        }
        out.push('\n');
    }

    out.push_str("  return");
    for (i, o) in g.outputs.iter().enumerate() {
        out.push_str(if i > 0 { ", " } else { " " });
        out.push_str(&label(o.value));
    }
    out.push_str("\n}\n");
    Printed { text: out, weights }
}
