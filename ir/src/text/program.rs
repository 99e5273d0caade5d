//! The text form of a [`MapProgram`]: its expression DAG as a let-list.
//!
//! ```text
//! program := '[' (REG '=' expr ',')* expr ']'     // the last expression is the result
//! expr    := 'x' DIGITS                           // input k of the map
//!          | REG                                  // a let defined before
//!          | lit                                  // a constant (f32)
//!          | NAME '(' expr [',' expr] (',' IDENT '=' avalue)* ')'
//!                                                 // a unary op (one operand, its parameters
//!                                                 // by name) or a binary op (two operands)
//! REG     := 'r' DIGITS
//! ```
//!
//! Printing: the program's [canonical](MapProgram::canonical) form, inputs and constants inline,
//! an operation used more than once (or nested deeper than [`MAX_INLINE_DEPTH`]) as a let `rN`
//! (numbered in order), every other operation inline where it is used; parameters that differ
//! from their default by name. Parsing builds the program the text denotes in canonical form, so
//! `print(parse(t)) == t` for every printed `t`. Example, `x * sigmoid(x) + x * sigmoid(x)` with
//! the product computed once:
//!
//! ```text
//! [r0 = mul(x0, sigmoid(x0)), add(r0, r0)]
//! ```

use super::attrs::param_value;
use super::number::fmt_f32;
use crate::op::{MapInstr, MapProgram, UnaryOp};

/// Deepest nesting of inline operations the printer writes; a deeper operation becomes a let.
pub const MAX_INLINE_DEPTH: usize = 32;

/// The text form of `p` (see the module documentation). A program that reads a register before
/// defining it (which no graph holds: inference rejects it) prints as its instruction list, for
/// error messages.
pub fn program_text(p: &MapProgram) -> String {
    let Some(root) = p.code.len().checked_sub(1) else {
        return "[]".into();
    };
    let Some(c) = MapProgram::canonical_from(&p.code, root) else {
        return format!("<invalid map program {:?}>", p.code);
    };
    let code = &c.code;
    let root = code.len() - 1;
    let mut uses = vec![0usize; code.len()];
    for ins in code {
        match *ins {
            MapInstr::Unary(_, a) => uses[a as usize] += 1,
            MapInstr::Binary(_, a, b) => {
                uses[a as usize] += 1;
                uses[b as usize] += 1;
            }
            MapInstr::Input(_) | MapInstr::Const(_) => {}
        }
    }
    // The text each register reads as where it is used, and the depth of inline operations in it.
    let mut text: Vec<String> = Vec::with_capacity(code.len());
    let mut depth: Vec<usize> = Vec::with_capacity(code.len());
    let mut lets: Vec<String> = Vec::new();
    for (i, ins) in code.iter().enumerate() {
        let (expr, d) = match *ins {
            MapInstr::Input(k) => (format!("x{k}"), 0),
            MapInstr::Const(v) => (fmt_f32(v.0), 0),
            MapInstr::Unary(u, a) => {
                let mut args = vec![text[a as usize].clone()];
                args.extend(non_default_params(u));
                (
                    format!("{}({})", u.name(), args.join(", ")),
                    depth[a as usize] + 1,
                )
            }
            MapInstr::Binary(b, x, y) => (
                format!("{}({}, {})", b.name(), text[x as usize], text[y as usize]),
                depth[x as usize].max(depth[y as usize]) + 1,
            ),
        };
        let operation = matches!(ins, MapInstr::Unary(..) | MapInstr::Binary(..));
        if operation && i != root && (uses[i] > 1 || d > MAX_INLINE_DEPTH) {
            let name = format!("r{}", lets.len());
            lets.push(format!("{name} = {expr}"));
            text.push(name);
            depth.push(0);
        } else {
            text.push(expr);
            depth.push(d);
        }
    }
    lets.push(text[root].clone());
    format!("[{}]", lets.join(", "))
}

/// `name=value` for each parameter of `u` that differs from its default.
fn non_default_params(u: UnaryOp) -> Vec<String> {
    let defaults = UnaryOp::from_name(u.name())
        .map(UnaryOp::params)
        .unwrap_or_default();
    u.params()
        .into_iter()
        .filter(|p| !defaults.contains(p))
        .map(|(k, v)| format!("{k}={}", param_value(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_programs_print_without_panicking() {
        let p = MapProgram {
            code: vec![MapInstr::Input(0), MapInstr::Unary(UnaryOp::Relu, 5)],
        };
        assert!(program_text(&p).starts_with("<invalid map program"));
        assert_eq!(program_text(&MapProgram::default()), "[]");
    }
}
