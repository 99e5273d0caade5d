//! Rewrite rules, one line each, grouped by theme. Every rule states its identity in a comment.
//! A rule that must match both operand orders of a commutative op is written once with
//! [`mirrored`], which adds the mirror `NAME-2`.
//! Rules whose right-hand side needs attributes of the matched ops (the epilogue of a conv,
//! the epsilon of a layer norm) use the small appliers below; the others are plain patterns.

use super::{infer_node, EGraph, Info, KNode, Rule};
use egg::{
    rewrite as rw, Applier, ConditionalApplier, ENodeOrVar, Id, Language, Pattern, PatternAst,
    Subst, Symbol, Var,
};
use kestrel_ir::{BinaryOp, DType, Epilogue, MapInstr, MapProgram, Op, Tensor, UnaryOp, F32};

fn v(s: &str) -> Var {
    s.parse().expect("variable")
}

fn info(eg: &EGraph, id: Id) -> &Info {
    &eg[id].data
}

/// The rule `name` for `lhs`, and its mirror `name-2`: `lhs` with the two operands of its
/// outermost commutative binary op (breadth-first from the root) swapped. Written once, the rule
/// then matches both operand orders of that op.
fn mirrored<A>(name: &str, lhs: &str, applier: A) -> [Rule; 2]
where
    A: Applier<KNode, super::TypeAnalysis> + Clone + Send + Sync + 'static,
{
    let pattern: Pattern<KNode> = lhs.parse().expect("rule pattern");
    let mut ast = pattern.ast.clone();
    let mut queue = std::collections::VecDeque::from([Id::from(ast.as_ref().len() - 1)]);
    let commutative = loop {
        let id = queue
            .pop_front()
            .expect("the pattern has a commutative binary op");
        match &ast[id] {
            ENodeOrVar::ENode(KNode::Op {
                op: Op::Binary(b), ..
            }) if b.is_commutative() => break id,
            ENodeOrVar::ENode(n) => queue.extend(n.children().iter().copied()),
            ENodeOrVar::Var(_) => {}
        }
    };
    if let ENodeOrVar::ENode(KNode::Op { args, .. }) = &mut ast[commutative] {
        args.swap(0, 1);
    }
    let rule = |name: String, p: Pattern<KNode>, a: A| Rule::new(name, p, a).expect("rule");
    [
        rule(name.to_string(), pattern, applier.clone()),
        rule(format!("{name}-2"), Pattern::new(ast), applier),
    ]
}

/// Merges the class `new` built by an applier into `root`: the applier's result (`[new]` when
/// that changed the e-graph, else nothing).
fn merged(eg: &mut EGraph, new: Id, root: Id) -> Vec<Id> {
    if eg.union(new, root) {
        vec![new]
    } else {
        vec![]
    }
}

/// Where the activation of a fused epilogue comes from.
#[derive(Clone, Copy, Debug)]
pub enum Act {
    /// This one (`None`: no activation, for a residual alone).
    Fixed(Option<UnaryOp>),
    /// `Op::Clip` with scalar constant bounds `?lo` (and `?hi`, else unbounded above).
    Clip(&'static str, Option<&'static str>),
    /// The matched root's unary op of this name applied to the base, with its parameters
    /// (`hard_sigmoid{alpha, beta}`, `clip{min, max}`).
    FromRoot(&'static str),
}

/// Folds an activation and/or a residual into the epilogue of the conv/gemm in class `base`.
///
/// Conditions: the conv/gemm output is f32, has no activation yet (and no residual when one is
/// added), and the value it computes had exactly `max_uses` uses in the source graph (1; 2 for
/// SiLU, whose second use is the sigmoid, itself used once), so fusing never duplicates work.
#[derive(Clone)]
pub struct Fuse {
    pub base: Var,
    pub act: Act,
    pub residual: Option<Var>,
    pub max_uses: u32,
}

impl Fuse {
    pub fn act(a: UnaryOp) -> Self {
        Fuse {
            base: v("?c"),
            act: Act::Fixed(Some(a)),
            residual: None,
            max_uses: 1,
        }
    }
    pub fn with(act: Act) -> Self {
        Fuse {
            base: v("?c"),
            act,
            residual: None,
            max_uses: 1,
        }
    }
    pub fn residual() -> Self {
        Fuse {
            base: v("?c"),
            act: Act::Fixed(None),
            residual: Some(v("?r")),
            max_uses: 1,
        }
    }
    pub fn silu() -> Self {
        Fuse {
            max_uses: 2,
            ..Fuse::act(UnaryOp::Silu)
        }
    }

    /// The activation to fuse (`Some(None)` for none), or `None` when the match does not fuse.
    fn activation(
        &self,
        eg: &EGraph,
        root: Id,
        base: Id,
        subst: &Subst,
    ) -> Option<Option<UnaryOp>> {
        let act = match self.act {
            Act::Fixed(a) => a,
            Act::Clip(lo, hi) => {
                let min = info(eg, subst[v(lo)]).scalar_f32()?;
                let max = match hi {
                    Some(h) => info(eg, subst[v(h)]).scalar_f32()?,
                    None => f32::INFINITY,
                };
                Some(UnaryOp::Clip {
                    min: F32(min),
                    max: F32(max),
                })
            }
            Act::FromRoot(name) => Some(eg[root].nodes.iter().find_map(|n| match n {
                KNode::Op {
                    op: Op::Unary(u),
                    args,
                    ..
                } if u.name() == name && eg.find(args[0]) == eg.find(base) => Some(*u),
                _ => None,
            })?),
        };
        // A NaN clip bound keeps x in the interpreter but gives NaN in the JIT's epilogue.
        if let Some(UnaryOp::Clip { min, max }) = act {
            if min.0.is_nan() || max.0.is_nan() {
                return None;
            }
        }
        debug_assert!(act.is_none_or(|a| a.is_epilogue_activation()));
        Some(act)
    }
}

fn zeros(n: usize) -> Tensor {
    Tensor::from_vec(vec![n], vec![0.0f32; n])
}

impl Applier<KNode, super::TypeAnalysis> for Fuse {
    fn apply_one(
        &self,
        eg: &mut EGraph,
        root: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<KNode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let base = subst[self.base];
        let bi = info(eg, base);
        if bi.uses != self.max_uses || bi.ty.as_ref().is_none_or(|t| t.dtype != DType::F32) {
            return vec![];
        }
        if self.max_uses == 2 {
            // SiLU: the other use must be the sigmoid, used once (by the mul).
            let s = eg.lookup(KNode::op(Op::Unary(UnaryOp::Sigmoid), &[base]));
            if s.is_none_or(|s| info(eg, s).uses != 1) {
                return vec![];
            }
        }
        let Some(act) = self.activation(eg, root, base, subst) else {
            return vec![];
        };
        let res = self.residual.map(|r| subst[r]);
        if let Some(r) = res {
            // The residual must have exactly the output's type (no broadcasting) and differ
            // from the base itself.
            if eg.find(r) == eg.find(base)
                || info(eg, r).ty != bi.ty
                || bi.ty.as_ref().is_none_or(|t| t.dims().is_none())
            {
                return vec![];
            }
        }
        let out_ty = bi.ty.clone();
        let candidates: Vec<KNode> = eg[base].nodes.clone();
        let mut changed = vec![];
        for n in candidates {
            let KNode::Op { op, args, .. } = n else {
                continue;
            };
            let (mut op, epi) = match op {
                Op::Conv(a) => {
                    let e = a.epilogue;
                    (Op::Conv(a), e)
                }
                Op::Gemm(a) => {
                    let e = a.epilogue;
                    (Op::Gemm(a), e)
                }
                _ => continue,
            };
            if epi.act.is_some() || (res.is_some() && epi.residual) {
                continue;
            }
            let new_epi = Epilogue {
                act,
                residual: epi.residual || res.is_some(),
                ..epi
            };
            let mut args: Vec<Id> = args.to_vec();
            if let Some(r) = res {
                if args.len() == 2 {
                    // The residual comes after the bias: add a zero bias.
                    let Some(dims) = out_ty.as_ref().and_then(|t| t.dims()) else {
                        continue;
                    };
                    // Conv bias [M] and gemm C [N] both have the output's axis-1 extent.
                    let n = dims[1];
                    if n > 1 << 24 {
                        continue;
                    }
                    let z = eg.add(KNode::Const(zeros(n)));
                    args.push(z);
                }
                // After the bias, before a channel scale.
                args.insert(3, r);
            }
            match &mut op {
                Op::Conv(a) => a.epilogue = new_epi,
                Op::Gemm(a) => a.epilogue = new_epi,
                _ => unreachable!(),
            }
            if infer_node(eg, &op, &args) != out_ty {
                continue;
            }
            let id = eg.add(KNode::op(op, &args));
            if eg.union(id, root) {
                changed.push(id);
            }
        }
        changed
    }
}

/// `add(matmul(x, W), b)` with a constant 2-D `W [K, N]`, `b [N]` and `x [.., K]` of rank >= 2
/// becomes `reshape(gemm(reshape(x, [M, K]), W, b), out_shape)` (reshapes are free views).
#[derive(Clone)]
pub struct MatMulBiasToGemm;

fn shape_const(dims: &[usize]) -> Tensor {
    let v: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    Tensor::from_vec(vec![v.len()], v)
}

impl Applier<KNode, super::TypeAnalysis> for MatMulBiasToGemm {
    fn apply_one(
        &self,
        eg: &mut EGraph,
        root: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<KNode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let (x, w, b) = (subst[v("?x")], subst[v("?w")], subst[v("?b")]);
        let (xi, wi, bi) = (info(eg, x), info(eg, w), info(eg, b));
        let (Some(xd), Some(wd), Some(bd)) = (
            xi.ty.as_ref().and_then(|t| t.dims()),
            wi.ty.as_ref().and_then(|t| t.dims()),
            bi.ty.as_ref().and_then(|t| t.dims()),
        ) else {
            return vec![];
        };
        if !wi.is_const
            || wd.len() != 2
            || xd.len() < 2
            || bd.len() != 1
            || bd[0] != wd[1]
            || xd[xd.len() - 1] != wd[0]
            || xi.ty.as_ref().map(|t| t.dtype) != Some(DType::F32)
            || info(eg, root).ty.as_ref().and_then(|t| t.dims()).is_none()
        {
            return vec![];
        }
        let Some(m) = xd[..xd.len() - 1]
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
        else {
            return vec![];
        };
        let out_dims = info(eg, root)
            .ty
            .as_ref()
            .and_then(|t| t.dims())
            .unwrap_or_default();
        let s2 = eg.add(KNode::Const(shape_const(&[m, wd[0]])));
        let x2 = eg.add(KNode::op(Op::Reshape { allowzero: false }, &[x, s2]));
        let gemm = eg.add(KNode::op(Op::Gemm(Default::default()), &[x2, w, b]));
        // Its only user is the reshape below.
        eg[gemm].data.uses = eg[gemm].data.uses.max(1);
        let so = eg.add(KNode::Const(shape_const(&out_dims)));
        let y = eg.add(KNode::op(Op::Reshape { allowzero: false }, &[gemm, so]));
        if info(eg, y).ty != info(eg, root).ty {
            return vec![];
        }
        merged(eg, y, root)
    }
}

/// `add(reshape(g, s), r)` where `r` has exactly the add's type becomes
/// `reshape(add(g, reshape(r, shape(g))), s)`, so the add can join `g`'s epilogue.
#[derive(Clone)]
pub struct ResidualThroughReshape;

impl Applier<KNode, super::TypeAnalysis> for ResidualThroughReshape {
    fn apply_one(
        &self,
        eg: &mut EGraph,
        root: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<KNode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let (g, s, r) = (subst[v("?g")], subst[v("?s")], subst[v("?r")]);
        let rt = info(eg, root).ty.clone();
        if info(eg, r).ty != rt || rt.is_none() || info(eg, g).uses != 1 {
            return vec![];
        }
        // Only when g is a conv/gemm that can take the residual.
        let fusable = eg[g].nodes.iter().any(|n| {
            matches!(n, KNode::Op { op: Op::Gemm(a), .. } if a.epilogue.is_none())
                || matches!(n, KNode::Op { op: Op::Conv(a), .. } if a.epilogue.is_none())
        });
        let Some(gd) = info(eg, g).ty.as_ref().and_then(|t| t.dims()) else {
            return vec![];
        };
        if !fusable {
            return vec![];
        }
        let gs = eg.add(KNode::Const(shape_const(&gd)));
        let r2 = eg.add(KNode::op(Op::Reshape { allowzero: false }, &[r, gs]));
        let a = eg.add(KNode::op(Op::Binary(BinaryOp::Add), &[g, r2]));
        // The new add is the only user of g's value.
        eg[a].data.uses = eg[a].data.uses.max(1);
        let y = eg.add(KNode::op(Op::Reshape { allowzero: false }, &[a, s]));
        if info(eg, y).ty != rt {
            return vec![];
        }
        merged(eg, y, root)
    }
}

/// Recovers `layer_norm(x, scale, bias) {axis=-1, epsilon}` from the decomposed form
/// `(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) * scale + bias` (means over the last axis,
/// keepdims), with `scale`, `bias` 1-D over the last axis and `eps`, `2` scalar constants.
pub struct LayerNormFromParts;

impl Applier<KNode, super::TypeAnalysis> for LayerNormFromParts {
    fn apply_one(
        &self,
        eg: &mut EGraph,
        root: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<KNode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let (x, ax, two, eps, scale, bias) = (
            subst[v("?x")],
            subst[v("?ax")],
            subst[v("?two")],
            subst[v("?eps")],
            subst[v("?scale")],
            subst[v("?bias")],
        );
        let Some(xd) = info(eg, x).ty.as_ref().and_then(|t| t.dims()) else {
            return vec![];
        };
        let rank = xd.len() as i64;
        let last_axis = info(eg, ax).konst.as_ref().is_some_and(|t| {
            t.dtype().is_int() && {
                let v = t.to_i64_vec();
                v.len() == 1 && (v[0] == -1 || v[0] == rank - 1)
            }
        });
        let (Some(two), Some(eps)) = (info(eg, two).scalar_f32(), info(eg, eps).scalar_f32())
        else {
            return vec![];
        };
        let per_last = |id: Id| {
            info(eg, id)
                .ty
                .as_ref()
                .and_then(|t| t.dims())
                .is_some_and(|d| d.len() == 1 && Some(&d[0]) == xd.last())
        };
        if !last_axis
            || two != 2.0
            || eps.is_nan()
            || eps < 0.0
            || !per_last(scale)
            || !per_last(bias)
        {
            return vec![];
        }
        let op = Op::LayerNorm {
            axis: -1,
            epsilon: F32(eps),
        };
        if infer_node(eg, &op, &[x, scale, bias]) != info(eg, root).ty {
            return vec![];
        }
        let y = eg.add(KNode::op(op, &[x, scale, bias]));
        merged(eg, y, root)
    }
}

/// Recovers `attention(q, k_t, v) {scale}` from `matmul(softmax(s), v)` where the scores `s` are
/// `matmul(q, k_t)`, optionally times (or divided by) a scalar constant, with `q` and `k_t`
/// themselves optionally times scalar constants (PyTorch's export scales both by the square
/// root of the scale); all the scalars multiply into `scale`. Conditions: the softmax is along
/// the last axis; the scores, their scaled form and the softmax each had one use (so nothing is
/// computed twice); a scaled `q`/`k_t` is absorbed only when the scaling had one use; and the
/// attention op types to the root's exact type (equal batch dims, f32).
pub struct AttentionFromParts;

/// `(x, c)` when class `id` holds `x * c` or `c * x` (`x / c` gives `1/c`) with `c` a finite
/// scalar f32 constant.
fn scaled_by_const(eg: &EGraph, id: Id) -> Vec<(Id, f32)> {
    let mut out = vec![];
    for n in &eg[id].nodes {
        let KNode::Op {
            op: Op::Binary(b),
            args,
            ..
        } = n
        else {
            continue;
        };
        let c = |i: usize| info(eg, args[i]).scalar_f32().filter(|c| c.is_finite());
        match b {
            BinaryOp::Mul => {
                if let Some(c) = c(1) {
                    out.push((args[0], c));
                } else if let Some(c) = c(0) {
                    out.push((args[1], c));
                }
            }
            BinaryOp::Div => {
                if let Some(c) = c(1).filter(|&c| c != 0.0) {
                    out.push((args[0], 1.0 / c));
                }
            }
            _ => {}
        }
    }
    out
}

/// `(q, k_t)` of a `matmul(q, k_t)` node in class `id`.
fn matmul_args(eg: &EGraph, id: Id) -> Option<(Id, Id)> {
    eg[id].nodes.iter().find_map(|n| match n {
        KNode::Op {
            op: Op::MatMul,
            args,
            ..
        } => Some((args[0], args[1])),
        _ => None,
    })
}

impl Applier<KNode, super::TypeAnalysis> for AttentionFromParts {
    fn apply_one(
        &self,
        eg: &mut EGraph,
        root: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<KNode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let (s, vv) = (eg.find(subst[v("?s")]), eg.find(subst[v("?v")]));
        let root_ty = info(eg, root).ty.clone();
        let Some(rank) = root_ty.as_ref().and_then(|t| t.dims()).map(|d| d.len()) else {
            return vec![];
        };
        // The softmax over `s` that the root multiplies by `v`, along the last axis, used once.
        let softmax_ok = eg[root].nodes.iter().any(|n| match n {
            KNode::Op {
                op: Op::MatMul,
                args,
                ..
            } if eg.find(args[1]) == vv => {
                let p = eg.find(args[0]);
                info(eg, p).uses == 1
                    && eg[p].nodes.iter().any(|m| match m {
                        KNode::Op {
                            op: Op::Softmax { axis },
                            args,
                            ..
                        } => {
                            eg.find(args[0]) == s
                                && kestrel_ir::norm_axis(*axis, rank).ok() == Some(rank - 1)
                        }
                        _ => false,
                    })
            }
            _ => false,
        });
        if !softmax_ok || info(eg, s).uses != 1 {
            return vec![];
        }
        // The scores: matmul(q, k_t), or it times a scalar (itself used once).
        let (q, kt, mut scale) = if let Some((q, kt)) = matmul_args(eg, s) {
            (q, kt, 1.0f32)
        } else {
            let Some((q, kt, c)) = scaled_by_const(eg, s).into_iter().find_map(|(x, c)| {
                (info(eg, x).uses == 1)
                    .then(|| matmul_args(eg, x).map(|(q, kt)| (q, kt, c)))
                    .flatten()
            }) else {
                return vec![];
            };
            (q, kt, c)
        };
        // Scalar factors on q and k_t.
        let mut absorb = |x: Id| -> Id {
            match scaled_by_const(eg, x).first() {
                Some(&(y, c)) if info(eg, x).uses == 1 => {
                    scale *= c;
                    y
                }
                _ => x,
            }
        };
        let (q, kt) = (absorb(q), absorb(kt));
        if !scale.is_finite() {
            return vec![];
        }
        let op = Op::Attention { scale: F32(scale) };
        let args = [q, kt, vv];
        if root_ty.as_ref().map(|t| t.dtype) != Some(DType::F32)
            || infer_node(eg, &op, &args) != root_ty
        {
            return vec![];
        }
        let y = eg.add(KNode::op(op, &args));
        merged(eg, y, root)
    }
}

/// Family `attention`: scaled dot-product attention as one op.
pub fn attention_rules() -> Vec<Rule> {
    vec![
        // softmax(c · q @ k_t) @ v = attention{scale=c}(q, k_t, v)   (c: scalar factors anywhere)
        rw!("attention-from-parts"; "(matmul (softmax* ?s) ?v)" => { AttentionFromParts }),
    ]
}

fn is_scalar(eg: &EGraph, s: Subst, name: &str, want: f32, tol: f32) -> bool {
    info(eg, s[v(name)])
        .scalar_f32()
        .is_some_and(|x| (x - want).abs() <= tol)
}

fn cond_gelu(eg: &mut EGraph, _id: Id, s: &Subst) -> bool {
    is_scalar(eg, s.clone(), "?s", std::f32::consts::SQRT_2, 1e-6)
        && is_scalar(eg, s.clone(), "?one", 1.0, 0.0)
        && is_scalar(eg, s.clone(), "?half", 0.5, 0.0)
}

/// Family `epilogue`: activations and residual adds into the producing conv/gemm.
pub fn epilogue_rules() -> Vec<Rule> {
    let mut rules = vec![
        // relu(conv(..)) = conv(..){epilogue=relu}
        rw!("relu-into-epilogue"; "(relu ?c)" => { Fuse::act(UnaryOp::Relu) }),
        // clip{min,max}(y) = y{epilogue=clip(min, max)} (Relu6 is clip(0, 6))
        rw!("clip-attrs-into-epilogue"; "(clip* ?c)" => { Fuse::with(Act::FromRoot("clip")) }),
        // clip(y, lo, hi) = y{epilogue=clip(lo, hi)} (bounds as constant operands)
        rw!("clip-into-epilogue"; "(clip ?c ?lo ?hi)" => { Fuse::with(Act::Clip("?lo", Some("?hi"))) }),
        rw!("clip-min-into-epilogue"; "(clip ?c ?lo)" => { Fuse::with(Act::Clip("?lo", None)) }),
        // hard_swish(y) = y{epilogue=hard_swish}
        rw!("hard-swish-into-epilogue"; "(hard_swish ?c)" => { Fuse::act(UnaryOp::HardSwish) }),
        // hard_sigmoid{a,b}(y) = y{epilogue=hard_sigmoid(a, b)}
        rw!("hard-sigmoid-into-epilogue"; "(hard_sigmoid* ?c)" => { Fuse::with(Act::FromRoot("hard_sigmoid")) }),
        // sigmoid(y) = y{epilogue=sigmoid}
        rw!("sigmoid-into-epilogue"; "(sigmoid ?c)" => { Fuse::act(UnaryOp::Sigmoid) }),
    ];
    // y * sigmoid(y) = y{epilogue=silu}
    rules.extend(mirrored(
        "silu-into-epilogue",
        "(mul ?c (sigmoid ?c))",
        Fuse::silu(),
    ));
    rules.extend([
        // silu(y) = y{epilogue=silu}
        rw!("silu-op-into-epilogue"; "(silu ?c)" => { Fuse::act(UnaryOp::Silu) }),
        // gelu(y) = y{epilogue=gelu}
        rw!("gelu-into-epilogue"; "(gelu ?c)" => { Fuse::act(UnaryOp::Gelu { tanh_approx: false }) }),
    ]);
    // y + r = y{residual}(.., r)   (r of y's exact type)
    rules.extend(mirrored(
        "residual-into-epilogue",
        "(add ?c ?r)",
        Fuse::residual(),
    ));
    rules
}

/// `conv(x * s, w, ..)` with `s [1, C, 1, 1]` (a squeeze-and-excitation scale) becomes
/// `conv(x, w, b, .., s){channel_scale}`: the JIT scales the weights instead of the input, so
/// only when the weights are smaller than the input (and group 1, batch 1, mul used once).
#[derive(Clone)]
pub struct ChannelScale;

impl Applier<KNode, super::TypeAnalysis> for ChannelScale {
    fn apply_one(
        &self,
        eg: &mut EGraph,
        root: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<KNode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let (x, sc) = (subst[v("?x")], subst[v("?s")]);
        let (Some(xd), Some(sd)) = (
            info(eg, x).ty.as_ref().and_then(|t| t.dims()),
            info(eg, sc).ty.as_ref().and_then(|t| t.dims()),
        ) else {
            return vec![];
        };
        if xd.len() < 3
            || xd[0] != 1
            || sd.len() != xd.len()
            || sd[0] != 1
            || sd[1] != xd[1]
            || sd[2..].iter().any(|&d| d != 1)
            || info(eg, x).ty.as_ref().map(|t| t.dtype) != Some(DType::F32)
        {
            return vec![];
        }
        let x_elems: usize = xd.iter().product();
        let nodes = eg[root].nodes.clone();
        let mut changed = vec![];
        for n in nodes {
            let KNode::Op {
                op: Op::Conv(a),
                args,
                ..
            } = n
            else {
                continue;
            };
            let mul = args[0];
            let is_mul = eg[mul].nodes.iter().any(|m| {
                matches!(m, KNode::Op { op: Op::Binary(BinaryOp::Mul), args: ma, .. }
                    if (eg.find(ma[0]) == eg.find(x) && eg.find(ma[1]) == eg.find(sc))
                        || (eg.find(ma[1]) == eg.find(x) && eg.find(ma[0]) == eg.find(sc)))
            });
            let Some(wd) = info(eg, args[1]).ty.as_ref().and_then(|t| t.dims()) else {
                continue;
            };
            let w_elems: usize = wd.iter().product();
            if !is_mul
                || info(eg, mul).uses != 1
                || a.group != 1
                || a.epilogue.channel_scale
                || w_elems >= x_elems
            {
                continue;
            }
            let mut new_args: Vec<Id> = args.to_vec();
            new_args[0] = x;
            if new_args.len() == 2 {
                let z = eg.add(KNode::Const(zeros(wd[0])));
                new_args.push(z);
            }
            new_args.push(sc);
            let mut na = a.clone();
            na.epilogue.channel_scale = true;
            let op = Op::Conv(na);
            if infer_node(eg, &op, &new_args) != info(eg, root).ty {
                continue;
            }
            let id = eg.add(KNode::op(op, &new_args));
            if eg.union(id, root) {
                changed.push(id);
            }
        }
        changed
    }
}

/// Family `se`: the channel-wise multiply of squeeze-and-excitation blocks into the next conv.
pub fn se_rules() -> Vec<Rule> {
    // conv(x * s, w, b) = conv(x, w, b, s){channel_scale}   (s: [1, C, 1, 1])
    let [conv, conv_2] = mirrored("se-scale-into-conv", "(conv* (mul ?x ?s) ?w)", ChannelScale);
    let [b, b_2] = mirrored(
        "se-scale-into-conv-b",
        "(conv* (mul ?x ?s) ?w ?b)",
        ChannelScale,
    );
    let [br, br_2] = mirrored(
        "se-scale-into-conv-br",
        "(conv* (mul ?x ?s) ?w ?b ?r)",
        ChannelScale,
    );
    vec![conv, b, br, conv_2, b_2, br_2]
}

/// Family `linear`: matmul + bias as gemm, and moving element-wise ops through the reshapes
/// around it so they reach the gemm's epilogue.
pub fn linear_rules() -> Vec<Rule> {
    // add(matmul(x, W), b) = reshape(gemm(reshape(x, [M,K]), W, b), shape)
    let mut rules = Vec::from(mirrored(
        "matmul-bias-to-gemm",
        "(add (matmul ?x ?w) ?b)",
        MatMulBiasToGemm,
    ));
    rules.extend([
        // gelu(reshape(g, s)) = reshape(gelu(g), s)   (element-wise commutes with reshape)
        rw!("gelu-through-reshape"; "(gelu (reshape ?g ?s))" => "(reshape (gelu ?g) ?s)"),
        rw!("relu-through-reshape"; "(relu (reshape ?g ?s))" => "(reshape (relu ?g) ?s)"),
    ]);
    // reshape(g, s) + r = reshape(g + reshape(r, shape(g)), s)
    rules.extend(mirrored(
        "residual-through-reshape",
        "(add (reshape ?g ?s) ?r)",
        ResidualThroughReshape,
    ));
    rules
}

/// Family `recover`: ops written out by exporters, recognised again.
pub fn recover_rules() -> Vec<Rule> {
    // x * (erf(x / sqrt 2) + 1) * 0.5 = gelu(x)   (-2: the outer mul mirrored)
    let gelu = ConditionalApplier {
        condition: cond_gelu,
        applier: "(gelu ?x)".parse::<Pattern<KNode>>().expect("pattern"),
    };
    let [gelu_1, gelu_2] = mirrored(
        "gelu-from-erf",
        "(mul (mul ?x (add (erf (div ?x ?s)) ?one)) ?half)",
        gelu,
    );
    vec![
        gelu_1,
        gelu_2,
        rw!("gelu-from-erf-3"; "(mul (mul ?x (add ?one (erf (div ?x ?s)))) ?half)" => "(gelu ?x)" if cond_gelu),
        rw!("gelu-from-erf-4"; "(mul ?x (mul (add (erf (div ?x ?s)) ?one) ?half))" => "(gelu ?x)" if cond_gelu),
        // (x - mean x) / sqrt(mean((x - mean x)^2) + eps) * scale + bias = layer_norm(x, scale, bias)
        rw!("layer-norm-from-parts"; "(add (mul (div (sub ?x (reduce_mean ?x ?ax)) (sqrt (add (reduce_mean (pow (sub ?x (reduce_mean ?x ?ax)) ?two) ?ax) ?eps))) ?scale) ?bias)" => { LayerNormFromParts }),
    ]
}

/// Every fusion rule (the `fuse` pass).
pub fn fusion_rules() -> Vec<Rule> {
    let mut r = recover_rules();
    r.extend(linear_rules());
    r.extend(epilogue_rules());
    r.extend(se_rules());
    r.extend(map_rules());
    r.extend(attention_rules());
    r
}

/// Largest map program the `map` family builds (instructions).
pub const MAX_MAP_LEN: usize = 48;

/// An element-wise e-node as a map program over its arguments (allowed ops only).
fn as_program(n: &KNode) -> Option<(MapProgram, Vec<Id>)> {
    let KNode::Op { op, args, .. } = n else {
        return None;
    };
    let code = match op {
        Op::Unary(u) if MapProgram::unary_ok(*u) => {
            vec![MapInstr::Input(0), MapInstr::Unary(*u, 0)]
        }
        Op::Binary(b) if MapProgram::binary_ok(*b) => vec![
            MapInstr::Input(0),
            MapInstr::Input(1),
            MapInstr::Binary(*b, 0, 1),
        ],
        Op::Map(p) => p.code.clone(),
        _ => return None,
    };
    Some((MapProgram { code }, args.to_vec()))
}

/// The longest map program among the f32 nodes of class `c`.
fn best_program(eg: &EGraph, c: Id) -> Option<(MapProgram, Vec<Id>)> {
    if info(eg, c)
        .ty
        .as_ref()
        .is_none_or(|t| t.dtype != DType::F32)
    {
        return None;
    }
    eg[c]
        .nodes
        .iter()
        .filter_map(as_program)
        .max_by_key(|(p, _)| p.code.len())
}

/// Whether argument class `c` of an element-wise node of type `ty` can be inlined: it is not a
/// constant, has one use, the same type (no broadcasting, so nothing is computed twice) and an
/// element-wise node.
fn inlinable(
    eg: &EGraph,
    c: Id,
    ty: &Option<kestrel_ir::TensorType>,
) -> Option<(MapProgram, Vec<Id>)> {
    let d = info(eg, c);
    if d.is_const || d.uses != 1 || &d.ty != ty {
        return None;
    }
    best_program(eg, c)
}

/// Inlines `child` (program and args) for argument `j` of `root`; then drops unused and
/// duplicate arguments.
fn inline(
    root: &(MapProgram, Vec<Id>),
    j: usize,
    child: &(MapProgram, Vec<Id>),
) -> Option<(MapProgram, Vec<Id>)> {
    let (p, args) = root;
    let (q, cargs) = child;
    if matches!(p.code.last(), Some(MapInstr::Input(_)) | None) {
        return None;
    }
    let n = args.len() as u16;
    let mut code: Vec<MapInstr> = q
        .code
        .iter()
        .map(|&i| match i {
            MapInstr::Input(k) => MapInstr::Input(k + n),
            other => other,
        })
        .collect();
    let rq = (code.len() - 1) as u16;
    let mut map: Vec<u16> = Vec::with_capacity(p.code.len());
    for &i in &p.code {
        let r = |x: u16, map: &Vec<u16>| map[x as usize];
        match i {
            MapInstr::Input(k) if k as usize == j => map.push(rq),
            other => {
                let ins = match other {
                    MapInstr::Unary(u, a) => MapInstr::Unary(u, r(a, &map)),
                    MapInstr::Binary(b, x, y) => MapInstr::Binary(b, r(x, &map), r(y, &map)),
                    keep => keep,
                };
                map.push(code.len() as u16);
                code.push(ins);
            }
        }
    }
    let mut all = args.clone();
    all.extend(cargs);
    // Compact the inputs: first use order, duplicates merged, unused (argument j) dropped.
    let mut new_args: Vec<Id> = Vec::new();
    let mut code2 = Vec::with_capacity(code.len());
    for i in code {
        code2.push(match i {
            MapInstr::Input(k) => {
                let id = all[k as usize];
                let pos = new_args.iter().position(|&a| a == id).unwrap_or_else(|| {
                    new_args.push(id);
                    new_args.len() - 1
                });
                MapInstr::Input(pos as u16)
            }
            other => other,
        });
    }
    (code2.len() <= MAX_MAP_LEN).then_some((MapProgram { code: code2 }, new_args))
}

/// Searcher of the `map` family: classes with an element-wise node one of whose arguments is
/// an inlinable element-wise class.
pub struct ElementwiseChain;

impl egg::Searcher<KNode, super::TypeAnalysis> for ElementwiseChain {
    fn search_eclass_with_limit(
        &self,
        eg: &EGraph,
        eclass: Id,
        _limit: usize,
    ) -> Option<egg::SearchMatches<'_, KNode>> {
        let ty = &info(eg, eclass).ty;
        let (_, args) = best_program(eg, eclass)?;
        args.iter()
            .any(|&a| inlinable(eg, a, ty).is_some())
            .then(|| egg::SearchMatches {
                eclass,
                substs: vec![Subst::default()],
                ast: None,
            })
    }

    fn vars(&self) -> Vec<Var> {
        vec![]
    }
}

/// Applier of the `map` family: the class's longest program with every inlinable argument
/// inlined, as one `map` node.
pub struct FuseIntoMap;

impl Applier<KNode, super::TypeAnalysis> for FuseIntoMap {
    fn apply_one(
        &self,
        eg: &mut EGraph,
        root: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<KNode>>,
        _rule: Symbol,
    ) -> Vec<Id> {
        let ty = info(eg, root).ty.clone();
        let Some(mut cur) = best_program(eg, root) else {
            return vec![];
        };
        let (mut j, mut steps) = (0, 0);
        while j < cur.1.len() && steps < MAX_MAP_LEN {
            let a = cur.1[j];
            match inlinable(eg, a, &ty).and_then(|child| inline(&cur, j, &child)) {
                // Arguments were renumbered: start over (bounded by `steps`).
                Some(next) => {
                    cur = next;
                    j = 0;
                    steps += 1;
                }
                None => j += 1,
            }
        }
        let op = Op::Map(cur.0);
        if infer_node(eg, &op, &cur.1) != ty {
            return vec![];
        }
        let id = eg.add(KNode::op(op, &cur.1));
        merged(eg, id, root)
    }
}

/// Family `map`: chains of element-wise ops of one shape into one `map` kernel.
pub fn map_rules() -> Vec<Rule> {
    // op_k(.., op_j(..), ..) = map{op_k ∘ op_j}(..)   (op_j's value used once, same shape)
    vec![Rule::new("elementwise-chain-into-map", ElementwiseChain, FuseIntoMap).expect("rule")]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The left-hand side of every fusion rule, by name.
    fn lhs_of(name: &str) -> String {
        let rules = fusion_rules();
        let rule = rules
            .iter()
            .find(|r| r.name.as_str() == name)
            .unwrap_or_else(|| panic!("no rule {name}"));
        rule.searcher
            .get_pattern_ast()
            .expect("a pattern")
            .to_string()
    }

    #[test]
    fn mirrored_rules_swap_the_outermost_commutative_operands() {
        let cases = [
            ("silu-into-epilogue-2", "(mul (sigmoid ?c) ?c)"),
            ("residual-into-epilogue-2", "(add ?r ?c)"),
            ("matmul-bias-to-gemm-2", "(add ?b (matmul ?x ?w))"),
            ("residual-through-reshape-2", "(add ?r (reshape ?g ?s))"),
            ("se-scale-into-conv-2", "(conv* (mul ?s ?x) ?w)"),
            ("se-scale-into-conv-b-2", "(conv* (mul ?s ?x) ?w ?b)"),
            ("se-scale-into-conv-br-2", "(conv* (mul ?s ?x) ?w ?b ?r)"),
            (
                "gelu-from-erf-2",
                "(mul ?half (mul ?x (add (erf (div ?x ?s)) ?one)))",
            ),
        ];
        for (name, want) in cases {
            assert_eq!(lhs_of(name), want, "{name}");
        }
        assert_eq!(lhs_of("se-scale-into-conv"), "(conv* (mul ?x ?s) ?w)");
    }
}
