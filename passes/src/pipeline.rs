//! Pipelines: the textual syntax, its parser and printer, and the named pipelines.
//!
//! ```text
//! pipeline := [item (',' item)*]
//! item     := 'fixpoint' '(' fitem (',' fitem)* ')'      // repeat until no pass changes the graph
//!           | NAME ['(' [option (',' option)*] ')']       // a pass or a group, with options
//! fitem    := item | 'max_iters' '=' INT                  // iteration cap of this fixpoint
//! option   := KEY '=' VALUE
//! NAME, KEY := [A-Za-z0-9_-]+          VALUE := [^,()=\s]+
//! ```
//! Whitespace around tokens is ignored. Names are checked against the registry when parsed, so an
//! unknown pass is reported with its column. A group (`canonicalize`) is a name that stands for a
//! pipeline; it prints as its name and is expanded by the pass manager.

use crate::registry::{group, is_pass};
use crate::PassError;
use std::fmt;

/// Default iteration cap of a `fixpoint(...)` group without `max_iters`.
pub const DEFAULT_MAX_ITERS: usize = 16;

/// One step of a pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipelineItem {
    /// A pass or a group by name, with `key=value` options in source order.
    Pass {
        name: String,
        options: Vec<(String, String)>,
    },
    /// Run `items` in order, repeatedly, until an iteration changes nothing or `max_iters`
    /// iterations ran (`None`: [`DEFAULT_MAX_ITERS`]).
    Fixpoint {
        items: Vec<PipelineItem>,
        max_iters: Option<usize>,
    },
}

/// A sequence of pipeline items. `Display` prints the textual syntax, which [`parse_pipeline`]
/// reads back to an equal value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pipeline {
    pub items: Vec<PipelineItem>,
}

impl PipelineItem {
    /// A pass (or group) without options.
    pub fn pass(name: &str) -> Self {
        PipelineItem::Pass {
            name: name.to_string(),
            options: Vec::new(),
        }
    }

    /// A fixpoint group with the default cap.
    pub fn fixpoint(items: Vec<PipelineItem>) -> Self {
        PipelineItem::Fixpoint {
            items,
            max_iters: None,
        }
    }
}

impl fmt::Display for PipelineItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineItem::Pass { name, options } => {
                f.write_str(name)?;
                if !options.is_empty() {
                    f.write_str("(")?;
                    for (i, (k, v)) in options.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{k}={v}")?;
                    }
                    f.write_str(")")?;
                }
                Ok(())
            }
            PipelineItem::Fixpoint { items, max_iters } => {
                f.write_str("fixpoint(")?;
                if let Some(m) = max_iters {
                    write!(f, "max_iters={m},")?;
                }
                write_items(f, items)?;
                f.write_str(")")
            }
        }
    }
}

fn write_items(f: &mut fmt::Formatter<'_>, items: &[PipelineItem]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_items(f, &self.items)
    }
}

impl Pipeline {
    pub fn new(items: Vec<PipelineItem>) -> Self {
        Pipeline { items }
    }

    /// The pipeline with every group replaced by its definition (recursively), as the pass
    /// manager runs it.
    pub fn expanded(&self) -> Pipeline {
        Pipeline::new(self.items.iter().flat_map(expand_item).collect())
    }
}

fn expand_item(item: &PipelineItem) -> Vec<PipelineItem> {
    match item {
        PipelineItem::Pass { name, options } if options.is_empty() => match group(name) {
            Some(p) => p.expanded().items,
            None => vec![item.clone()],
        },
        PipelineItem::Pass { .. } => vec![item.clone()],
        PipelineItem::Fixpoint { items, max_iters } => vec![PipelineItem::Fixpoint {
            items: items.iter().flat_map(expand_item).collect(),
            max_iters: *max_iters,
        }],
    }
}

/// `O0`: no passes.
pub fn o0() -> Pipeline {
    Pipeline::default()
}

/// `O1`: canonicalisation only (see [`canonicalize`]).
pub fn o1() -> Pipeline {
    Pipeline::new(vec![PipelineItem::pass("canonicalize")])
}

/// `O2`: `O1`, quantize-dequantize islands folded into integer ops, then fusion:
/// `canonicalize,fold-qdq,fuse,canonicalize` (see [`crate::fold_qdq`], [`crate::fuse`]).
pub fn o2() -> Pipeline {
    Pipeline::new(vec![
        PipelineItem::pass("canonicalize"),
        PipelineItem::pass("fold-qdq"),
        PipelineItem::pass("fuse"),
        PipelineItem::pass("canonicalize"),
    ])
}

/// `int8`: `canonicalize,quantize,` then `O2` with the fixed-point requantization of Kestrel's
/// scheme: `canonicalize,quantize,canonicalize,fold-qdq(requant=fixed_point),fuse,canonicalize`
/// (post-training int8 quantization into QDQ form, see [`crate::quantize`]; needs calibration
/// data in [`crate::PassContext::calibrator`]).
pub fn int8() -> Pipeline {
    let mut items = vec![
        PipelineItem::pass("canonicalize"),
        PipelineItem::pass("quantize"),
    ];
    items.extend(with_fixed_point_requant(o2()).items);
    Pipeline::new(items)
}

/// `p` with `requant=fixed_point` given to every `fold-qdq` that names no `requant` option: the
/// requantization of Kestrel's own int8 scheme, for the pipelines that follow `quantize` (the
/// `int8` pipeline, `--quantize int8`); `fold-qdq` alone requantizes as onnxruntime does.
pub fn with_fixed_point_requant(p: Pipeline) -> Pipeline {
    fn item(i: PipelineItem) -> PipelineItem {
        match i {
            PipelineItem::Pass { name, mut options }
                if name == "fold-qdq" && !options.iter().any(|(k, _)| k == "requant") =>
            {
                options.push(("requant".to_string(), "fixed_point".to_string()));
                PipelineItem::Pass { name, options }
            }
            PipelineItem::Fixpoint { items, max_iters } => PipelineItem::Fixpoint {
                items: items.into_iter().map(item).collect(),
                max_iters,
            },
            other => other,
        }
    }
    Pipeline::new(p.items.into_iter().map(item).collect())
}

/// The `canonicalize` group: `fixpoint(fold-constants,remove-identity,fold-batchnorm,
/// cancel-transpose-reshape,cse,dce)`.
pub fn canonicalize() -> Pipeline {
    Pipeline::new(vec![PipelineItem::fixpoint(
        [
            "fold-constants",
            "remove-identity",
            "fold-batchnorm",
            "cancel-transpose-reshape",
            "cse",
            "dce",
        ]
        .into_iter()
        .map(PipelineItem::pass)
        .collect(),
    )])
}

/// A named pipeline (`O0`, `O1`), if `name` is one.
pub fn named_pipeline(name: &str) -> Option<Pipeline> {
    match name {
        "O0" => Some(o0()),
        "O1" => Some(o1()),
        "O2" => Some(o2()),
        "int8" => Some(int8()),
        _ => None,
    }
}

/// A named pipeline by name, or else `text` parsed as a textual pipeline.
pub fn resolve_pipeline(text: &str) -> Result<Pipeline, PassError> {
    match named_pipeline(text.trim()) {
        Some(p) => Ok(p),
        None => parse_pipeline(text),
    }
}

/// Parses the textual pipeline syntax (see the module docs), checking every name against the
/// registry.
pub fn parse_pipeline(text: &str) -> Result<Pipeline, PassError> {
    let mut p = Parser {
        text,
        chars: text.char_indices().collect(),
        pos: 0,
    };
    p.skip_ws();
    if p.at_end() {
        return Ok(Pipeline::default());
    }
    let items = p.items(false)?.0;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error("expected ',' or the end of the pipeline"));
    }
    Ok(Pipeline::new(items))
}

struct Parser<'t> {
    text: &'t str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error_at(&self, pos: usize, reason: impl Into<String>) -> PassError {
        PassError::Syntax {
            text: self.text.to_string(),
            column: pos + 1,
            reason: reason.into(),
        }
    }

    fn error(&self, reason: impl Into<String>) -> PassError {
        self.error_at(self.pos, reason)
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn token(
        &mut self,
        pred: impl Fn(char) -> bool,
        what: &str,
    ) -> Result<(usize, String), PassError> {
        self.skip_ws();
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        if start == self.pos {
            let found = match self.peek() {
                Some(c) => format!("'{c}'"),
                None => "the end".to_string(),
            };
            return Err(self.error(format!("expected {what}, found {found}")));
        }
        Ok((
            start,
            self.chars[start..self.pos]
                .iter()
                .map(|&(_, c)| c)
                .collect(),
        ))
    }

    fn name(&mut self) -> Result<(usize, String), PassError> {
        self.token(
            |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
            "a pass name",
        )
    }

    /// `item (',' item)*`; inside a fixpoint also `max_iters=N` entries. Stops before `)` or end.
    fn items(
        &mut self,
        in_fixpoint: bool,
    ) -> Result<(Vec<PipelineItem>, Option<usize>), PassError> {
        let mut items = Vec::new();
        let mut max_iters = None;
        loop {
            let (start, name) = self.name()?;
            if in_fixpoint && name == "max_iters" && self.eat('=') {
                let (vstart, v) = self.token(|c| c.is_ascii_digit(), "an iteration count")?;
                let n =
                    v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                        self.error_at(vstart, "max_iters must be a positive integer")
                    })?;
                max_iters = Some(n);
            } else if name == "fixpoint" {
                if !self.eat('(') {
                    return Err(self.error("expected '(' after fixpoint"));
                }
                let (inner, m) = self.items(true)?;
                if inner.is_empty() {
                    return Err(self.error("fixpoint needs at least one pass"));
                }
                if !self.eat(')') {
                    return Err(self.error("expected ',' or ')'"));
                }
                items.push(PipelineItem::Fixpoint {
                    items: inner,
                    max_iters: m,
                });
            } else {
                if !is_pass(&name) && group(&name).is_none() {
                    return Err(self.error_at(
                        start,
                        format!(
                            "unknown pass \"{name}\" (known: {})",
                            crate::registry::known_names()
                        ),
                    ));
                }
                let mut options = Vec::new();
                if self.eat('(') {
                    loop {
                        let (_, key) = self.token(
                            |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
                            "an option name",
                        )?;
                        if !self.eat('=') {
                            return Err(self.error(format!("expected '=' after option {key}")));
                        }
                        let (_, value) = self.token(
                            |c| {
                                !(c == ',' || c == '(' || c == ')' || c == '=' || c.is_whitespace())
                            },
                            "an option value",
                        )?;
                        options.push((key, value));
                        if self.eat(')') {
                            break;
                        }
                        if !self.eat(',') {
                            return Err(self.error("expected ',' or ')' in pass options"));
                        }
                    }
                    if group(&name).is_some() {
                        return Err(
                            self.error_at(start, format!("group \"{name}\" takes no options"))
                        );
                    }
                    crate::registry::create_pass(&name, &options)?;
                }
                items.push(PipelineItem::Pass { name, options });
            }
            if !self.eat(',') {
                break;
            }
        }
        Ok((items, max_iters))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_expands() {
        let text = "canonicalize,fixpoint(max_iters=3,cse,fold-constants(max_elements=10)),dce";
        let p = parse_pipeline(text).unwrap();
        assert_eq!(p.to_string(), text);
        assert_eq!(parse_pipeline(&p.to_string()).unwrap(), p);
        let e = p.expanded();
        assert_eq!(
            e.to_string(),
            "fixpoint(fold-constants,remove-identity,fold-batchnorm,cancel-transpose-reshape,cse,dce),\
             fixpoint(max_iters=3,cse,fold-constants(max_elements=10)),dce"
        );
        assert_eq!(o1().to_string(), "canonicalize");
        assert_eq!(o0().to_string(), "");
        assert_eq!(parse_pipeline("  ").unwrap(), o0());
        assert_eq!(
            parse_pipeline(" cse , fixpoint( dce ) ")
                .unwrap()
                .to_string(),
            "cse,fixpoint(dce)"
        );
    }

    #[test]
    fn reports_errors_with_columns() {
        let e = parse_pipeline("cse,frobnicate").unwrap_err().to_string();
        assert!(
            e.contains("column 5") && e.contains("unknown pass \"frobnicate\""),
            "{e}"
        );
        let e = parse_pipeline("cse,").unwrap_err().to_string();
        assert!(e.contains("expected a pass name"), "{e}");
        let e = parse_pipeline("fixpoint(cse").unwrap_err().to_string();
        assert!(e.contains("expected ',' or ')'"), "{e}");
        let e = parse_pipeline("fixpoint(max_iters=0,cse)")
            .unwrap_err()
            .to_string();
        assert!(e.contains("positive"), "{e}");
        let e = parse_pipeline("cse(x=1)").unwrap_err().to_string();
        assert!(e.contains("cse") && e.contains("x"), "{e}");
        let e = parse_pipeline("canonicalize(x=1)").unwrap_err().to_string();
        assert!(e.contains("takes no options"), "{e}");
        assert!(parse_pipeline("cse)").is_err());
        assert!(resolve_pipeline("O1").unwrap() == o1());
        let e = parse_pipeline("fold-qdq(requant=round)")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected float or fixed_point"), "{e}");
    }

    #[test]
    fn quantizing_pipelines_fold_with_fixed_point_requantization() {
        assert_eq!(o2().to_string(), "canonicalize,fold-qdq,fuse,canonicalize");
        assert_eq!(
            int8().to_string(),
            "canonicalize,quantize,canonicalize,fold-qdq(requant=fixed_point),fuse,canonicalize"
        );
        let p = parse_pipeline("fold-qdq,fixpoint(fold-qdq,dce),fold-qdq(requant=float)").unwrap();
        assert_eq!(
            with_fixed_point_requant(p).to_string(),
            "fold-qdq(requant=fixed_point),fixpoint(fold-qdq(requant=fixed_point),dce),\
             fold-qdq(requant=float)"
        );
    }
}
