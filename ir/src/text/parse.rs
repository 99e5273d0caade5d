//! The parser: recursive descent over the tokens of [`super::lexer`].

use super::attrs::{op_from_parts, set_param, AttrValue};
use super::lexer::{lex, Spanned, Tok};
use super::number::{lit_f32, lit_to_bytes, Lit};
use super::print::fmt_type;
use super::ParseError;
use crate::dtype::{DType, QuantParams, F32};
use crate::graph::{Graph, ValueId};
use crate::op::{BinaryOp, MapInstr, MapProgram, UnaryOp};
use crate::tensor::Tensor;
use crate::types::{Dim, Shape, TensorType};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Label {
    Num(String),
    Name(String),
}

impl Label {
    fn text(&self) -> String {
        match self {
            Label::Num(n) => format!("%{n}"),
            Label::Name(n) => format!("%{}", super::lexer::name_text(n)),
        }
    }
}

struct Parser<'a> {
    toks: Vec<Spanned>,
    pos: usize,
    weights: &'a dyn Fn(&str) -> Option<Tensor>,
    g: Graph,
    env: HashMap<Label, ValueId>,
}

type PResult<T> = Result<T, ParseError>;
type Pos = (usize, usize);
type Lits = Vec<(Lit, Pos)>;

/// Deepest nesting of operations a map program may write inline (deeper ones need lets).
const MAX_MAP_NESTING: usize = 256;

/// A map program being parsed: its instructions in text order and its lets.
#[derive(Default)]
struct ProgramBuilder {
    code: Vec<MapInstr>,
    /// Let name -> (register, where it is defined, uses so far).
    lets: HashMap<String, (u16, Pos, usize)>,
}

/// `k` of an input name `xk`.
fn input_index(s: &str) -> Option<u16> {
    s.strip_prefix('x')
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
}

/// Whether `s` is a let name `r<digits>`.
fn is_register(s: &str) -> bool {
    s.strip_prefix('r')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses the text form back into a graph. `@"name"` constants are resolved through `weights`.
pub fn parse(text: &str, weights: &dyn Fn(&str) -> Option<Tensor>) -> Result<Graph, ParseError> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        weights,
        g: Graph::default(),
        env: HashMap::new(),
    };
    p.graph()?;
    Ok(p.g)
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.pos + k).min(self.toks.len() - 1)].tok
    }

    fn here(&self) -> Pos {
        let t = &self.toks[self.pos];
        (t.line, t.col)
    }

    fn bump(&mut self) -> Spanned {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn err_at<T>(&self, at: Pos, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            line: at.0,
            col: at.1,
            message: msg.into(),
        })
    }

    fn unexpected<T>(&self, what: &str) -> PResult<T> {
        self.err_at(
            self.here(),
            format!("expected {what}, found {}", self.peek().describe()),
        )
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok) -> PResult<()> {
        if self.eat(t) {
            Ok(())
        } else {
            self.unexpected(&t.describe())
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> PResult<()> {
        if matches!(self.peek(), Tok::Ident(s) if s == kw) {
            self.bump();
            Ok(())
        } else {
            self.unexpected(&format!("`{kw}`"))
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == kw)
    }

    /// `item (',' item)*` up to (not including) `close`; allows an empty list.
    fn list<T>(
        &mut self,
        close: &Tok,
        mut item: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        let mut out = Vec::new();
        if self.peek() == close {
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if !self.eat(&Tok::Comma) {
                return Ok(out);
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Types.

    fn dtype(&mut self) -> PResult<DType> {
        let at = self.here();
        match self.bump().tok {
            Tok::Ident(s) => match DType::from_name(&s) {
                Some(d) => Ok(d),
                None => self.err_at(at, format!("unknown dtype `{s}`")),
            },
            t => self.err_at(at, format!("expected a dtype, found {}", t.describe())),
        }
    }

    fn dim(&mut self) -> PResult<Dim> {
        let at = self.here();
        match self.bump().tok {
            Tok::Int(s) => match s.parse::<usize>() {
                Ok(n) => Ok(Dim::Known(n)),
                Err(_) => self.err_at(at, format!("invalid dimension `{s}`")),
            },
            Tok::Ident(s) | Tok::Str(s) => Ok(Dim::sym(&s)),
            Tok::Question => Ok(Dim::Unknown),
            t => self.err_at(at, format!("expected a dimension, found {}", t.describe())),
        }
    }

    fn ty(&mut self) -> PResult<TensorType> {
        let dtype = self.dtype()?;
        self.expect(&Tok::LBracket)?;
        let dims = self.list(&Tok::RBracket, Self::dim)?;
        self.expect(&Tok::RBracket)?;
        let mut ty = TensorType::new(dtype, Shape::from_vec(dims));
        if self.is_keyword("quant") {
            ty.quant = Some(Arc::new(self.quant()?));
        }
        Ok(ty)
    }

    fn quant(&mut self) -> PResult<QuantParams> {
        let start = self.here();
        self.expect_keyword("quant")?;
        self.expect(&Tok::LParen)?;
        let mut axis = None;
        let mut scale = None;
        let mut zero_point = None;
        loop {
            if self.peek() == &Tok::RParen {
                break;
            }
            let at = self.here();
            let key = match self.bump().tok {
                Tok::Ident(k) => k,
                t => {
                    return self.err_at(at, format!("expected a quant key, found {}", t.describe()))
                }
            };
            self.expect(&Tok::Eq)?;
            match key.as_str() {
                "axis" if axis.is_none() => {
                    let vat = self.here();
                    match self.bump().tok {
                        Tok::Int(s) => match s.parse::<usize>() {
                            Ok(a) => axis = Some(a),
                            Err(_) => return self.err_at(vat, format!("invalid quant axis `{s}`")),
                        },
                        t => {
                            return self
                                .err_at(vat, format!("expected an axis, found {}", t.describe()))
                        }
                    }
                }
                "scale" if scale.is_none() => {
                    let lits = self.lits_or_list()?;
                    let mut v = Vec::with_capacity(lits.len());
                    for (lit, lat) in lits {
                        match lit_f32(&lit) {
                            Ok(f) => v.push(F32(f)),
                            Err(e) => return self.err_at(lat, e),
                        }
                    }
                    scale = Some(v);
                }
                "zero_point" if zero_point.is_none() => {
                    let lits = self.lits_or_list()?;
                    let mut v = Vec::with_capacity(lits.len());
                    for (lit, lat) in lits {
                        match &lit {
                            Lit::Int(s) => match s.parse::<i64>() {
                                Ok(i) => v.push(i),
                                Err(_) => {
                                    return self
                                        .err_at(lat, format!("zero point `{s}` out of range"))
                                }
                            },
                            _ => return self.err_at(lat, "zero points must be integers"),
                        }
                    }
                    zero_point = Some(v);
                }
                "axis" | "scale" | "zero_point" => {
                    return self.err_at(at, format!("duplicate quant key `{key}`"))
                }
                _ => {
                    return self.err_at(
                        at,
                        format!("unknown quant key `{key}` (expected axis, scale, zero_point)"),
                    )
                }
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen)?;
        match (scale, zero_point) {
            (Some(scale), Some(zero_point)) => Ok(QuantParams {
                scale,
                zero_point,
                axis,
            }),
            _ => self.err_at(start, "quant(...) needs both `scale` and `zero_point`"),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Literals.

    fn lit(&mut self) -> PResult<(Lit, Pos)> {
        let at = self.here();
        let lit = match self.bump().tok {
            Tok::Int(s) => Lit::Int(s),
            Tok::Float(s) => Lit::Float(s),
            Tok::NegInf => Lit::Inf { neg: true },
            Tok::Ident(s) => match s.as_str() {
                "inf" => Lit::Inf { neg: false },
                "true" => Lit::Bool(true),
                "false" => Lit::Bool(false),
                "nan" => {
                    if self.eat(&Tok::LParen) {
                        let hat = self.here();
                        let bits = match self.bump().tok {
                            Tok::Hex(b) => b,
                            t => {
                                return self.err_at(
                                    hat,
                                    format!(
                                        "expected hex bits in `nan(...)`, found {}",
                                        t.describe()
                                    ),
                                )
                            }
                        };
                        self.expect(&Tok::RParen)?;
                        Lit::Nan(Some(bits))
                    } else {
                        Lit::Nan(None)
                    }
                }
                _ => return self.err_at(at, format!("expected a number, found `{s}`")),
            },
            t => return self.err_at(at, format!("expected a number, found {}", t.describe())),
        };
        Ok((lit, at))
    }

    /// A single literal, or a bracketed list of literals.
    fn lits_or_list(&mut self) -> PResult<Lits> {
        if self.eat(&Tok::LBracket) {
            let v = self.list(&Tok::RBracket, Self::lit)?;
            self.expect(&Tok::RBracket)?;
            Ok(v)
        } else {
            Ok(vec![self.lit()?])
        }
    }

    /// `dense<...>`: the literals.
    fn dense_body(&mut self) -> PResult<Lits> {
        self.expect_keyword("dense")?;
        self.expect(&Tok::Lt)?;
        let lits = self.lits_or_list()?;
        self.expect(&Tok::Gt)?;
        Ok(lits)
    }

    /// Builds a tensor of type `ty` from dense literals.
    fn dense_tensor(&self, lits: &[(Lit, Pos)], ty: &TensorType, at: Pos) -> PResult<Tensor> {
        let Some(dims) = ty.dims() else {
            return self.err_at(
                at,
                format!(
                    "a dense constant needs a fully known shape, got {}",
                    fmt_type(ty)
                ),
            );
        };
        let Some(numel) = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) else {
            return self.err_at(at, "constant shape is too large");
        };
        if numel != lits.len() {
            return self.err_at(
                at,
                format!(
                    "dense literal has {} elements but type {} has {numel}",
                    lits.len(),
                    fmt_type(ty)
                ),
            );
        }
        let mut bytes = Vec::with_capacity(lits.len() * ty.dtype.size());
        for (lit, lat) in lits {
            if let Err(e) = lit_to_bytes(lit, ty.dtype, &mut bytes) {
                return self.err_at(*lat, e);
            }
        }
        match Tensor::from_bytes(ty.dtype, dims, bytes.into()) {
            Ok(t) => Ok(t),
            Err(e) => self.err_at(at, e.to_string()),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Graph structure.

    fn name(&mut self) -> PResult<String> {
        let at = self.here();
        match self.bump().tok {
            Tok::Ident(s) | Tok::Str(s) => Ok(s),
            t => self.err_at(at, format!("expected a name, found {}", t.describe())),
        }
    }

    fn label(&mut self) -> PResult<(Label, Pos)> {
        let at = self.here();
        match self.bump().tok {
            Tok::NumVal(n) => Ok((Label::Num(n), at)),
            Tok::NameVal(n) => Ok((Label::Name(n), at)),
            t => self.err_at(
                at,
                format!("expected a value (`%...`), found {}", t.describe()),
            ),
        }
    }

    fn use_value(&mut self) -> PResult<ValueId> {
        let (l, at) = self.label()?;
        match self.env.get(&l) {
            Some(&v) => Ok(v),
            None => self.err_at(at, format!("use of undefined value {}", l.text())),
        }
    }

    fn define(&mut self, l: Label, at: Pos, v: ValueId) -> PResult<()> {
        if self.env.contains_key(&l) {
            return self.err_at(at, format!("redefinition of {}", l.text()));
        }
        self.env.insert(l, v);
        Ok(())
    }

    fn graph(&mut self) -> PResult<()> {
        self.expect_keyword("graph")?;
        let at = self.here();
        match self.bump().tok {
            Tok::At(n) => self.g.name = n,
            t => return self.err_at(at, format!("expected `@name`, found {}", t.describe())),
        }
        self.expect(&Tok::LParen)?;
        let inputs = self.list(&Tok::RParen, |p| {
            let (l, at) = p.label()?;
            p.expect(&Tok::Colon)?;
            let ty = p.ty()?;
            Ok((l, at, ty))
        })?;
        self.expect(&Tok::RParen)?;
        for (l, at, ty) in inputs {
            let Label::Name(name) = &l else {
                return self.err_at(
                    at,
                    format!("graph input {} must be named, not numbered", l.text()),
                );
            };
            if self.env.contains_key(&l) {
                return self.err_at(at, format!("duplicate graph input {}", l.text()));
            }
            let v = self.g.add_input(name.clone(), ty);
            self.define(l, at, v)?;
        }
        self.expect(&Tok::Arrow)?;
        self.expect(&Tok::LParen)?;
        let outputs = self.list(&Tok::RParen, |p| {
            let name = p.name()?;
            p.expect(&Tok::Colon)?;
            let at = p.here();
            let ty = p.ty()?;
            Ok((name, ty, at))
        })?;
        self.expect(&Tok::RParen)?;
        self.expect(&Tok::LBrace)?;
        loop {
            if self.is_keyword("return") {
                let rat = self.here();
                self.bump();
                let vals = if self.peek() == &Tok::RBrace {
                    vec![]
                } else {
                    self.list(&Tok::RBrace, |p| {
                        let at = p.here();
                        Ok((p.use_value()?, at))
                    })?
                };
                if vals.len() != outputs.len() {
                    return self.err_at(
                        rat,
                        format!(
                            "`return` lists {} values but the header declares {} outputs",
                            vals.len(),
                            outputs.len()
                        ),
                    );
                }
                for ((v, at), (name, ty, _)) in vals.into_iter().zip(outputs) {
                    if self.g.ty(v) != &ty {
                        return self.err_at(
                            at,
                            format!(
                                "output `{name}` is declared {} but the returned value has type {}",
                                fmt_type(&ty),
                                fmt_type(self.g.ty(v))
                            ),
                        );
                    }
                    self.g.add_output(name, v);
                }
                self.expect(&Tok::RBrace)?;
                if self.peek() != &Tok::Eof {
                    return self.unexpected("end of input after the graph");
                }
                return Ok(());
            }
            if self.peek() == &Tok::Eof || self.peek() == &Tok::RBrace {
                return self.unexpected("a statement or `return`");
            }
            self.statement()?;
        }
    }

    fn statement(&mut self) -> PResult<()> {
        let mut results = Vec::new();
        if matches!(self.peek(), Tok::NumVal(_) | Tok::NameVal(_)) {
            results = self.list(&Tok::Eq, Self::label)?;
            self.expect(&Tok::Eq)?;
        }
        let op_at = self.here();
        let op_name = match self.bump().tok {
            Tok::Ident(s) => s,
            t => {
                return self.err_at(
                    op_at,
                    format!("expected an op name or `const`, found {}", t.describe()),
                )
            }
        };
        if op_name == "const" {
            return self.constant(results, op_at);
        }
        self.expect(&Tok::LParen)?;
        let args = self.list(&Tok::RParen, Self::use_value)?;
        self.expect(&Tok::RParen)?;
        let mut attrs = Vec::new();
        if self.eat(&Tok::LBrace) {
            attrs = self.list(&Tok::RBrace, Self::attr)?;
            self.expect(&Tok::RBrace)?;
        }
        let mut types = Vec::new();
        if self.eat(&Tok::Colon) {
            types = self.list(&Tok::Eof, |p| {
                let at = p.here();
                Ok((p.ty()?, at))
            })?;
        }
        let op = match op_from_parts(&op_name, args.len(), &attrs) {
            Ok(op) => op,
            Err(e) => return self.err_at(op_at, e),
        };
        if op.num_outputs() != results.len() {
            return self.err_at(
                op_at,
                format!(
                    "{op_name} has {} results but {} are named",
                    op.num_outputs(),
                    results.len()
                ),
            );
        }
        if types.len() != results.len() {
            return self.err_at(
                op_at,
                format!(
                    "{op_name} names {} results but lists {} result types",
                    results.len(),
                    types.len()
                ),
            );
        }
        let outs = match self.g.add_node(op, &args, "") {
            Ok(o) => o,
            Err(e) => return self.err_at(op_at, e.to_string()),
        };
        for (&v, (ty, at)) in outs.iter().zip(&types) {
            if self.g.ty(v) != ty {
                return self.err_at(
                    *at,
                    format!(
                        "{op_name}: declared result type {} but inference gives {}",
                        fmt_type(ty),
                        fmt_type(self.g.ty(v))
                    ),
                );
            }
        }
        for ((l, at), &v) in results.into_iter().zip(outs.iter()) {
            self.define(l, at, v)?;
        }
        Ok(())
    }

    fn attr(&mut self) -> PResult<(String, AttrValue)> {
        let at = self.here();
        let key = match self.bump().tok {
            Tok::Ident(k) => k,
            t => {
                return self.err_at(
                    at,
                    format!("expected an attribute name, found {}", t.describe()),
                )
            }
        };
        self.expect(&Tok::Eq)?;
        let vat = self.here();
        let v = match self.peek().clone() {
            Tok::Int(s) => {
                self.bump();
                match s.parse::<i64>() {
                    Ok(i) => AttrValue::Int(i),
                    Err(_) => return self.err_at(vat, format!("integer `{s}` out of range")),
                }
            }
            Tok::Float(_) | Tok::NegInf => self.attr_float()?,
            Tok::Ident(s) => match s.as_str() {
                "inf" | "nan" => self.attr_float()?,
                "true" | "false" => {
                    self.bump();
                    AttrValue::Bool(s == "true")
                }
                "dense" if self.peek_at(1) == &Tok::Lt => {
                    let lits = self.dense_body()?;
                    self.expect(&Tok::Colon)?;
                    let tat = self.here();
                    let ty = self.ty()?;
                    if ty.quant.is_some() {
                        return self.err_at(tat, "attribute tensors cannot be quantized");
                    }
                    AttrValue::Tensor(self.dense_tensor(&lits, &ty, vat)?)
                }
                _ => {
                    self.bump();
                    match DType::from_name(&s) {
                        Some(d) => AttrValue::DType(d),
                        None => AttrValue::Ident(s),
                    }
                }
            },
            Tok::LBracket if !matches!(self.peek_at(1), Tok::Int(_) | Tok::RBracket) => {
                self.bump();
                AttrValue::Map(self.map_program()?)
            }
            Tok::LBracket => {
                self.bump();
                let v = self.list(&Tok::RBracket, |p| {
                    let at = p.here();
                    match p.bump().tok {
                        Tok::Int(s) => match s.parse::<i64>() {
                            Ok(i) => Ok(i),
                            Err(_) => p.err_at(at, format!("integer `{s}` out of range")),
                        },
                        t => p.err_at(at, format!("expected an integer, found {}", t.describe())),
                    }
                })?;
                self.expect(&Tok::RBracket)?;
                AttrValue::Ints(v)
            }
            t => {
                return self.err_at(
                    vat,
                    format!("expected an attribute value, found {}", t.describe()),
                )
            }
        };
        Ok((key, v))
    }

    fn attr_float(&mut self) -> PResult<AttrValue> {
        let (lit, at) = self.lit()?;
        match lit_f32(&lit) {
            Ok(f) => Ok(AttrValue::Float(F32(f))),
            Err(e) => self.err_at(at, e),
        }
    }

    fn constant(&mut self, results: Vec<(Label, Pos)>, at: Pos) -> PResult<()> {
        if results.len() != 1 {
            return self.err_at(
                at,
                format!("`const` defines one value, not {}", results.len()),
            );
        }
        let (label, lat) = results.into_iter().next().expect("one result");
        let local_name = match &label {
            Label::Num(n) | Label::Name(n) => n.clone(),
        };
        let vat = self.here();
        enum Body {
            Dense(Lits),
            Ref(String),
            Elided,
        }
        let body = match self.peek().clone() {
            Tok::Ident(s) if s == "dense" => Body::Dense(self.dense_body()?),
            Tok::Ident(s) if s == "elided" => {
                self.bump();
                Body::Elided
            }
            Tok::At(name) => {
                self.bump();
                Body::Ref(name)
            }
            t => {
                return self.err_at(
                    vat,
                    format!(
                        "expected `dense<...>`, `@name` or `elided`, found {}",
                        t.describe()
                    ),
                )
            }
        };
        self.expect(&Tok::Colon)?;
        let tat = self.here();
        let ty = self.ty()?;
        let v = match body {
            Body::Elided => self.g.add_elided_const(local_name, ty),
            Body::Dense(lits) => {
                let t = self.dense_tensor(&lits, &ty, vat)?;
                let v = self.g.add_const(local_name, t);
                self.g.values[v.index()].ty.quant = ty.quant;
                v
            }
            Body::Ref(name) => {
                let Some(t) = (self.weights)(&name) else {
                    return self.err_at(vat, format!("no data for constant `@{name}`"));
                };
                let matches =
                    t.dtype() == ty.dtype && ty.dims().is_some_and(|d| d.as_slice() == t.dims());
                if !matches {
                    return self.err_at(
                        tat,
                        format!(
                            "constant `@{name}` is declared {} but its data is {}{:?}",
                            fmt_type(&ty),
                            t.dtype(),
                            t.dims()
                        ),
                    );
                }
                let v = self.g.add_const(name, t);
                self.g.values[v.index()].ty.quant = ty.quant;
                v
            }
        };
        self.define(label, lat, v)
    }

    // ----------------------------------------------------------------------------------------
    // Map programs (grammar in `super::program`).

    /// A map program after its `[`, through the closing `]`.
    fn map_program(&mut self) -> PResult<MapProgram> {
        let mut b = ProgramBuilder::default();
        loop {
            let is_let = matches!(self.peek(), Tok::Ident(s) if is_register(s))
                && self.peek_at(1) == &Tok::Eq;
            if !is_let {
                let result = self.map_expr(&mut b, 0)?;
                self.expect(&Tok::RBracket)?;
                if let Some((name, &(_, at, _))) = b.lets.iter().find(|(_, l)| l.2 == 0) {
                    return self.err_at(at, format!("map register {name} is never used"));
                }
                return match MapProgram::canonical_from(&b.code, result as usize) {
                    Some(p) => Ok(p),
                    None => self.err_at(self.here(), "map program is too long"),
                };
            }
            let (at, name) = (self.here(), self.name()?);
            self.expect(&Tok::Eq)?;
            let r = self.map_expr(&mut b, 0)?;
            if b.lets.contains_key(&name) {
                return self.err_at(at, format!("redefinition of map register {name}"));
            }
            b.lets.insert(name, (r, at, 0));
            if !self.eat(&Tok::Comma) {
                return self.unexpected("`,` (a map program ends with its result, not a let)");
            }
        }
    }

    /// Appends `ins` to the program; its register.
    fn map_push(&self, b: &mut ProgramBuilder, ins: MapInstr, at: Pos) -> PResult<u16> {
        let Ok(r) = u16::try_from(b.code.len()) else {
            return self.err_at(at, "map program is too long");
        };
        b.code.push(ins);
        Ok(r)
    }

    /// One map expression; the register that holds its value.
    fn map_expr(&mut self, b: &mut ProgramBuilder, depth: usize) -> PResult<u16> {
        let at = self.here();
        if depth > MAX_MAP_NESTING {
            return self.err_at(at, "map expression nested too deeply (use lets)");
        }
        let name = match self.peek() {
            Tok::Ident(s) => s.clone(),
            Tok::Int(_) | Tok::Float(_) | Tok::NegInf => String::new(),
            t => {
                let found = t.describe();
                return self.err_at(
                    at,
                    format!(
                        "expected a map expression (`x0`, a register, a number or `op(..)`), found {found}"
                    ),
                );
            }
        };
        if name.is_empty() || name == "inf" || name == "nan" {
            let (lit, lat) = self.lit()?;
            return match lit_f32(&lit) {
                Ok(v) => self.map_push(b, MapInstr::Const(F32(v)), lat),
                Err(e) => self.err_at(lat, e),
            };
        }
        if self.peek_at(1) != &Tok::LParen {
            self.bump();
            if let Some(k) = input_index(&name) {
                return self.map_push(b, MapInstr::Input(k), at);
            }
            if is_register(&name) {
                return match b.lets.get_mut(&name) {
                    Some(l) => {
                        l.2 += 1;
                        Ok(l.0)
                    }
                    None => self.err_at(at, format!("use of undefined map register {name}")),
                };
            }
            return self.err_at(
                at,
                format!("expected a map expression, found `{name}` (inputs are x0, x1, ..)"),
            );
        }
        self.bump();
        self.expect(&Tok::LParen)?;
        let mut operands = Vec::new();
        let mut params = Vec::new();
        loop {
            if matches!(self.peek(), Tok::Ident(_)) && self.peek_at(1) == &Tok::Eq {
                let pat = self.here();
                params.push((self.attr()?, pat));
            } else {
                operands.push(self.map_expr(b, depth + 1)?);
            }
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen)?;
        if let Some(mut u) = UnaryOp::from_name(&name) {
            let [a] = operands[..] else {
                return self.err_at(at, format!("{name} takes one operand"));
            };
            for ((key, v), pat) in params {
                if let Err(e) = set_param(&mut u, &key, &v) {
                    return self.err_at(pat, e);
                }
            }
            return self.map_push(b, MapInstr::Unary(u, a), at);
        }
        if let Some(op) = BinaryOp::from_name(&name) {
            let [x, y] = operands[..] else {
                return self.err_at(at, format!("{name} takes two operands"));
            };
            if let Some((_, pat)) = params.first() {
                return self.err_at(*pat, format!("{name} has no parameters"));
            }
            return self.map_push(b, MapInstr::Binary(op, x, y), at);
        }
        self.err_at(
            at,
            format!("`{name}` is not an element-wise unary or binary op"),
        )
    }
}
