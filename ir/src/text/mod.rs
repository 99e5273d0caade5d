//! The textual form of the IR: an MLIR-like printer and a hand-written parser.
//!
//! ```text
//! graph @digits_cnn(%input: f32[N,1,8,8]) -> (logits: f32[N,10]) {
//!   %0 = const @"conv1.weight" : f32[16,1,3,3]
//!   %1 = const dense<[0.5, -1.0, 2.0]> : f32[3]
//!   %2 = const elided : f32[32,16,3,3]
//!   %3 = conv(%input, %0, %1) {pads=[1,1,1,1]} : f32[N,16,8,8]
//!   %4 = relu(%3) : f32[N,16,8,8]
//!   %5, %6 = split(%4) {axis=1, num_outputs=2} : f32[N,8,8,8], f32[N,8,8,8]
//!   return %4
//! }
//! ```
//!
//! # Guarantees
//!
//! [`print()`] is deterministic and `print(parse(print(g))) == print(g)` for every graph (given the
//! weights the first print referenced). `parse(print(g))` equals `g` structurally — same inputs,
//! constants (bit-exact data), ops, types and outputs — except for what the text does not carry:
//! node names, source names of non-input values, names of inline/elided constants, and
//! duplicated input names (made unique with `#k` suffixes).
//!
//! # Grammar
//!
//! Whitespace (including newlines) separates tokens and is otherwise insignificant; `//` starts a
//! comment to the end of the line. The printer puts one statement per line.
//!
//! ```text
//! graph     := 'graph' '@' name '(' [input (',' input)*] ')'
//!              '->' '(' [output (',' output)*] ')' '{' stmt* 'return' [value (',' value)*] '}'
//! input     := '%' name ':' type                  // graph inputs are always named
//! output    := name ':' type                      // must equal the returned value's type
//! stmt      := results '=' 'const' cbody ':' type
//!            | [results '='] OP '(' [value (',' value)*] ')' ['{' [attr (',' attr)*] '}']
//!              [':' type (',' type)*]             // one type per result; checked against inference
//! results   := value (',' value)*                 // each defined exactly once, before any use
//! value     := '%' DIGITS | '%' name              // `%7` (numbered) and `%"7"` (named) differ
//! name      := IDENT | STRING                     // IDENT = [A-Za-z_][A-Za-z0-9_.]*
//! cbody     := dense | '@' name | 'elided'
//! dense     := 'dense' '<' (lit | '[' [lit (',' lit)*] ']') '>'   // flat, row-major
//! lit       := INT | FLOAT | 'inf' | '-inf' | 'nan' | 'nan' '(' HEX ')' | 'true' | 'false'
//! type      := DTYPE '[' [dim (',' dim)*] ']' [quant]             // `f32[]` is a scalar
//! dim       := INT | IDENT | STRING | '?'          // known, symbolic, unknown
//! quant     := 'quant' '(' 'scale' '=' lit ',' 'zero_point' '=' INT ')'           // per tensor
//!            | 'quant' '(' ['axis' '=' INT ','] 'scale' '=' '[' lit,* ']' ','
//!                          'zero_point' '=' '[' INT,* ']' ')'                     // per channel
//! attr      := IDENT '=' avalue
//! avalue    := INT | FLOAT | 'inf' | '-inf' | 'nan' ['(' HEX ')'] | 'true' | 'false'
//!            | '[' [INT (',' INT)*] ']' | DTYPE | IDENT | dense ':' type
//!            | program                            // a map's `code`, see [`program`]
//! STRING    := '"' (char | '\"' | '\\' | '\n' | '\t' | '\r' | '\u{' HEX '}')* '"'
//! ```
//!
//! Names that are not identifiers (graph, input, output, weight and symbolic-dimension names) are
//! quoted. Quant keys may appear in any order when parsing.
//!
//! **Values.** Graph inputs keep their names; every other value is numbered `%0, %1, ...` in
//! definition order: constants first (in value order), then node outputs (in node order).
//!
//! **Numbers.** Floats print in the shortest form that parses back to the same bits (`0.1`,
//! `1e-7`, `-0.0`), `inf`/`-inf`, `nan` for the canonical quiet NaN of the element type, and
//! `nan(0xBITS)` (raw bits at the element's width) for any other NaN. f16/bf16 elements print as
//! the shortest f32 form of their exactly widened value. Integer literals are accepted where a
//! float is expected. Bools are `true`/`false`.
//!
//! **Constants.** Constants with at most [`INLINE_LIMIT`] elements are always `dense<...>`
//! (`dense<3>` for a scalar). Larger ones follow [`PrintOptions::weights`]: `@"name"` references
//! ([`WeightStyle::Reference`]; the data is returned in [`Printed::weights`] and resolved by the
//! `weights` callback of [`parse`]), `elided` ([`WeightStyle::Elided`]; parsed into
//! [`Graph::add_elided_const`](crate::Graph::add_elided_const)), or inline
//! ([`WeightStyle::Inline`]). A constant without data always prints `elided`.
//!
//! **Attributes.** Sorted by name, those equal to their default omitted, `{}` omitted when empty;
//! names and types are defined once in [`attrs`] ([`op_attrs`], [`op_from_parts`]), defaults in
//! the op tables of [`crate::op`].
//! Enum values are bare identifiers (`mode=linear`, `auto_pad=same_upper`), dtypes by name
//! (`to=u8`), `constant_of_shape`'s value as `value=dense<0.0> : f32[1]`, a map's program as
//! its expressions (`code=[r0 = sigmoid(x0), mul(x0, r0)]`, see [`program`]).

pub mod attrs;
mod lexer;
mod number;
mod parse;
mod print;
pub mod program;

pub use attrs::{op_attrs, op_from_parts, AttrValue};
pub use number::{fmt_f32, fmt_f64};
pub use parse::parse;
pub use print::{fmt_type, print, PrintOptions, Printed, WeightStyle, INLINE_LIMIT};

/// A syntax or consistency error in a text graph, with its 1-based position (in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Prints `g` with default options ([`WeightStyle::Elided`]): a human-readable dump.
pub fn to_text(g: &crate::Graph) -> String {
    print(g, &PrintOptions::default()).text
}
