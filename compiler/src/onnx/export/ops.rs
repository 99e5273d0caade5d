//! Per-op export: the inverse of `onnx/ops.rs`. Each IR op is written in the one ONNX form the
//! importer reads back into the same op (IR inputs stay ONNX inputs, attributes equal to ONNX's
//! defaults are left out), and [`required_opset`] says which default-domain opset that form
//! needs. IR-only ops are written as the standard ops they are defined by.

use super::super::ops::{scalar_tensor, BINARY, REDUCE, UNARY};
use super::super::proto::{AttributeProto, NodeProto};
use super::super::tensor::dtype_to_onnx;
use super::{attr, Builder, ExportError};
use kestrel_ir::{
    ArgKind, AspectPolicy, AutoPad, BinaryOp, ConvAttrs, ConvTransposeAttrs, CoordMode, DType,
    Epilogue, GemmAttrs, Graph, MapInstr, MapProgram, NearestMode, Node, NodeId, Op, PadMode,
    Param, PoolAttrs, PoolKind, ReduceKind, ResizeAttrs, ResizeBy, ResizeMode, ScatterReduction,
    UnaryOp, F32,
};

/// The lowest default-domain opset that expresses `n` in the form [`export_node`] writes, and
/// the op or attribute that needs it ("" when [`super::MIN_OPSET`] does).
pub fn required_opset(g: &Graph, n: &Node) -> (i64, &'static str) {
    let base = (super::MIN_OPSET, "");
    let in_dtype = |i: usize| n.inputs.get(i).map(|&v| g.ty(v).dtype);
    let max = |a: (i64, &'static str), b: (i64, &'static str)| if b.0 > a.0 { b } else { a };
    let epilogue = |e: &Epilogue| match e.act {
        Some(u) => unary_opset(u, DType::F32),
        None => base,
    };
    match &n.op {
        Op::Unary(u) => unary_opset(*u, in_dtype(0).unwrap_or(DType::F32)),
        Op::Map(p) => p.code.iter().fold(base, |acc, ins| match ins {
            MapInstr::Unary(u, _) => max(acc, unary_opset(*u, DType::F32)),
            _ => acc,
        }),
        Op::Conv(a) => epilogue(&a.epilogue),
        Op::Gemm(a) => epilogue(&a.epilogue),
        Op::Reduce(a) => {
            let axes = n.inputs.len() > 1;
            if a.kind != ReduceKind::Sum && (axes || a.noop_with_empty_axes) {
                (18, "axes as an input of reductions other than ReduceSum")
            } else {
                base
            }
        }
        Op::Split { axis, num_outputs } if n.inputs.len() == 1 => {
            let ty = g.ty(n.inputs[0]);
            let extent = kestrel_ir::norm_axis(*axis, ty.rank())
                .ok()
                .and_then(|a| ty.shape[a].known());
            match extent {
                Some(e) if *num_outputs > 0 && e % num_outputs == 0 => base,
                _ => (18, "Split into unequal parts by num_outputs"),
            }
        }
        Op::Shape { start, end } if *start != 0 || end.is_some() => (15, "Shape's start and end"),
        Op::Reshape { allowzero: true } => (14, "Reshape's allowzero"),
        Op::LayerNorm { .. } => (17, "LayerNormalization"),
        Op::Trilu { .. } => (14, "Trilu"),
        Op::Pool(p) => match p.kind {
            PoolKind::Average if !p.dilations.is_empty() => (19, "AveragePool's dilations"),
            PoolKind::Lp(_) if !p.dilations.is_empty() || p.ceil_mode => {
                (18, "LpPool's dilations and ceil_mode")
            }
            _ => base,
        },
        Op::Resize(a) => {
            if a.coord == CoordMode::HalfPixelSymmetric {
                (19, "Resize's half_pixel_symmetric")
            } else if a.antialias || a.aspect != AspectPolicy::Stretch || !a.axes.is_empty() {
                (18, "Resize's antialias, axes and keep_aspect_ratio_policy")
            } else {
                base
            }
        }
        Op::Pad {
            mode: PadMode::Wrap,
        } => (19, "Pad's wrap mode"),
        Op::ScatterElements { reduction, .. } | Op::ScatterNd { reduction } => match reduction {
            ScatterReduction::None => base,
            ScatterReduction::Add | ScatterReduction::Mul => (16, "scatter reductions add and mul"),
            ScatterReduction::Max | ScatterReduction::Min => (18, "scatter reductions max and min"),
        },
        Op::QuantizeLinear { to, .. } => {
            if matches!(to, DType::I16 | DType::U16) {
                (21, "16-bit quantization")
            } else if n.inputs.len() < 3 && *to != DType::U8 {
                (21, "QuantizeLinear's output_dtype")
            } else {
                base
            }
        }
        Op::DequantizeLinear { .. } if matches!(in_dtype(0), Some(DType::I16 | DType::U16)) => {
            (21, "16-bit quantization")
        }
        _ => base,
    }
}

/// The opset the ONNX op a unary op is written as needs, on elements of `dtype`.
fn unary_opset(u: UnaryOp, dtype: DType) -> (i64, &'static str) {
    match u {
        UnaryOp::HardSwish => (14, "HardSwish"),
        UnaryOp::Mish => (18, "Mish"),
        UnaryOp::Gelu { .. } => (20, "Gelu"),
        UnaryOp::Relu if dtype.is_int() => (14, "Relu on integers"),
        _ => (super::MIN_OPSET, ""),
    }
}

/// The ONNX spelling of an `auto_pad`.
fn auto_pad_name(p: AutoPad) -> &'static str {
    match p {
        AutoPad::NotSet => "NOTSET",
        AutoPad::SameUpper => "SAME_UPPER",
        AutoPad::SameLower => "SAME_LOWER",
        AutoPad::Valid => "VALID",
    }
}

fn resize_mode_name(m: ResizeMode) -> &'static str {
    match m {
        ResizeMode::Nearest => "nearest",
        ResizeMode::Linear => "linear",
        ResizeMode::Cubic => "cubic",
    }
}

fn coord_mode_name(c: CoordMode) -> &'static str {
    match c {
        CoordMode::HalfPixel => "half_pixel",
        CoordMode::HalfPixelSymmetric => "half_pixel_symmetric",
        CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
        CoordMode::AlignCorners => "align_corners",
        CoordMode::Asymmetric => "asymmetric",
        CoordMode::TfCropAndResize => "tf_crop_and_resize",
    }
}

fn nearest_mode_name(m: NearestMode) -> &'static str {
    match m {
        NearestMode::RoundPreferFloor => "round_prefer_floor",
        NearestMode::RoundPreferCeil => "round_prefer_ceil",
        NearestMode::Floor => "floor",
        NearestMode::Ceil => "ceil",
    }
}

fn aspect_name(a: AspectPolicy) -> &'static str {
    match a {
        AspectPolicy::Stretch => "stretch",
        AspectPolicy::NotLarger => "not_larger",
        AspectPolicy::NotSmaller => "not_smaller",
    }
}

fn pad_mode_name(m: PadMode) -> &'static str {
    match m {
        PadMode::Constant => "constant",
        PadMode::Reflect => "reflect",
        PadMode::Edge => "edge",
        PadMode::Wrap => "wrap",
    }
}

fn scatter_reduction_name(r: ScatterReduction) -> &'static str {
    match r {
        ScatterReduction::None => "none",
        ScatterReduction::Add => "add",
        ScatterReduction::Mul => "mul",
        ScatterReduction::Max => "max",
        ScatterReduction::Min => "min",
    }
}

fn usizes(v: &[usize]) -> impl Iterator<Item = i64> + '_ {
    v.iter().map(|&x| x as i64)
}

/// The export of one IR node.
struct Cx<'b, 'g> {
    b: &'b mut Builder<'g>,
    g: &'g Graph,
    id: NodeId,
    n: &'g Node,
}

impl Cx<'_, '_> {
    fn input(&self, i: usize) -> String {
        self.b.name(self.n.inputs[i])
    }

    fn inputs(&self) -> Vec<String> {
        (0..self.n.inputs.len()).map(|i| self.input(i)).collect()
    }

    fn outputs(&self) -> Vec<String> {
        self.n.outputs.iter().map(|&v| self.b.name(v)).collect()
    }

    fn out(&self) -> String {
        self.b.name(self.n.outputs[0])
    }

    fn in_dtype(&self, i: usize) -> DType {
        self.g.ty(self.n.inputs[i]).dtype
    }

    fn out_dtype(&self) -> DType {
        self.g.ty(self.n.outputs[0]).dtype
    }

    fn unsupported(&self, reason: impl Into<String>) -> ExportError {
        ExportError::Unsupported {
            node: self.g.describe_node(self.id),
            reason: reason.into(),
        }
    }

    /// What names of values and nodes this node makes are derived from.
    fn base(&self) -> String {
        if self.n.name.is_empty() {
            self.out()
        } else {
            self.n.name.clone()
        }
    }

    /// A fresh intermediate value name.
    fn temp(&mut self, part: &str) -> String {
        let base = format!("{}/{part}", self.base());
        self.b.fresh(&base)
    }

    /// A new initializer; returns its name.
    fn konst(&mut self, part: &str, t: &kestrel_ir::Tensor) -> String {
        let base = format!("{}.{part}", self.base());
        self.b.konst(&base, t)
    }

    /// Appends an ONNX node. `part` is `None` for the node standing for the IR node (named like
    /// it), or names the step of a decomposition (`conv1/relu`).
    fn emit(
        &mut self,
        op_type: &str,
        part: Option<&str>,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        let name = match part {
            None => self.n.name.clone(),
            Some(_) if self.n.name.is_empty() => String::new(),
            Some(p) => format!("{}/{p}", self.n.name),
        };
        self.b.push(NodeProto {
            input: inputs,
            output: outputs,
            name,
            op_type: op_type.to_string(),
            attribute,
            ..Default::default()
        });
    }

    /// The node as one ONNX op of the same inputs and outputs.
    fn same(&mut self, op_type: &str, attrs: Vec<AttributeProto>) -> Result<(), ExportError> {
        let (ins, outs) = (self.inputs(), self.outputs());
        self.emit(op_type, None, ins, outs, attrs);
        Ok(())
    }

    /// `y = u(x)` on elements of `dtype`.
    fn unary(
        &mut self,
        u: UnaryOp,
        x: String,
        y: String,
        dtype: DType,
        part: Option<&str>,
    ) -> Result<(), ExportError> {
        match u {
            UnaryOp::Clip { min, max } => {
                let mut ins = vec![x];
                let bound = |v: F32, unbounded: f32| v.0.to_bits() != unbounded.to_bits();
                let lo = bound(min, f32::NEG_INFINITY);
                let hi = bound(max, f32::INFINITY);
                if lo || hi {
                    ins.push(if lo {
                        self.konst("min", &scalar_tensor(dtype, min.0 as f64))
                    } else {
                        String::new()
                    });
                }
                if hi {
                    ins.push(self.konst("max", &scalar_tensor(dtype, max.0 as f64)));
                }
                self.emit("Clip", part, ins, vec![y], vec![]);
            }
            UnaryOp::Gelu { tanh_approx } => {
                let attrs = if tanh_approx {
                    vec![attr::string("approximate", "tanh")]
                } else {
                    vec![]
                };
                self.emit("Gelu", part, vec![x], vec![y], attrs);
            }
            // `x * sigmoid(x)`, exactly (see `UnaryOp::Silu`).
            UnaryOp::Silu => {
                let s = self.temp("sigmoid");
                let sig_part = part.map_or("sigmoid".to_string(), |p| format!("{p}/sigmoid"));
                self.emit(
                    "Sigmoid",
                    Some(&sig_part),
                    vec![x.clone()],
                    vec![s.clone()],
                    vec![],
                );
                self.emit("Mul", part, vec![x, s], vec![y], vec![]);
            }
            _ => {
                let name = u.name();
                let Some(&(onnx, _)) = UNARY.iter().find(|(_, ir)| *ir == name) else {
                    return Err(self.unsupported(format!("unary op {name} has no ONNX form")));
                };
                let defaults = UnaryOp::from_name(name)
                    .map(|d| d.params())
                    .unwrap_or_default();
                let mut attrs = Vec::new();
                for (key, p) in u.params() {
                    let default = defaults.iter().find(|(k, _)| *k == key).map(|(_, d)| *d);
                    match p {
                        Param::Float(v) if default != Some(p) => attrs.push(attr::float(key, v.0)),
                        Param::Float(_) => {}
                        Param::Bool(_) => {
                            return Err(self.unsupported(format!(
                                "parameter {key} of {name} has no ONNX attribute"
                            )))
                        }
                    }
                }
                self.emit(onnx, part, vec![x], vec![y], attrs);
            }
        }
        Ok(())
    }

    /// `y = op(a, b)`.
    fn binary(
        &mut self,
        op: BinaryOp,
        a: String,
        b: String,
        y: String,
        part: Option<&str>,
    ) -> Result<(), ExportError> {
        let (onnx, attrs) = match op {
            BinaryOp::Mod => ("Mod", vec![]),
            BinaryOp::Fmod => ("Mod", vec![attr::int("fmod", 1)]),
            BinaryOp::Max => ("Max", vec![]),
            BinaryOp::Min => ("Min", vec![]),
            BinaryOp::PRelu => ("PRelu", vec![]),
            _ => match BINARY.iter().find(|(_, b)| *b == op) {
                Some(&(onnx, _)) => (onnx, vec![]),
                None => {
                    return Err(
                        self.unsupported(format!("binary op {} has no ONNX form", op.name()))
                    )
                }
            },
        };
        self.emit(onnx, part, vec![a, b], vec![y], attrs);
        Ok(())
    }

    /// The epilogue of a conv/gemm whose plain result is `acc`: `Add` of the residual `r`, then
    /// the activation, the last step writing the node's output.
    fn epilogue(
        &mut self,
        e: &Epilogue,
        acc: String,
        residual: Option<String>,
    ) -> Result<(), ExportError> {
        let out = self.out();
        let mut cur = acc;
        if let Some(r) = residual {
            let y = if e.act.is_some() {
                self.temp("residual")
            } else {
                out.clone()
            };
            self.emit(
                "Add",
                Some("residual"),
                vec![cur, r],
                vec![y.clone()],
                vec![],
            );
            cur = y;
        }
        if let Some(u) = e.act {
            let dtype = self.out_dtype();
            self.unary(u, cur, out, dtype, Some(u.name()))?;
        }
        Ok(())
    }

    /// The plain op's output name: the node's output, or an intermediate when an epilogue follows.
    fn acc_name(&mut self, e: &Epilogue, what: &str) -> String {
        if e.act.is_some() || e.residual {
            self.temp(what)
        } else {
            self.out()
        }
    }

    fn conv(&mut self, a: &ConvAttrs) -> Result<(), ExportError> {
        let e = a.epilogue;
        let ins = self.inputs();
        let mut x = ins[0].clone();
        if e.channel_scale {
            let Some(s) = ins.get(3 + e.residual as usize).cloned() else {
                return Err(self.unsupported("a conv with a channel scale needs its scale input"));
            };
            let xs = self.temp("scaled");
            self.emit(
                "Mul",
                Some("channel_scale"),
                vec![x, s],
                vec![xs.clone()],
                vec![],
            );
            x = xs;
        }
        let plain = if e.is_none() { ins.len() } else { 3 };
        let mut conv_ins = vec![x];
        conv_ins.extend(ins[1..plain.min(ins.len())].iter().cloned());
        let mut attrs = Vec::new();
        let w = self.g.ty(self.n.inputs[1]);
        if let Some(k) = w.dims().filter(|d| d.len() > 2) {
            attrs.push(attr::ints("kernel_shape", usizes(&k[2..])));
        }
        window_attrs(&mut attrs, &a.strides, &a.pads, &a.dilations, a.auto_pad);
        if a.group != 1 {
            attrs.push(attr::int("group", a.group as i64));
        }
        let acc = self.acc_name(&e, "conv");
        self.emit("Conv", None, conv_ins, vec![acc.clone()], attrs);
        let residual = e.residual.then(|| ins[3].clone());
        self.epilogue(&e, acc, residual)
    }

    fn gemm(&mut self, a: &GemmAttrs) -> Result<(), ExportError> {
        let e = a.epilogue;
        let ins = self.inputs();
        let plain = if e.is_none() { ins.len() } else { 3 };
        let mut attrs = Vec::new();
        if a.alpha != F32(1.0) {
            attrs.push(attr::float("alpha", a.alpha.0));
        }
        if a.beta != F32(1.0) {
            attrs.push(attr::float("beta", a.beta.0));
        }
        if a.trans_a {
            attrs.push(attr::int("transA", 1));
        }
        if a.trans_b {
            attrs.push(attr::int("transB", 1));
        }
        if e.channel_scale {
            return Err(self.unsupported("a gemm epilogue has no channel scale"));
        }
        let acc = self.acc_name(&e, "gemm");
        self.emit(
            "Gemm",
            None,
            ins[..plain.min(ins.len())].to_vec(),
            vec![acc.clone()],
            attrs,
        );
        let residual = e.residual.then(|| ins[3].clone());
        self.epilogue(&e, acc, residual)
    }

    /// The name of a map register: the node's output for the result, else a fresh one.
    fn register_name(&mut self, is_output: bool, out: &str, part: &str) -> String {
        if is_output {
            out.to_string()
        } else {
            self.temp(part)
        }
    }

    /// A map program, one ONNX node per instruction; inputs the result does not depend on still
    /// broadcast into the output's shape (through `Expand` to their shapes).
    fn map(&mut self, p: &MapProgram) -> Result<(), ExportError> {
        let ins = self.inputs();
        let dtype = self.in_dtype(0);
        let out = self.out();
        p.check(ins.len())
            .map_err(|e| self.unsupported(format!("malformed map program: {e}")))?;
        let root = p.code.len() - 1;
        // The inputs each register depends on.
        let mut deps: Vec<Vec<bool>> = Vec::with_capacity(p.code.len());
        for ins_ in &p.code {
            let d = match *ins_ {
                MapInstr::Input(k) => (0..ins.len()).map(|j| j == k as usize).collect(),
                MapInstr::Const(_) => vec![false; ins.len()],
                MapInstr::Unary(_, a) => deps[a as usize].clone(),
                MapInstr::Binary(_, a, c) => (0..ins.len())
                    .map(|j| deps[a as usize][j] || deps[c as usize][j])
                    .collect(),
            };
            deps.push(d);
        }
        let unread: Vec<usize> = (0..ins.len()).filter(|&k| !deps[root][k]).collect();
        let computed_root = matches!(p.code[root], MapInstr::Unary(..) | MapInstr::Binary(..));
        let root_is_output = computed_root && unread.is_empty();
        let mut regs: Vec<String> = Vec::with_capacity(p.code.len());
        for (i, ins_) in p.code.iter().enumerate() {
            let part = format!("r{i}");
            let name = match *ins_ {
                MapInstr::Input(k) => ins[k as usize].clone(),
                MapInstr::Const(c) => self.konst(&part, &scalar_tensor(dtype, c.0 as f64)),
                MapInstr::Unary(u, a) => {
                    let is_output = i == root && root_is_output;
                    let y = self.register_name(is_output, &out, &part);
                    let x = regs[a as usize].clone();
                    let step = (!is_output).then_some(part.as_str());
                    self.unary(u, x, y.clone(), dtype, step)?;
                    y
                }
                MapInstr::Binary(op, a, c) => {
                    let is_output = i == root && root_is_output;
                    let y = self.register_name(is_output, &out, &part);
                    let (x, z) = (regs[a as usize].clone(), regs[c as usize].clone());
                    let step = (!is_output).then_some(part.as_str());
                    self.binary(op, x, z, y.clone(), step)?;
                    y
                }
            };
            regs.push(name);
        }
        if root_is_output {
            return Ok(());
        }
        // Broadcast the result against every input it does not read; the last step names it
        // the output.
        let mut cur = regs[root].clone();
        if unread.is_empty() {
            self.emit("Identity", None, vec![cur], vec![out], vec![]);
            return Ok(());
        }
        for (j, &k) in unread.iter().enumerate() {
            let shape = self.temp(&format!("shape{k}"));
            self.emit(
                "Shape",
                Some(&format!("shape{k}")),
                vec![ins[k].clone()],
                vec![shape.clone()],
                vec![],
            );
            let y = if j + 1 == unread.len() {
                out.clone()
            } else {
                self.temp(&format!("expand{k}"))
            };
            let part = format!("expand{k}");
            let last = j + 1 == unread.len();
            self.emit(
                "Expand",
                if last { None } else { Some(&part) },
                vec![cur, shape],
                vec![y.clone()],
                vec![],
            );
            cur = y;
        }
        Ok(())
    }

    /// `softmax(scale · q @ k_t) @ v` as `MatMul`, `Mul` (left out when the scale is 1),
    /// `Softmax` along the last axis and `MatMul`, each rounded as the interpreter's attention is.
    fn attention(&mut self, scale: F32) -> Result<(), ExportError> {
        let ins = self.inputs();
        let dtype = self.in_dtype(0);
        let scores = self.temp("scores");
        self.emit(
            "MatMul",
            Some("scores"),
            vec![ins[0].clone(), ins[1].clone()],
            vec![scores.clone()],
            vec![],
        );
        let mut cur = scores;
        if scale != F32(1.0) {
            let s = self.konst("scale", &scalar_tensor(dtype, scale.0 as f64));
            let y = self.temp("scaled");
            self.emit("Mul", Some("scale"), vec![cur, s], vec![y.clone()], vec![]);
            cur = y;
        }
        let p = self.temp("probs");
        self.emit(
            "Softmax",
            Some("softmax"),
            vec![cur],
            vec![p.clone()],
            vec![],
        );
        let out = self.out();
        self.emit("MatMul", None, vec![p, ins[2].clone()], vec![out], vec![]);
        Ok(())
    }

    fn pool(&mut self, a: &PoolAttrs) -> Result<(), ExportError> {
        let op = match a.kind {
            PoolKind::Max => "MaxPool",
            PoolKind::Average => "AveragePool",
            PoolKind::Lp(_) => "LpPool",
        };
        let mut attrs = vec![attr::ints("kernel_shape", usizes(&a.kernel))];
        window_attrs(&mut attrs, &a.strides, &a.pads, &a.dilations, a.auto_pad);
        if a.ceil_mode {
            attrs.push(attr::int("ceil_mode", 1));
        }
        match a.kind {
            PoolKind::Average if a.count_include_pad => {
                attrs.push(attr::int("count_include_pad", 1))
            }
            PoolKind::Lp(p) if p != kestrel_ir::DEFAULT_LP_P => {
                attrs.push(attr::int("p", p as i64))
            }
            _ => {}
        }
        self.same(op, attrs)
    }

    fn conv_transpose(&mut self, a: &ConvTransposeAttrs) -> Result<(), ExportError> {
        let mut attrs = Vec::new();
        let w = self.g.ty(self.n.inputs[1]);
        if let Some(k) = w.dims().filter(|d| d.len() > 2) {
            attrs.push(attr::ints("kernel_shape", usizes(&k[2..])));
        }
        window_attrs(&mut attrs, &a.strides, &a.pads, &a.dilations, a.auto_pad);
        if !a.output_padding.is_empty() {
            attrs.push(attr::ints("output_padding", usizes(&a.output_padding)));
        }
        if !a.output_shape.is_empty() {
            attrs.push(attr::ints("output_shape", usizes(&a.output_shape)));
        }
        if a.group != 1 {
            attrs.push(attr::int("group", a.group as i64));
        }
        self.same("ConvTranspose", attrs)
    }

    /// Resize-13+: `(X, roi, scales, sizes)`, absent ones as empty names.
    fn resize(&mut self, a: &ResizeAttrs) -> Result<(), ExportError> {
        let ins = self.inputs();
        let roi = ins.get(2).cloned().unwrap_or_default();
        let onnx_ins = match a.by {
            ResizeBy::Scales => vec![ins[0].clone(), roi, ins[1].clone()],
            ResizeBy::Sizes => vec![ins[0].clone(), roi, String::new(), ins[1].clone()],
        };
        let mut attrs = Vec::new();
        if a.mode != ResizeMode::Nearest {
            attrs.push(attr::string("mode", resize_mode_name(a.mode)));
        }
        if a.coord != CoordMode::HalfPixel {
            attrs.push(attr::string(
                "coordinate_transformation_mode",
                coord_mode_name(a.coord),
            ));
        }
        if a.nearest != NearestMode::RoundPreferFloor {
            attrs.push(attr::string("nearest_mode", nearest_mode_name(a.nearest)));
        }
        if a.cubic_coeff_a != F32(-0.75) {
            attrs.push(attr::float("cubic_coeff_a", a.cubic_coeff_a.0));
        }
        if a.exclude_outside {
            attrs.push(attr::int("exclude_outside", 1));
        }
        if a.extrapolation_value != F32(0.0) {
            attrs.push(attr::float("extrapolation_value", a.extrapolation_value.0));
        }
        if a.antialias {
            attrs.push(attr::int("antialias", 1));
        }
        if a.aspect != AspectPolicy::Stretch {
            attrs.push(attr::string(
                "keep_aspect_ratio_policy",
                aspect_name(a.aspect),
            ));
        }
        if !a.axes.is_empty() {
            attrs.push(attr::ints("axes", a.axes.iter().copied()));
        }
        let outs = self.outputs();
        self.emit("Resize", None, onnx_ins, outs, attrs);
        Ok(())
    }
}

/// `strides`, `pads`, `dilations` (each when not empty) and `auto_pad` (when set).
fn window_attrs(
    attrs: &mut Vec<AttributeProto>,
    strides: &[usize],
    pads: &[usize],
    dilations: &[usize],
    auto_pad: AutoPad,
) {
    if !strides.is_empty() {
        attrs.push(attr::ints("strides", usizes(strides)));
    }
    if !pads.is_empty() {
        attrs.push(attr::ints("pads", usizes(pads)));
    }
    if !dilations.is_empty() {
        attrs.push(attr::ints("dilations", usizes(dilations)));
    }
    if auto_pad != AutoPad::NotSet {
        attrs.push(attr::string("auto_pad", auto_pad_name(auto_pad)));
    }
}

/// An integer attribute, left out when it equals ONNX's default.
fn int_unless(name: &str, v: i64, default: i64) -> Vec<AttributeProto> {
    if v == default {
        vec![]
    } else {
        vec![attr::int(name, v)]
    }
}

/// Writes IR node `id` as ONNX nodes (see the module documentation).
pub(super) fn export_node(b: &mut Builder, id: NodeId) -> Result<(), ExportError> {
    let g = b.g;
    let n = g.node(id);
    let opset = b.opset;
    let mut cx = Cx { b, g, id, n };
    let flag = |name: &str, v: bool, default: bool| int_unless(name, v as i64, default as i64);
    match &n.op {
        Op::Unary(u) => {
            let (x, y, dt) = (cx.input(0), cx.out(), cx.in_dtype(0));
            cx.unary(*u, x, y, dt, None)
        }
        Op::Binary(op) => {
            let (a, c, y) = (cx.input(0), cx.input(1), cx.out());
            cx.binary(*op, a, c, y, None)
        }
        Op::Map(p) => cx.map(p),
        Op::Clip => cx.same("Clip", vec![]),
        Op::Where => cx.same("Where", vec![]),
        Op::Cast { to } => cx.same("Cast", vec![attr::int("to", dtype_to_onnx(*to) as i64)]),
        Op::Conv(ConvAttrs {
            integer: Some(_), ..
        })
        | Op::Gemm(GemmAttrs {
            integer: Some(_), ..
        })
        | Op::QuantizedAdd(_)
        | Op::QuantizedMul(_)
        | Op::Requantize(_)
        | Op::QuantizedAveragePool(_) => Err(cx.unsupported(
            "integer ops made by fold-qdq have no standard ONNX form here; export the QDQ graph (a pipeline without fold-qdq, such as O1)",
        )),
        Op::DynamicQuantizeLinear => cx.same("DynamicQuantizeLinear", vec![]),
        Op::Conv(a) => cx.conv(a),
        Op::Gemm(a) => cx.gemm(a),
        Op::MatMul => cx.same("MatMul", vec![]),
        Op::BatchNorm { epsilon } => {
            let attrs = if *epsilon == F32(1e-5) {
                vec![]
            } else {
                vec![attr::float("epsilon", epsilon.0)]
            };
            cx.same("BatchNormalization", attrs)
        }
        Op::Pool(a) => cx.pool(a),
        Op::GlobalPool(kind) => match kind {
            PoolKind::Max => cx.same("GlobalMaxPool", vec![]),
            PoolKind::Average => cx.same("GlobalAveragePool", vec![]),
            PoolKind::Lp(p) => cx.same(
                "GlobalLpPool",
                int_unless("p", *p as i64, kestrel_ir::DEFAULT_LP_P as i64),
            ),
        },
        Op::Reduce(a) => {
            let Some(&(onnx, _)) = REDUCE.iter().find(|(_, k)| *k == a.kind) else {
                return Err(cx.unsupported("reduction has no ONNX form"));
            };
            let mut attrs = flag("keepdims", a.keepdims, true);
            attrs.extend(flag("noop_with_empty_axes", a.noop_with_empty_axes, false));
            cx.same(onnx, attrs)
        }
        Op::Softmax { axis } => cx.same("Softmax", int_unless("axis", *axis, -1)),
        Op::LogSoftmax { axis } => cx.same("LogSoftmax", int_unless("axis", *axis, -1)),
        Op::Hardmax { axis } => cx.same("Hardmax", int_unless("axis", *axis, -1)),
        Op::Attention { scale } => cx.attention(*scale),
        Op::LayerNorm { axis, epsilon } => {
            let mut attrs = int_unless("axis", *axis, -1);
            if *epsilon != F32(1e-5) {
                attrs.push(attr::float("epsilon", epsilon.0));
            }
            cx.same("LayerNormalization", attrs)
        }
        Op::Flatten { axis } => cx.same("Flatten", int_unless("axis", *axis, 1)),
        Op::Reshape { allowzero } => cx.same("Reshape", flag("allowzero", *allowzero, false)),
        Op::Transpose { perm } => cx.same("Transpose", vec![attr::ints("perm", usizes(perm))]),
        Op::Concat { axis } => cx.same("Concat", vec![attr::int("axis", *axis)]),
        Op::Split { axis, num_outputs } => {
            let mut attrs = int_unless("axis", *axis, 0);
            // Split-18 needs the part count when no sizes are given.
            if n.inputs.len() == 1 && opset >= 18 {
                attrs.push(attr::int("num_outputs", *num_outputs as i64));
            }
            cx.same("Split", attrs)
        }
        Op::Slice => cx.same("Slice", vec![]),
        Op::Gather { axis } => cx.same("Gather", int_unless("axis", *axis, 0)),
        Op::Squeeze => cx.same("Squeeze", vec![]),
        Op::Unsqueeze => cx.same("Unsqueeze", vec![]),
        Op::Shape { start, end } => {
            let mut attrs = int_unless("start", *start, 0);
            if let Some(e) = end {
                attrs.push(attr::int("end", *e));
            }
            cx.same("Shape", attrs)
        }
        Op::Size => cx.same("Size", vec![]),
        Op::Expand => cx.same("Expand", vec![]),
        Op::Tile => cx.same("Tile", vec![]),
        Op::Range => cx.same("Range", vec![]),
        Op::ConstantOfShape { value } => {
            cx.same("ConstantOfShape", vec![attr::tensor("value", value)])
        }
        Op::Identity => cx.same("Identity", vec![]),
        Op::QuantizeLinear { axis, to } => {
            let mut attrs = int_unless("axis", *axis, 1);
            if n.inputs.len() < 3 && *to != DType::U8 {
                attrs.push(attr::int("output_dtype", dtype_to_onnx(*to) as i64));
            }
            cx.same("QuantizeLinear", attrs)
        }
        Op::DequantizeLinear { axis } => cx.same("DequantizeLinear", int_unless("axis", *axis, 1)),
        Op::Resize(a) => cx.resize(a),
        Op::Pad { mode } => {
            let attrs = if *mode == PadMode::Constant {
                vec![]
            } else {
                vec![attr::string("mode", pad_mode_name(*mode))]
            };
            cx.same("Pad", attrs)
        }
        Op::ConvTranspose(a) => cx.conv_transpose(a),
        Op::Arg(a) => {
            let op = match a.kind {
                ArgKind::Max => "ArgMax",
                ArgKind::Min => "ArgMin",
            };
            let mut attrs = int_unless("axis", a.axis, 0);
            attrs.extend(flag("keepdims", a.keepdims, true));
            attrs.extend(flag("select_last_index", a.select_last_index, false));
            cx.same(op, attrs)
        }
        Op::GatherElements { axis } => cx.same("GatherElements", int_unless("axis", *axis, 0)),
        Op::ScatterElements { axis, reduction } => {
            let mut attrs = int_unless("axis", *axis, 0);
            if *reduction != ScatterReduction::None {
                attrs.push(attr::string(
                    "reduction",
                    scatter_reduction_name(*reduction),
                ));
            }
            cx.same("ScatterElements", attrs)
        }
        Op::ScatterNd { reduction } => {
            let attrs = if *reduction == ScatterReduction::None {
                vec![]
            } else {
                vec![attr::string(
                    "reduction",
                    scatter_reduction_name(*reduction),
                )]
            };
            cx.same("ScatterND", attrs)
        }
        Op::Trilu { upper } => cx.same("Trilu", flag("upper", *upper, true)),
        Op::CumSum { exclusive, reverse } => {
            let mut attrs = flag("exclusive", *exclusive, false);
            attrs.extend(flag("reverse", *reverse, false));
            cx.same("CumSum", attrs)
        }
        Op::LpNormalization { axis, p } => {
            let mut attrs = int_unless("axis", *axis, -1);
            attrs.extend(int_unless("p", *p as i64, 2));
            cx.same("LpNormalization", attrs)
        }
        Op::TopK {
            axis,
            largest,
            sorted,
        } => {
            let mut attrs = int_unless("axis", *axis, -1);
            attrs.extend(flag("largest", *largest, true));
            attrs.extend(flag("sorted", *sorted, true));
            cx.same("TopK", attrs)
        }
    }
}
