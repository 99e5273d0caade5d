//! Inserting the QDQ pairs: the rewrite of [`apply`].

use super::params::{self, ActivationParams};
use super::plan::{Layer, Plan};
use super::QuantizeError;
use kestrel_ir::{DType, Graph, Op, PoolKind, Tensor, ValueDef, ValueId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The calibrated range of one activation tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    pub min: f32,
    pub max: f32,
}

/// Ranges by tensor: what calibration hands to [`apply`]. Keys are values of the graph the
/// [`Plan`] was made for.
pub type Ranges = BTreeMap<ValueId, Range>;

/// What [`apply`] quantizes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantizeOptions {
    /// One weight scale per tensor instead of one per output channel.
    pub per_tensor: bool,
    /// Layers (by [`Layer::name`]) left in float.
    pub exclude: Vec<String>,
    /// Weights on a symmetric grid of this many bits (2..=8): `q` in `±(2^(bits-1) - 1)`,
    /// stored as int8 whatever the width, so every int8 path takes them unchanged.
    pub weight_bits: u32,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            per_tensor: false,
            exclude: Vec::new(),
            weight_bits: 8,
        }
    }
}

/// What [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The quantized layers, in node order.
    pub quantized: Vec<String>,
    /// The layers left in float (`exclude`), in node order.
    pub float: Vec<String>,
    /// QuantizeLinear/DequantizeLinear pairs inserted on activations.
    pub activation_pairs: usize,
    /// `(int8 constant, float constant it quantizes)` of every weight, by constant name: how
    /// [`super::qat::originals`] finds the float weights quantization-aware training starts from.
    pub weight_sources: Vec<(String, String)>,
}

/// Ops through which an activation's quantization carries over unchanged: their output
/// values lie in the input's range and keep its grid, so the output of one whose input is
/// quantized is quantized with the input's parameters (onnxruntime's "direct 8-bit" ops:
/// max and average pooling, reshapes, transpose, slice, identity).
fn carries_quantization(op: &Op) -> bool {
    match op {
        Op::Pool(p) => matches!(p.kind, PoolKind::Max | PoolKind::Average),
        Op::GlobalPool(PoolKind::Max) => true,
        Op::Transpose { .. } | Op::Slice | Op::Identity => true,
        op => op.is_reshape(),
    }
}

/// The data input of the node defining `v` when that node carries quantization over from it
/// ([`carries_quantization`], other inputs constant).
pub(super) fn carried_from(g: &Graph, v: ValueId) -> Option<ValueId> {
    let node = g.node(g.producer(v)?);
    if !carries_quantization(&node.op) || node.outputs.len() != 1 {
        return None;
    }
    let x = *node.inputs.first()?;
    let others_const = node.inputs[1..].iter().all(|&i| g.const_data(i).is_some());
    (g.ty(x).dtype == DType::F32 && others_const).then_some(x)
}

/// The tensor whose parameters `t` uses: the farthest tensor of `quantized` reached from `t`
/// through ops that carry quantization, or `t` itself.
fn parameter_source(g: &Graph, quantized: &HashSet<ValueId>, t: ValueId) -> ValueId {
    let (mut source, mut x) = (t, t);
    while let Some(up) = carried_from(g, x) {
        if quantized.contains(&up) {
            source = up;
        }
        x = up;
    }
    source
}

/// A readable base name for `v`: its own name, its producer's name, or `t<id>`.
fn base_name(g: &Graph, v: ValueId) -> String {
    if let Some(n) = &g.value(v).name {
        if !n.is_empty() {
            return n.clone();
        }
    }
    match g.producer(v) {
        Some(n) if !g.node(n).name.is_empty() => format!("{}_output", g.node(n).name),
        _ => format!("t{}", v.0),
    }
}

/// Names not yet used by any value of the graph.
pub(super) struct Namer {
    used: HashSet<String>,
}

impl Namer {
    pub(super) fn new(g: &Graph) -> Namer {
        let mut used = HashSet::new();
        for v in &g.values {
            if let Some(n) = &v.name {
                used.insert(n.clone());
            }
            if let ValueDef::Const(c) = &v.def {
                used.insert(c.name.clone());
            }
        }
        Namer { used }
    }

    pub(super) fn fresh(&mut self, name: String) -> String {
        let mut candidate = name.clone();
        let mut k = 0;
        while !self.used.insert(candidate.clone()) {
            k += 1;
            candidate = format!("{name}_{k}");
        }
        candidate
    }
}

/// Where a node added by the rewrite goes in node order.
#[derive(Clone, Copy)]
enum Place {
    /// Before every original node (the quantization of a graph input).
    Start,
    /// Right after original node `i`.
    After(usize),
    /// Right before original node `i`.
    Before(usize),
}

/// The rewrite under way: the graph, names in use and where new nodes go.
struct Rewriter<'g> {
    g: &'g mut Graph,
    namer: Namer,
    original_nodes: usize,
    placed: Vec<(Place, usize)>,
}

impl Rewriter<'_> {
    fn constant(&mut self, name: String, data: Tensor) -> ValueId {
        let name = self.namer.fresh(name);
        self.g.add_const(name, data)
    }

    fn node(
        &mut self,
        place: Place,
        op: Op,
        inputs: &[ValueId],
        name: String,
    ) -> Result<ValueId, QuantizeError> {
        let name = self.namer.fresh(name);
        let index = self.g.nodes.len();
        let out = self.g.add(op, inputs, name.clone())?;
        self.g.values[out.index()].name = Some(self.namer.fresh(format!("{name}_Output")));
        self.placed.push((place, index));
        Ok(out)
    }

    /// Puts the added nodes at their places and fixes the values' definitions.
    fn finish(self) -> Result<(), QuantizeError> {
        let n = self.original_nodes;
        let mut start = Vec::new();
        let mut before: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut after: HashMap<usize, Vec<usize>> = HashMap::new();
        for (place, index) in self.placed {
            match place {
                Place::Start => start.push(index),
                Place::Before(i) => before.entry(i).or_default().push(index),
                Place::After(i) => after.entry(i).or_default().push(index),
            }
        }
        let mut order = start;
        for i in 0..n {
            order.extend(before.remove(&i).unwrap_or_default());
            order.push(i);
            order.extend(after.remove(&i).unwrap_or_default());
        }
        let mut old: Vec<Option<kestrel_ir::Node>> = self.g.nodes.drain(..).map(Some).collect();
        for i in order {
            if let Some(node) = old[i].take() {
                self.g.nodes.push(node);
            }
        }
        for (ni, node) in self.g.nodes.iter().enumerate() {
            for (index, &o) in node.outputs.iter().enumerate() {
                self.g.values[o.index()].def = ValueDef::Node {
                    node: kestrel_ir::NodeId(ni as u32),
                    index,
                };
            }
        }
        self.g.sort_topologically()?;
        self.g.compact();
        Ok(())
    }
}

/// The quantization of a weight: its DequantizeLinear output and its scales.
struct WeightDq {
    value: ValueId,
    scales: Vec<f32>,
    /// `(int8 constant name, float constant name)`.
    source: (String, String),
}

/// Quantizes the layers of `plan` (made for `g`) not excluded by `opts`, with the activation
/// ranges `ranges` (those of [`Plan::calibration_tensors`] for the same exclusions, or more).
///
/// For each selected layer: its input and its output tensor ([`Layer::output`]) become
/// `DequantizeLinear(QuantizeLinear(t))` (u8, per tensor; one pair per tensor, read by every
/// user of `t` and by the graph outputs); a tensor reached from another quantized tensor only
/// through max/average pooling, reshapes, transpose, slice or identity takes that tensor's
/// parameters instead of its own range; the weight becomes an s8 constant and a
/// DequantizeLinear (per output channel, or per tensor with `opts.per_tensor`); the bias an i32
/// constant at scale `s_x · s_w` and a DequantizeLinear (a Gemm's `beta` is folded into it).
/// New constants are named `<tensor>_scale`, `<tensor>_zero_point`, `<tensor>_quantized`.
/// Constants that nothing uses any more are dropped, so values are renumbered.
pub fn apply(
    g: &mut Graph,
    plan: &Plan,
    ranges: &Ranges,
    opts: &QuantizeOptions,
) -> Result<Applied, QuantizeError> {
    plan.check_exclude(&opts.exclude)?;
    let selected: Vec<&Layer> = plan.selected(&opts.exclude).collect();
    if selected.is_empty() {
        return Err(QuantizeError::NothingToQuantize {
            excluded: opts.exclude.len(),
        });
    }
    let mut tensors = Vec::new();
    let mut quantized = HashSet::new();
    for l in &selected {
        for &t in l.inputs.iter().chain([&l.output]) {
            if quantized.insert(t) {
                tensors.push(t);
            }
        }
    }
    let sources: Vec<ValueId> = tensors
        .iter()
        .map(|&t| parameter_source(g, &quantized, t))
        .collect();
    // Taken on the graph as given: the rewrite cuts the chains `parameter_source` follows.
    let source_of: HashMap<ValueId, ValueId> = tensors
        .iter()
        .copied()
        .zip(sources.iter().copied())
        .collect();
    let mut act_params: HashMap<ValueId, ActivationParams> = HashMap::new();
    for &s in &sources {
        if act_params.contains_key(&s) {
            continue;
        }
        let tensor = base_name(g, s);
        let r = ranges.get(&s).ok_or(QuantizeError::MissingRange {
            tensor: tensor.clone(),
            value: s,
        })?;
        if !r.min.is_finite() || !r.max.is_finite() || r.min > r.max {
            return Err(QuantizeError::BadRange {
                tensor,
                min: r.min,
                max: r.max,
            });
        }
        act_params.insert(s, params::activation_params(r.min, r.max));
    }

    // Uses of each quantized tensor in the graph as given: (node, input slot), graph outputs.
    let mut node_uses: HashMap<ValueId, Vec<(usize, usize)>> = HashMap::new();
    for (ni, n) in g.nodes.iter().enumerate() {
        for (slot, &i) in n.inputs.iter().enumerate() {
            if quantized.contains(&i) {
                node_uses.entry(i).or_default().push((ni, slot));
            }
        }
    }

    let original_nodes = g.nodes.len();
    let mut rw = Rewriter {
        namer: Namer::new(g),
        g,
        original_nodes,
        placed: Vec::new(),
    };

    // Activations.
    let mut consts: HashMap<ValueId, (ValueId, ValueId)> = HashMap::new();
    for (&t, &source) in tensors.iter().zip(&sources) {
        let p = act_params[&source];
        let (scale, zero_point) = match consts.get(&source) {
            Some(&c) => c,
            None => {
                let base = base_name(rw.g, source);
                let s = rw.constant(format!("{base}_scale"), Tensor::scalar(p.scale));
                let z = rw.constant(format!("{base}_zero_point"), Tensor::scalar(p.zero_point));
                consts.insert(source, (s, z));
                (s, z)
            }
        };
        let place = match rw.g.value(t).def {
            ValueDef::Node { node, .. } => Place::After(node.index()),
            _ => Place::Start,
        };
        let base = base_name(rw.g, t);
        let q = rw.node(
            place,
            Op::QuantizeLinear {
                axis: 1,
                to: DType::U8,
            },
            &[t, scale, zero_point],
            format!("{base}_QuantizeLinear"),
        )?;
        let dq = rw.node(
            place,
            Op::DequantizeLinear { axis: 1 },
            &[q, scale, zero_point],
            format!("{base}_DequantizeLinear"),
        )?;
        for &(ni, slot) in node_uses.get(&t).into_iter().flatten() {
            rw.g.nodes[ni].inputs[slot] = dq;
        }
        for o in rw.g.outputs.iter_mut() {
            if o.value == t {
                o.value = dq;
            }
        }
    }

    // Weights and biases.
    let mut weights: HashMap<ValueId, WeightDq> = HashMap::new();
    let mut weight_sources = Vec::new();
    for l in &selected {
        let ni = l.node.index();
        let place = Place::Before(ni);
        let Some(weight) = l.weight else {
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(e) = weights.entry(weight) {
            e.insert(quantize_weight(
                &mut rw,
                weight,
                l.weight_axis,
                place,
                opts.per_tensor,
                opts.weight_bits,
            )?);
            weight_sources.push(weights[&weight].source.clone());
        }
        let w = &weights[&weight];
        rw.g.nodes[ni].inputs[1] = w.value;
        if let Some(b) = l.bias {
            let input_scale = act_params[&source_of[&l.inputs[0]]].scale;
            let scales = params::bias_scales(input_scale, &w.scales);
            let beta = match &rw.g.nodes[ni].op {
                Op::Gemm(a) => a.beta.0,
                _ => 1.0,
            };
            let data: Vec<f32> =
                rw.g.const_data(b)
                    .map(|t| t.to_f32_vec())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v * beta)
                    .collect();
            let len = data.len();
            let q = params::quantize_bias(&data, &scales);
            let base = base_name(rw.g, b);
            let per_channel = scales.len() > 1;
            let dims = if per_channel { vec![len] } else { vec![] };
            let bq = rw.constant(format!("{base}_quantized"), Tensor::from_vec(vec![len], q));
            let s = rw.constant(
                format!("{base}_scale"),
                Tensor::from_vec(dims.clone(), scales.clone()),
            );
            let z = rw.constant(
                format!("{base}_zero_point"),
                Tensor::from_vec(dims, vec![0i32; if per_channel { len } else { 1 }]),
            );
            let axis = if per_channel { 0 } else { 1 };
            let dq = rw.node(
                place,
                Op::DequantizeLinear { axis },
                &[bq, s, z],
                format!("{base}_DequantizeLinear"),
            )?;
            let mut inputs: Vec<ValueId> = rw.g.nodes[ni].inputs.to_vec();
            inputs[2] = dq;
            let op = match &rw.g.nodes[ni].op {
                Op::Gemm(a) => Op::Gemm(kestrel_ir::GemmAttrs {
                    beta: kestrel_ir::F32(1.0),
                    ..a.clone()
                }),
                op => op.clone(),
            };
            rw.g.set_node_op(l.node, op, &inputs)?;
        }
    }
    let activation_pairs = tensors.len();
    rw.finish()?;
    Ok(Applied {
        quantized: selected.iter().map(|l| l.name.clone()).collect(),
        float: plan
            .layers
            .iter()
            .filter(|l| opts.exclude.contains(&l.name))
            .map(|l| l.name.clone())
            .collect(),
        activation_pairs,
        weight_sources,
    })
}

/// The s8 constant, scales, zero points and DequantizeLinear of the constant weight `weight`,
/// its channels along `weight_axis`.
fn quantize_weight(
    rw: &mut Rewriter,
    weight: ValueId,
    weight_axis: usize,
    place: Place,
    per_tensor: bool,
    weight_bits: u32,
) -> Result<WeightDq, QuantizeError> {
    let t =
        rw.g.const_data(weight)
            .cloned()
            .expect("a layer's weight is a constant with data");
    let axis = (!per_tensor).then_some(weight_axis);
    let q = params::quantize_weight_bits(&t.to_f32_vec(), t.dims(), axis, weight_bits);
    let base = base_name(rw.g, weight);
    let channels = q.scales.len();
    let dims = if per_tensor { vec![] } else { vec![channels] };
    let wq = rw.constant(
        format!("{base}_quantized"),
        Tensor::from_vec(t.dims().to_vec(), q.data),
    );
    let s = rw.constant(
        format!("{base}_scale"),
        Tensor::from_vec(dims.clone(), q.scales.clone()),
    );
    let z = rw.constant(
        format!("{base}_zero_point"),
        Tensor::from_vec(dims, vec![0i8; channels]),
    );
    let axis = if per_tensor { 1 } else { weight_axis as i64 };
    let value = rw.node(
        place,
        Op::DequantizeLinear { axis },
        &[wq, s, z],
        format!("{base}_DequantizeLinear"),
    )?;
    let name_of = |g: &Graph, v: ValueId| match &g.value(v).def {
        ValueDef::Const(c) => c.name.clone(),
        _ => unreachable!("a constant"),
    };
    Ok(WeightDq {
        value,
        scales: q.scales,
        source: (name_of(rw.g, wq), name_of(rw.g, weight)),
    })
}
