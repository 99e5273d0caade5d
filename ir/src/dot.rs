//! Graphviz (DOT) rendering of a graph, for reading a model's structure at a glance.
//!
//! Contract: one box per node (op name, its non-default attributes, its result types), one
//! ellipse per graph input and output, one edge per use of a node output or graph input, labelled
//! with the value's type. Constants are not drawn as nodes (a model's weights would drown the
//! picture): each box lists the constants it reads by type, and small ones by value. The output is
//! deterministic and needs only `dot -Tsvg`.

use crate::graph::{Graph, ValueDef, ValueId};
use crate::op::Op;
use crate::text::{attrs::op_attrs, fmt_type};
use std::fmt::Write;

/// Escapes a string for a double-quoted DOT label.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Shortens long attribute texts so boxes stay narrow.
fn clip(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        s
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Fill colour by op family: compute-heavy ops stand out.
fn colour(op: &Op) -> &'static str {
    match op {
        Op::Conv(_) | Op::Gemm(_) | Op::MatMul | Op::Attention { .. } => "#9ecae1",
        Op::Pool(_) | Op::GlobalPool(_) | Op::Reduce(_) => "#c7e9c0",
        Op::Softmax { .. }
        | Op::LogSoftmax { .. }
        | Op::LayerNorm { .. }
        | Op::BatchNorm { .. } => "#fdd0a2",
        Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. } => "#dadaeb",
        Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Transpose { .. }
        | Op::Concat { .. }
        | Op::Split { .. }
        | Op::Slice
        | Op::Gather { .. }
        | Op::Squeeze
        | Op::Unsqueeze
        | Op::Shape { .. }
        | Op::Expand
        | Op::Pad { .. }
        | Op::Resize(_) => "#f0f0f0",
        _ => "#ffffff",
    }
}

/// Renders `g` in the DOT language.
pub fn to_dot(g: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph \"{}\" {{", escape(&g.name));
    s.push_str("  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n");
    s.push_str("  edge [fontname=\"Helvetica\", fontsize=8, color=\"#555555\"];\n");
    for (i, &v) in g.inputs.iter().enumerate() {
        let name = g.value(v).name.clone().unwrap_or_default();
        let _ = writeln!(
            s,
            "  in{i} [shape=ellipse, style=filled, fillcolor=\"#fff7bc\", label=\"{}\\n{}\"];",
            escape(&name),
            escape(&fmt_type(g.ty(v)))
        );
    }
    for (id, node) in g.nodes.iter().enumerate() {
        let mut label = node.op.name().to_string();
        let attrs: Vec<String> = op_attrs(&node.op)
            .into_iter()
            .map(|(k, v)| clip(format!("{k}={v}"), 40))
            .collect();
        for chunk in attrs.chunks(2) {
            label.push('\n');
            label.push_str(&chunk.join(", "));
        }
        for &input in &node.inputs {
            if let ValueDef::Const(c) = &g.value(input).def {
                let ty = fmt_type(g.ty(input));
                let small = c
                    .data
                    .as_ref()
                    .filter(|t| t.numel() <= 4)
                    .map(|t| {
                        if t.dtype().is_float() {
                            format!(" {:?}", t.to_f64_vec())
                        } else {
                            format!(" {:?}", t.to_i64_vec())
                        }
                    })
                    .unwrap_or_default();
                label.push_str(&format!("\nconst {ty}{small}"));
            }
        }
        let types: Vec<String> = node.outputs.iter().map(|&o| fmt_type(g.ty(o))).collect();
        label.push_str(&format!("\n→ {}", types.join(", ")));
        let _ = writeln!(
            s,
            "  n{id} [shape=box, style=\"rounded,filled\", fillcolor=\"{}\", label=\"{}\"];",
            colour(&node.op),
            escape(&label)
        );
    }
    let source = |v: ValueId| -> Option<String> {
        match g.value(v).def {
            ValueDef::Input(i) => Some(format!("in{i}")),
            ValueDef::Node { node, .. } => Some(format!("n{}", node.0)),
            ValueDef::Const(_) => None,
        }
    };
    for (id, node) in g.nodes.iter().enumerate() {
        for &input in &node.inputs {
            if let Some(src) = source(input) {
                let _ = writeln!(
                    s,
                    "  {src} -> n{id} [label=\"{}\"];",
                    escape(&fmt_type(g.ty(input)))
                );
            }
        }
    }
    for (k, out) in g.outputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  out{k} [shape=ellipse, style=filled, fillcolor=\"#fff7bc\", label=\"{}\\n{}\"];",
            escape(&out.name),
            escape(&fmt_type(g.ty(out.value)))
        );
        if let Some(src) = source(out.value) {
            let _ = writeln!(s, "  {src} -> out{k};");
        }
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Tensor, TensorType, UnaryOp};

    #[test]
    fn renders_nodes_edges_and_constants() {
        let mut g = Graph::new("tiny \"net\"");
        let x = g.add_input("x", TensorType::known(DType::F32, &[1, 4]));
        let w = g.add_const("w", Tensor::from_vec(vec![4, 2], vec![0.5f32; 8]));
        let y = g.add(Op::MatMul, &[x, w], "mm").unwrap();
        let z = g.add(Op::Unary(UnaryOp::Relu), &[y], "relu").unwrap();
        g.add_output("y", z);
        let dot = to_dot(&g);
        assert!(dot.starts_with("digraph \"tiny \\\"net\\\"\" {"), "{dot}");
        assert!(dot.contains("n0 [shape=box"), "{dot}");
        assert!(dot.contains("const f32[4,2]"), "{dot}");
        assert!(dot.contains("in0 -> n0 [label=\"f32[1,4]\"]"), "{dot}");
        assert!(dot.contains("n0 -> n1 [label=\"f32[1,2]\"]"), "{dot}");
        assert!(dot.contains("n1 -> out0;"), "{dot}");
        assert_eq!(dot.matches("->").count(), 3);
    }
}
