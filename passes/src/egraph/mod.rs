//! The e-graph engine (egg) for equational rewriting of the IR.
//!
//! - **Language** ([`KNode`]): the IR's ops with their attributes are the e-node operators, so
//!   every op of the closed `Op` enum is in the language without a second list to maintain.
//!   Values the e-graph does not look into (graph inputs, constants, outputs of multi-output
//!   ops) are [`KNode::Leaf`]s; small constants a rule creates are [`KNode::Const`]s. In rule
//!   patterns an op name means that op with default attributes (`reduce_mean`, `gelu`); a
//!   trailing `*` (`conv*`, `hard_sigmoid*`) matches the op with any attributes (left-hand
//!   sides only).
//! - **Analysis** ([`TypeAnalysis`]): every e-class knows its tensor type (by the IR's own
//!   `infer`), whether it is a constant (and its data when small), and how many uses its value
//!   had in the source graph, so rule conditions can check shapes, constants and single use.
//! - **Limits** ([`Limits`]): nodes, iterations and time; the stop reason goes into
//!   [`Saturation`] and the pass notes (printed in the dump).
//! - **Extraction** by a [`CostModel`] (static estimate unless the driver gives one), then the
//!   graph is rebuilt from the best e-nodes.

pub mod rules;

use crate::cost::{CostModel, StaticCost};
use egg::{Analysis, CostFunction, DidMerge, Extractor, Id, Language, Runner, StopReason};
use kestrel_ir::infer::{infer, InferInput};
use kestrel_ir::{Graph, Op, Tensor, TensorType, ValueDef, ValueId};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Largest constant whose data the analysis keeps (elements): enough for scalars, shapes and
/// per-channel parameters a condition reads.
pub const KEEP_CONST_ELEMS: usize = 64;

/// An e-node: an IR op over e-classes, an opaque source value, or a small new constant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KNode {
    /// A value of the source graph the e-graph does not look into (its [`ValueId`] index).
    Leaf(u32),
    /// A constant made by a rule.
    Const(Tensor),
    /// `op` applied to `args`. `any` is set only in patterns: match any attributes.
    Op {
        op: Op,
        any: bool,
        args: SmallVec<[Id; 4]>,
    },
}

impl KNode {
    /// An op node (not a pattern wildcard).
    pub fn op(op: Op, args: &[Id]) -> Self {
        KNode::Op {
            op,
            any: false,
            args: args.into(),
        }
    }
}

impl Language for KNode {
    type Discriminant = (u8, &'static str);

    fn discriminant(&self) -> Self::Discriminant {
        match self {
            KNode::Leaf(_) => (0, ""),
            KNode::Const(_) => (1, ""),
            KNode::Op { op, .. } => (2, op.name()),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        match (self, other) {
            (KNode::Leaf(a), KNode::Leaf(b)) => a == b,
            (KNode::Const(a), KNode::Const(b)) => a == b,
            (
                KNode::Op {
                    op: a,
                    any: x,
                    args: c,
                },
                KNode::Op {
                    op: b,
                    any: y,
                    args: d,
                },
            ) => {
                c.len() == d.len()
                    && if *x || *y {
                        a.name() == b.name()
                    } else {
                        a == b
                    }
            }
            _ => false,
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            KNode::Op { args, .. } => args,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            KNode::Op { args, .. } => args,
            _ => &mut [],
        }
    }
}

impl fmt::Display for KNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KNode::Leaf(v) => write!(f, "leaf{v}"),
            KNode::Const(t) => write!(f, "const{:?}", t.dims()),
            KNode::Op { op, any, .. } => {
                f.write_str(op.name())?;
                if *any {
                    f.write_str("*")?;
                }
                Ok(())
            }
        }
    }
}

impl egg::FromOp for KNode {
    type Error = String;

    fn from_op(op: &str, children: Vec<Id>) -> Result<Self, Self::Error> {
        let (name, any) = match op.strip_suffix('*') {
            Some(n) => (n, true),
            None => (op, false),
        };
        let (o, _) = kestrel_ir::Op::named(name, children.len())
            .ok_or_else(|| format!("unknown op `{name}`"))?;
        Ok(KNode::Op {
            op: o,
            any,
            args: children.into(),
        })
    }
}

/// What the analysis knows about an e-class.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// The tensor type (`None` if inference failed for every node seen so far).
    pub ty: Option<TensorType>,
    /// The class is a constant.
    pub is_const: bool,
    /// Its data, when at most [`KEEP_CONST_ELEMS`] elements.
    pub konst: Option<Tensor>,
    /// Uses of the source value(s) in this class in the source graph (node inputs and graph
    /// outputs); 0 for classes that rules created.
    pub uses: u32,
}

impl Info {
    /// The single f32 value of a one-element f32 constant.
    pub fn scalar_f32(&self) -> Option<f32> {
        let t = self.konst.as_ref()?;
        (t.dtype() == kestrel_ir::DType::F32 && t.numel() == 1).then(|| t.to_f32_vec()[0])
    }
}

/// Type analysis: see the module documentation.
#[derive(Default)]
pub struct TypeAnalysis {
    /// Type and small data of every source value (indexed by [`ValueId`]).
    pub values: Vec<(TensorType, Option<Tensor>, bool)>,
}

fn small(t: &Tensor) -> Option<Tensor> {
    (t.numel() <= KEEP_CONST_ELEMS).then(|| t.clone())
}

/// Infers the output type of `op` over classes `args` (single-output ops only).
pub fn infer_node(eg: &EGraph, op: &Op, args: &[Id]) -> Option<TensorType> {
    let mut ins = Vec::with_capacity(args.len());
    for a in args {
        let d = &eg[*a].data;
        ins.push(InferInput {
            ty: d.ty.as_ref()?,
            value: d.konst.as_ref(),
        });
    }
    let mut out = infer(op, &ins).ok()?;
    (out.len() == 1).then(|| out.remove(0))
}

impl Analysis<KNode> for TypeAnalysis {
    type Data = Info;

    fn make(egraph: &mut egg::EGraph<KNode, Self>, enode: &KNode) -> Info {
        match enode {
            KNode::Leaf(v) => {
                let (ty, data, is_const) = &egraph.analysis.values[*v as usize];
                Info {
                    ty: Some(ty.clone()),
                    is_const: *is_const,
                    konst: data.clone(),
                    uses: 0,
                }
            }
            KNode::Const(t) => Info {
                ty: Some(TensorType::known(t.dtype(), t.dims())),
                is_const: true,
                konst: small(t),
                uses: 0,
            },
            KNode::Op { op, args, .. } => Info {
                ty: infer_node(egraph, op, args),
                ..Info::default()
            },
        }
    }

    fn merge(&mut self, a: &mut Info, b: Info) -> DidMerge {
        let mut a_changed = false;
        if a.ty.is_none() && b.ty.is_some() {
            a.ty = b.ty;
            a_changed = true;
        }
        if !a.is_const && b.is_const {
            a.is_const = true;
            a.konst = b.konst;
            a_changed = true;
        }
        if b.uses > a.uses {
            a.uses = b.uses;
            a_changed = true;
        }
        DidMerge(a_changed, true)
    }
}

/// The e-graph the rules rewrite: egg's e-graph over the IR's ops ([`KNode`]) with the type
/// analysis.
pub type EGraph = egg::EGraph<KNode, TypeAnalysis>;
pub type Rule = egg::Rewrite<KNode, TypeAnalysis>;

/// Saturation limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub nodes: usize,
    pub iters: usize,
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            nodes: 200_000,
            iters: 30,
            time: Duration::from_secs(2),
        }
    }
}

/// What a saturation run did.
#[derive(Clone, Debug)]
pub struct Saturation {
    /// `saturated`, `node limit (N)`, `iteration limit (N)`, `time limit (S s)` or other.
    pub stop: String,
    /// True unless the run saturated.
    pub hit_limit: bool,
    pub iterations: usize,
    pub enodes: usize,
    pub classes: usize,
    pub time: Duration,
    /// Applications per rule (rules that fired at least once), by name.
    pub applied: Vec<(String, usize)>,
}

impl fmt::Display for Saturation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "e-graph: stop reason: {}; {} iterations, {} e-nodes, {} e-classes, {:.1} ms",
            self.stop,
            self.iterations,
            self.enodes,
            self.classes,
            self.time.as_secs_f64() * 1e3
        )?;
        if !self.applied.is_empty() {
            f.write_str("; rules applied:")?;
            for (r, n) in &self.applied {
                write!(f, " {r}×{n}")?;
            }
        }
        Ok(())
    }
}

/// The source graph in an e-graph.
pub struct Built {
    pub egraph: EGraph,
    /// E-class of every source value that has one.
    pub class_of: Vec<Option<Id>>,
    /// Source node name per class (for naming rebuilt nodes).
    pub names: HashMap<Id, String>,
}

/// Builds the e-graph of `g`: every single-output node becomes an e-node; inputs, constants
/// and outputs of multi-output nodes are leaves.
pub fn build(g: &Graph) -> Built {
    let values = g
        .values
        .iter()
        .map(|v| match &v.def {
            ValueDef::Const(c) => (v.ty.clone(), c.data.as_ref().and_then(small), true),
            _ => (v.ty.clone(), None, false),
        })
        .collect();
    let mut eg = EGraph::new(TypeAnalysis { values });
    let mut class_of: Vec<Option<Id>> = vec![None; g.values.len()];
    let mut names = HashMap::new();
    let class = |eg: &mut EGraph, class_of: &mut Vec<Option<Id>>, v: ValueId| -> Id {
        if let Some(c) = class_of[v.index()] {
            return c;
        }
        let c = eg.add(KNode::Leaf(v.0));
        class_of[v.index()] = Some(c);
        c
    };
    for node in &g.nodes {
        let args: Vec<Id> = node
            .inputs
            .iter()
            .map(|&v| class(&mut eg, &mut class_of, v))
            .collect();
        if node.outputs.len() == 1 {
            let c = eg.add(KNode::op(node.op.clone(), &args));
            class_of[node.outputs[0].index()] = Some(c);
            names.entry(c).or_insert_with(|| node.name.clone());
        } else {
            for &o in &node.outputs {
                class(&mut eg, &mut class_of, o);
            }
        }
    }
    for o in &g.outputs {
        class(&mut eg, &mut class_of, o.value);
    }
    for (v, uses) in g.use_counts().into_iter().enumerate() {
        if let Some(c) = class_of[v] {
            let d = &mut eg[c].data;
            d.uses = d.uses.max(uses as u32);
        }
    }
    eg.rebuild();
    Built {
        egraph: eg,
        class_of,
        names,
    }
}

/// Runs `rules` on the e-graph within `limits`.
pub fn saturate(b: &mut Built, rules: &[Rule], limits: Limits) -> Saturation {
    let t = Instant::now();
    let eg = std::mem::take(&mut b.egraph);
    let runner = Runner::default()
        .with_egraph(eg)
        .with_node_limit(limits.nodes)
        .with_iter_limit(limits.iters)
        .with_time_limit(limits.time)
        .run(rules);
    let (stop, hit_limit) = match &runner.stop_reason {
        Some(StopReason::Saturated) => ("saturated".to_string(), false),
        Some(StopReason::NodeLimit(n)) => (format!("node limit ({n})"), true),
        Some(StopReason::IterationLimit(n)) => (format!("iteration limit ({n})"), true),
        Some(StopReason::TimeLimit(s)) => (format!("time limit ({s} s)"), true),
        Some(StopReason::Other(s)) => (s.clone(), true),
        None => ("not run".to_string(), true),
    };
    let mut applied: HashMap<String, usize> = HashMap::new();
    for it in &runner.iterations {
        for (r, n) in &it.applied {
            *applied.entry(r.to_string()).or_default() += n;
        }
    }
    let mut applied: Vec<(String, usize)> = applied.into_iter().collect();
    applied.sort();
    let iterations = runner.iterations.len();
    b.egraph = runner.egraph;
    Saturation {
        stop,
        hit_limit,
        iterations,
        enodes: b.egraph.total_number_of_nodes(),
        classes: b.egraph.number_of_classes(),
        time: t.elapsed(),
        applied,
    }
}

struct Cost<'a> {
    eg: &'a EGraph,
    model: &'a dyn CostModel,
}

impl CostFunction<KNode> for Cost<'_> {
    type Cost = f64;

    fn cost<C>(&mut self, enode: &KNode, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        match enode {
            KNode::Leaf(_) | KNode::Const(_) => 0.0,
            KNode::Op { op, args, .. } => {
                let Some(out) = infer_node(self.eg, op, args) else {
                    return f64::INFINITY;
                };
                let ins: Vec<&TensorType> = args
                    .iter()
                    .filter_map(|a| self.eg[*a].data.ty.as_ref())
                    .collect();
                let own = self.model.node_cost(op, &ins, &out);
                args.iter().fold(own, |acc, a| acc + costs(*a))
            }
        }
    }
}

/// Extracts the cheapest graph under `model` (the static estimate when `None`) and rebuilds it
/// with the inputs, outputs (names kept), constants and multi-output nodes of `g`.
pub fn extract(g: &Graph, b: &Built, model: Option<&dyn CostModel>) -> Result<Graph, String> {
    let model: &dyn CostModel = model.unwrap_or(&StaticCost);
    let eg = &b.egraph;
    let ex = Extractor::new(eg, Cost { eg, model });
    let mut out = Graph::new(g.name.clone());
    let mut map: HashMap<u32, ValueId> = HashMap::new();
    for &v in &g.inputs {
        let val = g.value(v);
        let nv = out.add_input(val.name.clone().unwrap_or_default(), val.ty.clone());
        map.insert(v.0, nv);
    }
    let mut names: HashMap<Id, String> = HashMap::new();
    for (k, n) in &b.names {
        names.entry(eg.find(*k)).or_insert_with(|| n.clone());
    }
    let mut st = Rebuild {
        g,
        b,
        names,
        ex: &ex,
        memo: HashMap::new(),
        map,
        n_consts: 0,
    };
    for node in &g.nodes {
        if node.outputs.len() == 1 {
            continue;
        }
        let ins: Vec<ValueId> = node
            .inputs
            .iter()
            .map(|&v| st.value(&mut out, v))
            .collect::<Result<_, _>>()?;
        let outs = out
            .add_node(node.op.clone(), &ins, node.name.clone())
            .map_err(|e| e.to_string())?;
        for (&o, &n) in node.outputs.iter().zip(&outs) {
            st.map.insert(o.0, n);
        }
    }
    for o in &g.outputs {
        let v = st.value(&mut out, o.value)?;
        out.add_output(o.name.clone(), v);
    }
    out.sort_topologically().map_err(|e| e.to_string())?;
    Ok(out)
}

struct Rebuild<'a, 'e> {
    g: &'a Graph,
    b: &'a Built,
    names: HashMap<Id, String>,
    ex: &'a Extractor<'e, Cost<'e>, KNode, TypeAnalysis>,
    memo: HashMap<Id, ValueId>,
    map: HashMap<u32, ValueId>,
    n_consts: usize,
}

impl Rebuild<'_, '_> {
    fn value(&mut self, out: &mut Graph, v: ValueId) -> Result<ValueId, String> {
        match self.b.class_of[v.index()] {
            Some(c) => self.class(out, c),
            None => self.leaf(out, v.0),
        }
    }

    fn leaf(&mut self, out: &mut Graph, v: u32) -> Result<ValueId, String> {
        if let Some(&n) = self.map.get(&v) {
            return Ok(n);
        }
        let val = self.g.value(ValueId(v));
        let n = match &val.def {
            ValueDef::Const(c) => match &c.data {
                Some(t) => out.add_const(c.name.clone(), t.clone()),
                None => out.add_elided_const(c.name.clone(), val.ty.clone()),
            },
            _ => return Err(format!("value {v} is used before its definition")),
        };
        self.map.insert(v, n);
        Ok(n)
    }

    fn class(&mut self, out: &mut Graph, c: Id) -> Result<ValueId, String> {
        let c = self.b.egraph.find(c);
        if let Some(&v) = self.memo.get(&c) {
            return Ok(v);
        }
        let v = match self.ex.find_best_node(c).clone() {
            KNode::Leaf(v) => self.leaf(out, v)?,
            KNode::Const(t) => {
                self.n_consts += 1;
                let name = format!("egraph.const.{}", self.n_consts);
                out.add_const(name, t)
            }
            KNode::Op { op, args, .. } => {
                let mut ins = Vec::with_capacity(args.len());
                for a in &args {
                    ins.push(self.class(out, *a)?);
                }
                let name = self.names.get(&c).cloned().unwrap_or_default();
                out.add(op, &ins, name).map_err(|e| e.to_string())?
            }
        };
        self.memo.insert(c, v);
        Ok(v)
    }
}
