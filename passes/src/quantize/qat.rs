//! Quantization-aware training: the trainable form of a QDQ graph, and back
//! (docs/TRAINING.md "Quantization-aware training").
//!
//! [`prepare`] turns the graph [`super::apply`] writes (or any QDQ graph whose layers read int8
//! weights through DequantizeLinear) into one a training loop can train: each int8 weight
//! becomes a float constant followed by a clamp to its grid and a fake-quantization pair
//! `DequantizeLinear(QuantizeLinear(·))` at the scales calibration chose, so the forward pass
//! sees exactly the weights the integer model will have, while autodiff's straight-through
//! estimator lets the gradient reach the float weight. Int32 biases become float constants.
//! Activation QDQ pairs stay as they are (their gradient is the same estimator's).
//! [`Prepared::finalize`] writes the trained floats back as int8 weights and int32 biases at the
//! same scales: the QDQ form `apply` writes, which ONNX export, `fold-qdq` and the integer
//! kernels take unchanged.

use super::rewrite::{Applied, Namer};
use super::QuantizeError;
use kestrel_ir::{BinaryOp, DType, Graph, Op, Tensor, ValueDef, ValueId};
use std::collections::{HashMap, HashSet};

/// A weight [`prepare`] made trainable.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeQuantWeight {
    /// The trainable float constant.
    pub name: String,
    /// The name of the QuantizeLinear node that fake-quantizes it.
    pub quantize_node: String,
    /// The name [`Prepared::finalize`] gives the int8 constant.
    pub quantized_name: String,
    /// The scale and zero point (scalars, or one per channel along `axis`).
    pub scale: Vec<f32>,
    pub zero_point: Vec<i8>,
    pub axis: usize,
    /// The grid: `q` in `[-bound, bound]` (`2^(bits-1) - 1` for a weight of `bits` bits).
    pub bound: i32,
    /// The constants holding the grid's ends in float (`(-bound - zp)·s`, `(bound - zp)·s`),
    /// which the clamp before the QuantizeLinear reads; not trained.
    pub clip_min: String,
    pub clip_max: String,
}

/// An int32 bias [`prepare`] turned into a float constant.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatBias {
    pub name: String,
    pub quantized_name: String,
    pub scale: Tensor,
    pub zero_point: Tensor,
    pub axis: i64,
}

/// The trainable graph and what [`Prepared::finalize`] needs to quantize it back.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub graph: Graph,
    pub weights: Vec<FakeQuantWeight>,
    pub biases: Vec<FloatBias>,
}

/// The float weights `apply` quantized, keyed by the int8 constant's name, from the graph as it
/// was before `apply` (`float`) and what `apply` reported.
pub fn originals(float: &Graph, applied: &Applied) -> HashMap<String, Tensor> {
    let by_name: HashMap<&str, &Tensor> = float
        .values
        .iter()
        .filter_map(|v| match &v.def {
            ValueDef::Const(c) => c.data.as_ref().map(|d| (c.name.as_str(), d)),
            _ => None,
        })
        .collect();
    applied
        .weight_sources
        .iter()
        .filter_map(|(q, f)| by_name.get(f.as_str()).map(|&t| (q.clone(), t.clone())))
        .collect()
}

fn const_name(g: &Graph, v: ValueId) -> Option<&str> {
    match &g.value(v).def {
        ValueDef::Const(c) => Some(&c.name),
        _ => None,
    }
}

fn stem(name: &str) -> String {
    name.strip_suffix("_quantized").unwrap_or(name).to_string()
}

/// The DequantizeLinear node defining `v`, with a constant input of `dtype` and constant
/// parameters: `(node index, data, scale, zero point, axis)`.
fn constant_dequantize(
    g: &Graph,
    v: ValueId,
    dtype: DType,
) -> Option<(usize, ValueId, Tensor, Option<Tensor>, i64)> {
    let ni = g.producer(v)?;
    let n = g.node(ni);
    let Op::DequantizeLinear { axis } = n.op else {
        return None;
    };
    let data = n.inputs[0];
    if g.ty(data).dtype != dtype || g.const_data(data).is_none() {
        return None;
    }
    let scale = g.const_data(*n.inputs.get(1)?)?.clone();
    let zero = match n.inputs.get(2) {
        Some(&z) => Some(g.const_data(z)?.clone()),
        None => None,
    };
    Some((ni.index(), data, scale, zero, axis))
}

/// The trainable form of `qdq` (see the module comment). Each weight starts from its float
/// value in `originals` (keyed by the int8 constant's name, [`originals`]) when there, else
/// from its dequantized int8 values; its grid is the narrowest `2^(bits-1) - 1` holding its
/// int8 values (the bits `--weight-bits` chose). Fails when no layer reads int8 weights.
pub fn prepare(
    qdq: &Graph,
    originals: &HashMap<String, Tensor>,
) -> Result<Prepared, QuantizeError> {
    let mut g = qdq.clone();
    let mut namer = Namer::new(&g);
    for n in &g.nodes {
        namer.fresh(n.name.clone());
    }
    let mut weights = Vec::new();
    let mut biases = Vec::new();
    // DequantizeLinear nodes already rewritten: weights (shared by the layers reading them),
    // and biases, to their new float constant.
    let mut weights_done: HashSet<usize> = HashSet::new();
    let mut done: HashMap<usize, ValueId> = HashMap::new();
    let layers: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| matches!(g.nodes[i].op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul))
        .collect();
    for li in layers {
        let inputs = g.nodes[li].inputs.to_vec();
        if let Some(&w) = inputs.get(1) {
            if let Some((dq, data, scale, zero, axis)) = constant_dequantize(&g, w, DType::I8) {
                if weights_done.insert(dq) {
                    let name = const_name(&g, data).unwrap_or("weight").to_string();
                    let fq = fake_quant_weight(
                        &mut g,
                        &mut namer,
                        dq,
                        (data, &name),
                        (&scale, zero.as_ref(), axis),
                        originals.get(&name),
                    )?;
                    weights.push(fq);
                }
            }
        }
        if let Some(&b) = inputs.get(2) {
            if let Some((dq, data, scale, zero, axis)) = constant_dequantize(&g, b, DType::I32) {
                let float = match done.get(&dq) {
                    Some(&f) => f,
                    None => {
                        let name = const_name(&g, data).unwrap_or("bias").to_string();
                        let values = dequantize(
                            g.const_data(data).expect("checked constant"),
                            &scale,
                            zero.as_ref(),
                            axis,
                        );
                        let float_name = namer.fresh(stem(&name));
                        let f = g.add_const(float_name.clone(), values);
                        biases.push(FloatBias {
                            name: float_name,
                            quantized_name: name,
                            zero_point: zero.unwrap_or_else(|| {
                                Tensor::from_vec(scale.dims().to_vec(), vec![0i32; scale.numel()])
                            }),
                            scale,
                            axis,
                        });
                        done.insert(dq, f);
                        f
                    }
                };
                let node = &mut g.nodes[li];
                node.inputs[2] = float;
            }
        }
    }
    if weights.is_empty() {
        return Err(QuantizeError::NothingToQuantize { excluded: 0 });
    }
    g.sort_topologically()?;
    g.remove_dead_nodes();
    g.compact();
    Ok(Prepared {
        graph: g,
        weights,
        biases,
    })
}

/// Per-element parameter index of a tensor of `dims` for parameters of `n` values along `axis`.
fn channel_of(dims: &[usize], n: usize, axis: usize) -> impl Fn(usize) -> usize {
    let inner: usize = if n > 1 {
        dims[axis + 1..].iter().product()
    } else {
        1
    };
    move |i| if n > 1 { (i / inner.max(1)) % n } else { 0 }
}

fn norm_axis(axis: i64, rank: usize) -> usize {
    if axis < 0 {
        (axis + rank as i64).max(0) as usize
    } else {
        axis as usize
    }
}

/// `(q - zp)·s` as f32.
fn dequantize(q: &Tensor, scale: &Tensor, zero: Option<&Tensor>, axis: i64) -> Tensor {
    let s = scale.to_f32_vec();
    let z = zero.map_or(vec![0.0; s.len()], |z| z.to_f32_vec());
    let ch = channel_of(q.dims(), s.len(), norm_axis(axis, q.dims().len()));
    let values: Vec<f32> = q
        .to_f32_vec()
        .iter()
        .enumerate()
        .map(|(i, &v)| (v - z[ch(i)]) * s[ch(i)])
        .collect();
    Tensor::from_vec(q.dims().to_vec(), values)
}

/// Replaces the int8 constant of DequantizeLinear node `dq` by `float → clamp → QuantizeLinear`.
fn fake_quant_weight(
    g: &mut Graph,
    namer: &mut Namer,
    dq: usize,
    (data, name): (ValueId, &str),
    (scale, zero, axis): (&Tensor, Option<&Tensor>, i64),
    original: Option<&Tensor>,
) -> Result<FakeQuantWeight, QuantizeError> {
    let q = g.const_data(data).expect("checked constant").clone();
    let dims = q.dims().to_vec();
    let rank = dims.len();
    let s = scale.to_f32_vec();
    let z: Vec<i8> = zero.map_or(vec![0; s.len()], |z| {
        z.to_f32_vec().iter().map(|&v| v as i8).collect()
    });
    let per_axis = s.len() > 1 || scale.dims().len() == 1;
    let a = norm_axis(axis, rank);
    let ch = channel_of(&dims, s.len(), a);
    let widest = q
        .to_f32_vec()
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as i32 - z[ch(i)] as i32).abs())
        .max()
        .unwrap_or(0);
    let bound = (2..=8)
        .map(|b| (1i32 << (b - 1)) - 1)
        .find(|&b| b >= widest)
        .unwrap_or(127);
    let init = match original {
        Some(t) if t.dims() == dims.as_slice() => t.clone(),
        _ => dequantize(&q, scale, zero, axis),
    };
    let bshape: Vec<usize> = if per_axis {
        (0..rank)
            .map(|i| if i == a { s.len() } else { 1 })
            .collect()
    } else {
        vec![]
    };
    let limit = |sign: f32| -> Tensor {
        let v: Vec<f32> = s
            .iter()
            .zip(&z)
            .map(|(&s, &z)| (sign * bound as f32 - z as f32) * s)
            .collect();
        Tensor::from_vec(bshape.clone(), v)
    };
    let base = stem(name);
    let float_name = namer.fresh(base.clone());
    let w = g.add_const(float_name.clone(), init);
    let clip_max = namer.fresh(format!("{base}_qat_max"));
    let clip_min = namer.fresh(format!("{base}_qat_min"));
    let hi = g.add_const(clip_max.clone(), limit(1.0));
    let lo = g.add_const(clip_min.clone(), limit(-1.0));
    let below = g.add(
        Op::Binary(BinaryOp::Min),
        &[w, hi],
        namer.fresh(format!("{base}_qat_clip_max")),
    )?;
    let clipped = g.add(
        Op::Binary(BinaryOp::Max),
        &[below, lo],
        namer.fresh(format!("{base}_qat_clip_min")),
    )?;
    let dq_inputs = g.nodes[dq].inputs.to_vec();
    let mut q_inputs = vec![clipped];
    q_inputs.extend_from_slice(&dq_inputs[1..]);
    let quantize_node = namer.fresh(format!("{base}_QuantizeLinear"));
    let qv = g.add(
        Op::QuantizeLinear {
            axis,
            to: DType::I8,
        },
        &q_inputs,
        quantize_node.clone(),
    )?;
    g.nodes[dq].inputs[0] = qv;
    Ok(FakeQuantWeight {
        name: float_name,
        quantize_node,
        quantized_name: name.to_string(),
        scale: s,
        zero_point: z,
        axis: a,
        bound,
        clip_min,
        clip_max,
    })
}

fn find_const(g: &Graph, name: &str) -> Result<ValueId, QuantizeError> {
    (0..g.values.len())
        .map(|i| ValueId(i as u32))
        .find(|&v| const_name(g, v) == Some(name) && g.const_data(v).is_some())
        .ok_or_else(|| QuantizeError::Qat(format!("the trained graph has no constant {name:?}")))
}

fn replace_uses(g: &mut Graph, from: ValueId, to: ValueId) {
    for n in g.nodes.iter_mut() {
        for i in n.inputs.iter_mut() {
            if *i == from {
                *i = to;
            }
        }
    }
    for o in g.outputs.iter_mut() {
        if o.value == from {
            o.value = to;
        }
    }
}

impl Prepared {
    /// The float constants a training loop must not train (the grid bounds): train with
    /// `ParamSelection::FloatConstantsExcept(prepared.frozen())`.
    pub fn frozen(&self) -> Vec<String> {
        self.weights
            .iter()
            .flat_map(|w| [w.clip_min.clone(), w.clip_max.clone()])
            .collect()
    }

    /// `trained` (this preparation's graph with new values in its float constants) in QDQ form:
    /// each weight `saturate(round_half_even(clamp(w)/s) + zp)` as an int8 constant (what the
    /// fake quantization computed, so the forward pass is unchanged), each bias
    /// `round_half_even(b/s) + zp` as int32 at its scale.
    pub fn finalize(&self, trained: &Graph) -> Result<Graph, QuantizeError> {
        let mut g = trained.clone();
        let mut namer = Namer::new(&g);
        for w in &self.weights {
            let v = find_const(&g, &w.name)?;
            let t = g.const_data(v).expect("found with data");
            let ch = channel_of(t.dims(), w.scale.len(), w.axis);
            let data: Vec<i8> = t
                .to_f32_vec()
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let (s, z) = (w.scale[ch(i)], w.zero_point[ch(i)] as f32);
                    let (lo, hi) = ((-w.bound as f32 - z) * s, (w.bound as f32 - z) * s);
                    let x = x.min(hi).max(lo);
                    ((x / s).round_ties_even() + z).clamp(-128.0, 127.0) as i8
                })
                .collect();
            let dims = t.dims().to_vec();
            let qn = g
                .nodes
                .iter()
                .position(|n| {
                    n.name == w.quantize_node && matches!(n.op, Op::QuantizeLinear { .. })
                })
                .ok_or_else(|| {
                    QuantizeError::Qat(format!(
                        "the trained graph has no QuantizeLinear {:?}",
                        w.quantize_node
                    ))
                })?;
            let out = g.nodes[qn].outputs[0];
            let c = g.add_const(
                namer.fresh(w.quantized_name.clone()),
                Tensor::from_vec(dims, data),
            );
            replace_uses(&mut g, out, c);
        }
        for b in &self.biases {
            let v = find_const(&g, &b.name)?;
            let t = g.const_data(v).expect("found with data");
            let s = b.scale.to_f32_vec();
            let z = b.zero_point.to_f64_vec();
            let ch = channel_of(t.dims(), s.len(), norm_axis(b.axis, t.dims().len()));
            let data: Vec<i32> = t
                .to_f32_vec()
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let q = (x as f64 / s[ch(i)] as f64).round_ties_even() + z[ch(i)];
                    q.clamp(i32::MIN as f64, i32::MAX as f64) as i32
                })
                .collect();
            let dims = t.dims().to_vec();
            let base = stem(&b.quantized_name);
            let q = g.add_const(
                namer.fresh(b.quantized_name.clone()),
                Tensor::from_vec(dims, data),
            );
            let sc = g.add_const(namer.fresh(format!("{base}_scale")), b.scale.clone());
            let zp = g.add_const(
                namer.fresh(format!("{base}_zero_point")),
                b.zero_point.clone(),
            );
            let dq = g.add(
                Op::DequantizeLinear { axis: b.axis },
                &[q, sc, zp],
                namer.fresh(format!("{base}_DequantizeLinear")),
            )?;
            replace_uses(&mut g, v, dq);
        }
        g.sort_topologically()?;
        g.remove_dead_nodes();
        g.compact();
        Ok(g)
    }
}
