//! Round-trip, golden and error tests of the IR text form.

use kestrel_ir::text::{self, op_attrs, op_from_parts, AttrValue, INLINE_LIMIT};
use kestrel_ir::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

// -------------------------------------------------------------------------------------------------
// Helpers.

/// A structural summary of a graph that ignores value numbering, node names and constant names.
#[derive(Debug, PartialEq)]
enum Item {
    Input(String, TensorType),
    Const(TensorType, Option<Tensor>),
    Node(Op, Vec<usize>, Vec<TensorType>),
    Output(String, usize),
}

fn structure(g: &Graph) -> Vec<Item> {
    // Canonical numbering: inputs, constants in value order, node outputs in node order.
    let mut idx = vec![usize::MAX; g.values.len()];
    let mut next = 0;
    let mut items = vec![];
    for &v in &g.inputs {
        idx[v.index()] = next;
        next += 1;
        items.push(Item::Input(
            g.value(v).name.clone().unwrap_or_default(),
            g.ty(v).clone(),
        ));
    }
    for (i, v) in g.values.iter().enumerate() {
        if let ValueDef::Const(c) = &v.def {
            idx[i] = next;
            next += 1;
            items.push(Item::Const(v.ty.clone(), c.data.clone()));
        }
    }
    for n in &g.nodes {
        for &o in &n.outputs {
            idx[o.index()] = next;
            next += 1;
        }
        items.push(Item::Node(
            n.op.clone(),
            n.inputs.iter().map(|v| idx[v.index()]).collect(),
            n.outputs.iter().map(|&o| g.ty(o).clone()).collect(),
        ));
    }
    for o in &g.outputs {
        items.push(Item::Output(o.name.clone(), idx[o.value.index()]));
    }
    items
}

fn opts(w: WeightStyle) -> PrintOptions {
    PrintOptions::new(w)
}

/// Checks the round trip in every weight style; returns the reference-style text.
fn check_round_trip(g: &Graph) -> String {
    // Reference style: exact, with a sidecar.
    let p1 = print(g, &opts(WeightStyle::Reference));
    let side: HashMap<String, Tensor> = p1
        .weights
        .iter()
        .map(|(k, t)| (k.clone(), (*t).clone()))
        .collect();
    assert_eq!(side.len(), p1.weights.len(), "weight names must be unique");
    let g2 =
        parse(&p1.text, &|n| side.get(n).cloned()).unwrap_or_else(|e| panic!("{e}\n{}", p1.text));
    let p2 = print(&g2, &opts(WeightStyle::Reference));
    assert_eq!(p1.text, p2.text);
    assert_eq!(structure(g), structure(&g2), "{}", p1.text);
    assert_eq!(g.name, g2.name);

    // Inline: self-contained and exact.
    let t1 = print(g, &opts(WeightStyle::Inline));
    assert!(t1.weights.is_empty());
    let g3 = parse(&t1.text, &|_| None).unwrap_or_else(|e| panic!("{e}\n{}", t1.text));
    assert_eq!(print(&g3, &opts(WeightStyle::Inline)).text, t1.text);
    assert_eq!(structure(g), structure(&g3));

    // Elided: the text is stable, data of large constants is gone.
    let e1 = text::to_text(g);
    let g4 = parse(&e1, &|_| None).unwrap_or_else(|e| panic!("{e}\n{e1}"));
    assert_eq!(text::to_text(&g4), e1);
    for v in &g4.values {
        if let ValueDef::Const(c) = &v.def {
            match &c.data {
                Some(t) => assert!(t.numel() <= INLINE_LIMIT),
                None => assert!(v.ty.numel().is_none_or(|n| n > INLINE_LIMIT)),
            }
        }
    }
    p1.text
}

fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(dims.to_vec(), v.to_vec())
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_vec(vec![v.len()], v.to_vec())
}

fn ramp(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    Tensor::from_vec(
        dims.to_vec(),
        (0..n).map(|i| i as f32 * 0.25 - 1.0).collect(),
    )
}

fn sym(dims: &[&str]) -> Shape {
    dims.iter()
        .map(|d| match d.parse::<usize>() {
            Ok(n) => Dim::Known(n),
            Err(_) if *d == "?" => Dim::Unknown,
            Err(_) => Dim::sym(d),
        })
        .collect()
}

// -------------------------------------------------------------------------------------------------
// Graphs without nodes (independent of type inference).

#[test]
fn constants_of_every_dtype_round_trip() {
    let mut g = Graph::new("consts");
    let x = g.add_input("x", TensorType::new(DType::F32, sym(&["N", "?", "3"])));
    let q = g.add_input(
        "q:weird \"name\"",
        TensorType::known(DType::U8, &[4]).with_quant(Some(Arc::new(QuantParams {
            scale: vec![F32(0.0123)],
            zero_point: vec![128],
            axis: None,
        }))),
    );
    let pc = g.add_input(
        "0",
        TensorType::known(DType::I8, &[2, 3]).with_quant(Some(Arc::new(QuantParams {
            scale: vec![F32(0.5), F32(f32::NAN), F32(-0.0)],
            zero_point: vec![-1, 0, 1],
            axis: Some(1),
        }))),
    );
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        0.1,
        -1e-7,
        3.4e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::from_bits(0xffc0_0001),
        1e-45,
    ];
    let c_f32 = g.add_const("specials", f32s(&[11], &specials));
    let c_f64 = g.add_const(
        "f64",
        Tensor::from_vec(
            vec![2, 2],
            vec![
                0.1f64,
                f64::NAN,
                -f64::INFINITY,
                f64::from_bits(0x7ff0_0000_0000_0001),
            ],
        ),
    );
    let halves: Vec<u8> = [
        0x0000u16, 0x8000, 0x3c00, 0x7c00, 0xfc00, 0x7e00, 0x7e01, 0x0001,
    ]
    .iter()
    .flat_map(|h| h.to_le_bytes())
    .collect();
    let c_f16 = g.add_const(
        "f16",
        Tensor::from_bytes(DType::F16, vec![8], halves.clone().into()).unwrap(),
    );
    let c_bf16 = g.add_const(
        "bf16",
        Tensor::from_bytes(DType::BF16, vec![2, 4], halves.into()).unwrap(),
    );
    let c_bool = g.add_const("b", Tensor::from_vec(vec![3], vec![true, false, true]));
    let c_i64 = g.add_const("i", Tensor::from_vec(vec![2], vec![i64::MIN, i64::MAX]));
    let c_u64 = g.add_const("u", Tensor::scalar(u64::MAX));
    let c_i8 = g.add_const("i8", Tensor::from_vec(vec![0], Vec::<i8>::new()));
    let c_big = g.add_const("conv1.weight", ramp(&[4, 2, 3, 3]));
    let c_big2 = g.add_const("conv1.weight", ramp(&[17]));
    let c_big3 = g.add_const("conv1.weight#1", ramp(&[2, 9]));
    let c_big_i = g.add_const(
        "",
        Tensor::from_vec(vec![20], (0..20i32).map(|i| i - 10).collect()),
    );
    let c_quant = g.add_const("qc", Tensor::from_vec(vec![2], vec![3u8, 250]));
    g.values[c_quant.index()].ty.quant = Some(Arc::new(QuantParams {
        scale: vec![F32(0.25)],
        zero_point: vec![7],
        axis: None,
    }));
    let elided = g.add_elided_const("gone", TensorType::new(DType::F32, sym(&["M", "4"])));
    for (i, v) in [
        x, q, pc, c_f32, c_f64, c_f16, c_bf16, c_bool, c_i64, c_u64, c_i8, c_big, c_big2, c_big3,
        c_big_i, c_quant, elided,
    ]
    .into_iter()
    .enumerate()
    {
        g.add_output(format!("out {i}"), v);
    }
    g.add_output("x_again", x);
    let text = check_round_trip(&g);
    assert!(
        text.contains("const @conv1.weight : f32[4,2,3,3]"),
        "{text}"
    );
    assert!(text.contains("@\"conv1.weight#1\""), "{text}");
    assert!(text.contains("@\"conv1.weight#1#1\""), "{text}");
    assert!(text.contains(
        "dense<[0.0, -0.0, 1.0, 0.1, -1e-7, 3.4e38, inf, -inf, nan, nan(0xffc00001), 1e-45]>"
    ));
    assert!(text.contains("%\"q:weird \\\"name\\\"\": u8[4] quant(scale=0.0123, zero_point=128)"));
    assert!(text
        .contains("%\"0\": i8[2,3] quant(axis=1, scale=[0.5, nan, -0.0], zero_point=[-1, 0, 1])"));
    assert!(
        text.contains("dense<18446744073709551615> : u64[]"),
        "{text}"
    );
    assert!(text.contains("const elided : f32[M,4]"), "{text}");
}

#[test]
fn duplicate_input_names_are_made_unique() {
    let mut g = Graph::new("dups");
    let a = g.add_input("x", TensorType::known(DType::F32, &[1]));
    let b = g.add_input("x", TensorType::known(DType::F32, &[2]));
    g.add_output("a", a);
    g.add_output("a", b);
    let t = text::to_text(&g);
    assert_eq!(
        t,
        "graph @dups(%x: f32[1], %\"x#1\": f32[2]) -> (a: f32[1], a: f32[2]) {\n  return %x, %\"x#1\"\n}\n"
    );
    let g2 = parse(&t, &|_| None).unwrap();
    assert_eq!(text::to_text(&g2), t);
}

#[test]
fn reference_weights_resolve_through_the_callback() {
    let mut g = Graph::new("w");
    let c = g.add_const("big", ramp(&[5, 5]));
    g.add_output("y", c);
    let p = print(&g, &opts(WeightStyle::Reference));
    assert_eq!(p.weights.len(), 1);
    assert_eq!(p.weights[0].0, "big");
    let err = parse(&p.text, &|_| None).unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.message.contains("no data for constant `@big`"), "{err}");
    let wrong = parse(&p.text, &|_| Some(ramp(&[25]))).unwrap_err();
    assert!(wrong.message.contains("declared f32[5,5]"), "{wrong}");
    let ok = parse(&p.text, &|n| (n == "big").then(|| ramp(&[5, 5]))).unwrap();
    assert_eq!(ok.const_data(ValueId(0)), Some(&ramp(&[5, 5])));
}

#[test]
fn parses_hand_written_text_with_comments() {
    let t = r#"
        // A comment.
        graph @"my graph"(%a: f32[2], %b: bf16[]) -> (y: f32[2], "z z": i64[3]) { // trailing
          %k = const dense<[1, 2, 3]> : i64[3]
          %h = const dense<1> : f32[2]   // wrong count: caught below
          return %a, %k
        }
    "#;
    let e = parse(t, &|_| None).unwrap_err();
    assert_eq!((e.line, e.col), (5, 22), "{e}");
    assert!(
        e.message.contains("1 elements but type f32[2] has 2"),
        "{e}"
    );
    let t = t.replace("dense<1> : f32[2]", "dense<[1, 2.5e0]> : f32[2]");
    let g = parse(&t, &|_| None).unwrap();
    assert_eq!(g.name, "my graph");
    assert_eq!(
        g.const_data(ValueId(3)).unwrap().to_f32_vec(),
        vec![1.0, 2.5]
    );
    assert_eq!(
        text::to_text(&g),
        "graph @\"my graph\"(%a: f32[2], %b: bf16[]) -> (y: f32[2], \"z z\": i64[3]) {\n  \
         %0 = const dense<[1, 2, 3]> : i64[3]\n  %1 = const dense<[1.0, 2.5]> : f32[2]\n  \
         return %a, %0\n}\n"
    );
}

// -------------------------------------------------------------------------------------------------
// Attributes.

#[test]
fn attribute_table_round_trips_non_default_values() {
    let ops = every_op_with_non_default_attrs();
    for op in &ops {
        let attrs = op_attrs(op);
        let mut sorted = attrs.clone();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(attrs, sorted, "{op:?}");
        let parts: Vec<(String, AttrValue)> =
            attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let operands = input_arity(op).0;
        assert_eq!(&op_from_parts(op.name(), operands, &parts).unwrap(), op);
    }
}

#[test]
fn attribute_errors_are_reported() {
    let bad = [
        (
            "conv",
            vec![("group", AttrValue::Float(F32(1.5)))],
            "expects an integer",
        ),
        (
            "conv",
            vec![("strides", AttrValue::Ints(vec![-1]))],
            "non-negative",
        ),
        (
            "resize",
            vec![("by", AttrValue::Ident("sideways".into()))],
            "unknown value `sideways`",
        ),
        (
            "relu",
            vec![("alpha", AttrValue::Float(F32(1.0)))],
            "relu has no attribute `alpha`",
        ),
        ("transpose", vec![], "requires attribute `perm`"),
        (
            "cast",
            vec![("to", AttrValue::Ident("f33".into()))],
            "unknown dtype `f33`",
        ),
        (
            "softmax",
            vec![("axis", AttrValue::Int(1)), ("axis", AttrValue::Int(2))],
            "duplicate attribute `axis`",
        ),
        ("frobnicate", vec![], "unknown op `frobnicate`"),
    ];
    for (name, attrs, msg) in bad {
        let parts: Vec<(String, AttrValue)> =
            attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let e = op_from_parts(name, 1, &parts).unwrap_err();
        assert!(e.contains(msg), "{name}: {e}");
    }
}

fn every_op_with_non_default_attrs() -> Vec<Op> {
    let mut ops: Vec<Op> = UnaryOp::ALL.into_iter().map(Op::Unary).collect();
    ops.extend(BinaryOp::ALL.into_iter().map(Op::Binary));
    ops.extend([
        Op::Unary(UnaryOp::HardSigmoid {
            alpha: F32(0.3),
            beta: F32(0.25),
        }),
        Op::Unary(UnaryOp::LeakyRelu { alpha: F32(0.2) }),
        Op::Unary(UnaryOp::Elu { alpha: F32(0.5) }),
        Op::Unary(UnaryOp::Selu {
            alpha: F32(2.0),
            gamma: F32(3.0),
        }),
        Op::Unary(UnaryOp::Gelu { tanh_approx: true }),
        Op::Clip,
        Op::Where,
        Op::Cast { to: DType::F16 },
        Op::Conv(ConvAttrs {
            strides: vec![2, 2],
            pads: vec![1, 1, 1, 1],
            dilations: vec![2, 2],
            group: 2,
            auto_pad: AutoPad::NotSet,
            epilogue: Default::default(),
            integer: None,
        }),
        Op::Gemm(GemmAttrs {
            alpha: F32(0.5),
            beta: F32(2.0),
            trans_a: true,
            trans_b: true,
            epilogue: Default::default(),
            integer: None,
        }),
        Op::MatMul,
        Op::BatchNorm { epsilon: F32(1e-3) },
        Op::Pool(PoolAttrs {
            kind: PoolKind::Lp(3),
            kernel: vec![2, 2],
            strides: vec![1, 2],
            pads: vec![0, 1, 0, 1],
            dilations: vec![1, 1],
            ceil_mode: true,
            count_include_pad: true,
            auto_pad: AutoPad::Valid,
        }),
        Op::GlobalPool(PoolKind::Lp(1)),
        Op::Reduce(ReduceAttrs {
            kind: ReduceKind::LogSumExp,
            keepdims: false,
            noop_with_empty_axes: true,
        }),
        Op::Softmax { axis: 1 },
        Op::LogSoftmax { axis: 0 },
        Op::Attention { scale: F32(0.125) },
        Op::LayerNorm {
            axis: -2,
            epsilon: F32(1e-6),
        },
        Op::Flatten { axis: 2 },
        Op::Reshape { allowzero: true },
        Op::Transpose {
            perm: vec![0, 2, 3, 1],
        },
        Op::Concat { axis: -1 },
        Op::Split {
            axis: 1,
            num_outputs: 3,
        },
        Op::Slice,
        Op::Gather { axis: 1 },
        Op::Squeeze,
        Op::Unsqueeze,
        Op::Shape {
            start: -3,
            end: Some(-1),
        },
        Op::Size,
        Op::Expand,
        Op::Tile,
        Op::Range,
        Op::ConstantOfShape {
            value: Tensor::from_vec(vec![1], vec![7i64]),
        },
        Op::Identity,
        Op::QuantizeLinear {
            axis: 0,
            to: DType::I8,
        },
        Op::DequantizeLinear { axis: 0 },
        Op::Resize(ResizeAttrs {
            by: ResizeBy::Sizes,
            mode: ResizeMode::Cubic,
            coord: CoordMode::TfCropAndResize,
            nearest: NearestMode::Ceil,
            cubic_coeff_a: F32(-0.5),
            exclude_outside: true,
            extrapolation_value: F32(f32::NAN),
            antialias: true,
            aspect: AspectPolicy::NotSmaller,
            axes: vec![2, -1],
        }),
        Op::Pad {
            mode: PadMode::Reflect,
        },
        Op::ConvTranspose(ConvTransposeAttrs {
            strides: vec![2, 2],
            pads: vec![1, 0, 1, 0],
            dilations: vec![1, 2],
            output_padding: vec![1, 0],
            output_shape: vec![],
            group: 2,
            auto_pad: AutoPad::NotSet,
        }),
        Op::ConvTranspose(ConvTransposeAttrs {
            strides: vec![2, 2],
            output_shape: vec![17, 16],
            group: 1,
            auto_pad: AutoPad::SameUpper,
            ..Default::default()
        }),
        Op::Arg(ArgAttrs {
            kind: ArgKind::Max,
            axis: 1,
            keepdims: false,
            select_last_index: true,
        }),
        Op::Arg(ArgAttrs {
            kind: ArgKind::Min,
            axis: -1,
            keepdims: true,
            select_last_index: false,
        }),
        Op::GatherElements { axis: 1 },
        Op::ScatterElements {
            axis: 1,
            reduction: ScatterReduction::Add,
        },
        Op::ScatterNd {
            reduction: ScatterReduction::Max,
        },
        Op::Trilu { upper: false },
        Op::CumSum {
            exclusive: true,
            reverse: true,
        },
        Op::Hardmax { axis: 1 },
        Op::LpNormalization { axis: 1, p: 1 },
        Op::TopK {
            axis: 1,
            largest: false,
            sorted: false,
        },
        // Fused forms.
        Op::Conv(ConvAttrs {
            group: 1,
            epilogue: Epilogue {
                act: Some(UnaryOp::Clip {
                    min: F32(-1.5),
                    max: F32(6.0),
                }),
                residual: true,
                channel_scale: false,
            },
            ..Default::default()
        }),
        Op::Conv(ConvAttrs {
            group: 1,
            epilogue: Epilogue {
                act: Some(UnaryOp::Silu),
                residual: false,
                channel_scale: true,
            },
            ..Default::default()
        }),
        Op::Gemm(GemmAttrs {
            epilogue: Epilogue {
                act: Some(UnaryOp::HardSigmoid {
                    alpha: F32(0.2),
                    beta: F32(0.5),
                }),
                residual: true,
                channel_scale: false,
            },
            ..Default::default()
        }),
        Op::Map(MapProgram {
            code: vec![
                MapInstr::Input(0),
                MapInstr::Const(F32(-0.0)),
                MapInstr::Binary(BinaryOp::Max, 0, 1),
                MapInstr::Unary(UnaryOp::Tanh, 2),
                MapInstr::Input(1),
                MapInstr::Binary(BinaryOp::Mul, 3, 4),
            ],
        }),
    ]);
    ops
}

#[test]
fn fused_ops_round_trip_through_the_text_form() {
    let text = "graph @t(%x: f32[1,2,3,3], %r: f32[1,3,3,3], %a: f32[2,3]) -> (y: f32[1,3,3,3], z: f32[2,3]) {
  %w = const dense<[0.5, -1.0, 0.25, 2.0, 1.5, -0.5]> : f32[3,2,1,1]
  %b = const dense<[0.1, -0.2, 0.3]> : f32[3]
  %y = conv(%x, %w, %b, %r) {epilogue=clip, epilogue_alpha=-1.0, epilogue_beta=6.0, residual=true} : f32[1,3,3,3]
  %z = map(%a, %a) {code=[mul(x0, sigmoid(x1))]} : f32[2,3]
  return %y, %z
}";
    let g = kestrel_ir::parse(text, &|_| None).unwrap();
    check_round_trip(&g);
    // A residual requires the fourth input; a map program is checked.
    let bad = text.replace(", %r) {epilogue", ") {epilogue");
    assert!(kestrel_ir::parse(&bad, &|_| None).is_err());
    let bad = text.replace("sigmoid(x1)", "sigmoid(x2)");
    let e = kestrel_ir::parse(&bad, &|_| None).unwrap_err();
    assert!(e.message.contains("reads input 2 of 2"), "{e}");
    // Only epilogue activations, and their parameters in order.
    let bad = text.replace("epilogue=clip", "epilogue=tanh");
    let e = kestrel_ir::parse(&bad, &|_| None).unwrap_err();
    assert!(e.message.contains("expected one of none, relu,"), "{e}");
    let bad = text.replace("epilogue=clip, ", "");
    let e = kestrel_ir::parse(&bad, &|_| None).unwrap_err();
    assert!(e.message.contains("needs an epilogue activation"), "{e}");
    let g = kestrel_ir::parse(&text.replace("epilogue_alpha=-1.0, ", ""), &|_| None).unwrap();
    let Op::Conv(c) = &g.nodes[0].op else {
        panic!("conv first")
    };
    assert_eq!(
        c.epilogue.act,
        Some(UnaryOp::Clip {
            min: F32(0.0),
            max: F32(6.0)
        }),
        "epilogue parameters default to 0.0"
    );
}

/// The text of map program `code` (inputs `x0`, `x1`) after a parse and a print.
fn map_text(code: &str) -> Result<String, kestrel_ir::ParseError> {
    let text = format!(
        "graph @t(%a: f32[2,3], %b: f32[2,3]) -> (z: f32[2,3]) {{\n  %z = map(%a, %b) {{code={code}}} : f32[2,3]\n  return %z\n}}\n"
    );
    let g = kestrel_ir::parse(&text, &|_| None)?;
    check_round_trip(&g);
    let out = text::to_text(&g);
    let start = out.find("code=").expect("code attribute") + 5;
    let end = out[start..].find("} :").expect("end of attributes") + start;
    Ok(out[start..end].to_string())
}

#[test]
fn map_programs_print_as_expressions() {
    let cases = [
        // Already canonical.
        ("[mul(x0, sigmoid(x0))]", "[mul(x0, sigmoid(x0))]"),
        ("[x1]", "[x1]"),
        ("[-0.5]", "[-0.5]"),
        ("[add(sqrt(x0), 1e-7)]", "[add(sqrt(x0), 1e-7)]"),
        // A value used twice is a let; one used once is inlined.
        (
            "[r0 = add(x0, x1), mul(r0, tanh(r0))]",
            "[r0 = add(x0, x1), mul(r0, tanh(r0))]",
        ),
        ("[r7 = neg(x0), relu(r7)]", "[relu(neg(x0))]"),
        // Lets are numbered in order of use.
        (
            "[r5 = exp(x1), r2 = abs(x0), add(mul(r2, r2), div(r5, r5))]",
            "[r0 = abs(x0), r1 = exp(x1), add(mul(r0, r0), div(r1, r1))]",
        ),
        // Constants in every spelling, integers accepted.
        ("[max(x0, 2)]", "[max(x0, 2.0)]"),
        ("[min(x0, inf)]", "[min(x0, inf)]"),
        ("[max(x0, -inf)]", "[max(x0, -inf)]"),
        ("[add(x0, nan(0x7fc00001))]", "[add(x0, nan(0x7fc00001))]"),
    ];
    for (code, want) in cases {
        assert_eq!(
            map_text(code).unwrap_or_else(|e| panic!("{code}: {e}")),
            want
        );
    }
    // A program whose instructions come in another order prints (and parses back) as the same
    // canonical program.
    let scrambled = MapProgram {
        code: vec![
            MapInstr::Input(1),
            MapInstr::Input(0),
            MapInstr::Const(F32(0.5)),
            MapInstr::Binary(BinaryOp::Mul, 1, 2),
            MapInstr::Input(0),
            MapInstr::Binary(BinaryOp::Add, 3, 0),
        ],
    };
    assert_eq!(
        kestrel_ir::text::program::program_text(&scrambled),
        "[add(mul(x0, 0.5), x1)]"
    );
    let canonical = scrambled.canonical();
    assert_eq!(
        canonical.code,
        vec![
            MapInstr::Input(0),
            MapInstr::Const(F32(0.5)),
            MapInstr::Binary(BinaryOp::Mul, 0, 1),
            MapInstr::Input(1),
            MapInstr::Binary(BinaryOp::Add, 2, 3),
        ]
    );
    assert_eq!(canonical.canonical(), canonical);
    // Parameters that differ from their default are written by name.
    let p = MapProgram {
        code: vec![
            MapInstr::Input(0),
            MapInstr::Unary(UnaryOp::LeakyRelu { alpha: F32(0.25) }, 0),
            MapInstr::Unary(UnaryOp::LeakyRelu { alpha: F32(0.01) }, 1),
        ],
    };
    assert_eq!(
        kestrel_ir::text::program::program_text(&p),
        "[leaky_relu(leaky_relu(x0, alpha=0.25))]"
    );
}

#[test]
fn deep_map_programs_use_lets_and_round_trip() {
    // A chain deeper than the printer inlines: the text stays parseable and stable.
    let mut code = vec![MapInstr::Input(0)];
    for i in 0..100u16 {
        code.push(MapInstr::Unary(UnaryOp::Neg, i));
    }
    let p = MapProgram { code };
    let t = kestrel_ir::text::program::program_text(&p);
    assert!(t.starts_with("[r0 = neg("), "{t}");
    assert_eq!(map_text(&t).unwrap(), t);
    // Nesting beyond the parser's limit is an error, not a stack overflow.
    let deep = format!("[{}x0{}]", "neg(".repeat(10_000), ")".repeat(10_000));
    let e = map_text(&deep).unwrap_err();
    assert!(e.message.contains("nested too deeply"), "{e}");
}

#[test]
fn malformed_map_programs_report_positions() {
    // (program, the text the error points at, message)
    let cases = [
        (
            "[frob(x0)]",
            "frob",
            "`frob` is not an element-wise unary or binary op",
        ),
        ("[relu(x0, x1)]", "relu", "relu takes one operand"),
        ("[add(x0)]", "add", "add takes two operands"),
        ("[add(x0, x1, alpha=1.0)]", "alpha", "add has no parameters"),
        (
            "[leaky_relu(x0, beta=1.0)]",
            "beta",
            "leaky_relu has no attribute `beta`",
        ),
        ("[leaky_relu(x0, alpha=true)]", "alpha", "expects a float"),
        ("[relu(r0)]", "r0", "undefined map register r0"),
        (
            "[r0 = relu(x0), r0 = neg(x0), add(r0, r0)]",
            "r0 = neg",
            "redefinition of map register r0",
        ),
        (
            "[r0 = relu(x0), neg(x1)]",
            "r0",
            "map register r0 is never used",
        ),
        ("[r0 = relu(x0)]", "]", "a map program ends with its result"),
        ("[relu(y0)]", "y0", "found `y0`"),
        ("[relu(x0) x1]", "x1", "expected `]`"),
        ("[relu(%a)]", "%a", "expected a map expression"),
        ("[add(x0, 1e)]", "1e", "exponent digits"),
    ];
    // The program starts at column 26 of its line.
    for (code, at, msg) in cases {
        let col = 26 + code.find(at).expect("marker in the program");
        let e = map_text(code).expect_err(code);
        assert!(
            e.message.contains(msg) && e.line == 2 && e.col == col,
            "{code}: want column {col} `{msg}`, got {e}"
        );
    }
}

#[test]
fn attribute_text_forms() {
    let cases: Vec<(Op, &str)> = vec![
        (
            Op::Conv(ConvAttrs {
                strides: vec![],
                pads: vec![1, 1, 1, 1],
                dilations: vec![],
                group: 1,
                auto_pad: AutoPad::SameUpper,
                epilogue: Default::default(),
                integer: None,
            }),
            "{auto_pad=same_upper, pads=[1,1,1,1]}",
        ),
        (
            Op::ConstantOfShape {
                value: Tensor::from_vec(vec![1], vec![0f32]),
            },
            "",
        ),
        (
            Op::ConstantOfShape {
                value: Tensor::scalar(1.5f32),
            },
            "{value=dense<1.5> : f32[]}",
        ),
        (
            Op::QuantizeLinear {
                axis: 1,
                to: DType::U8,
            },
            "{to=u8}",
        ),
        (
            Op::Shape {
                start: 0,
                end: None,
            },
            "",
        ),
        (Op::GlobalPool(PoolKind::Lp(2)), ""),
        (
            Op::Gemm(GemmAttrs {
                alpha: F32(1.0),
                beta: F32(-0.0),
                trans_a: false,
                trans_b: true,
                epilogue: Default::default(),
                integer: None,
            }),
            "{beta=-0.0, trans_b=true}",
        ),
    ];
    for (op, want) in cases {
        let attrs = op_attrs(&op);
        let got = if attrs.is_empty() {
            String::new()
        } else {
            let items: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{{{}}}", items.join(", "))
        };
        assert_eq!(got, want, "{op:?}");
    }
}

// -------------------------------------------------------------------------------------------------
// Graphs with every op (need type inference).

/// A graph using every op variant with non-default attributes.
fn every_op_graph() -> Graph {
    let mut g = Graph::new("every_op");
    let x = g.add_input("x", TensorType::new(DType::F32, sym(&["N", "4", "8", "8"])));
    let m = g.add_input("m", TensorType::known(DType::F32, &[3, 4]));
    let ii = g.add_input("ii", TensorType::known(DType::I64, &[3, 4]));
    let n = |g: &mut Graph, op: Op, ins: &[ValueId]| -> ValueId {
        let name = format!("{op:?}");
        g.add(op, ins, "n")
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let nan = n(&mut g, Op::Unary(UnaryOp::IsNaN), &[x]);
    for u in UnaryOp::ALL {
        let arg = if u == UnaryOp::Not { nan } else { x };
        n(&mut g, Op::Unary(u), &[arg]);
    }
    for b in BinaryOp::ALL {
        let (a, c) = match b {
            BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => (nan, nan),
            BinaryOp::Mod => (ii, ii),
            _ => (x, x),
        };
        n(&mut g, Op::Binary(b), &[a, c]);
    }
    n(
        &mut g,
        Op::Map(MapProgram {
            code: vec![
                MapInstr::Input(0),
                MapInstr::Unary(UnaryOp::Sigmoid, 0),
                MapInstr::Binary(BinaryOp::Mul, 0, 1),
            ],
        }),
        &[x],
    );
    for op in [
        Op::Unary(UnaryOp::HardSigmoid {
            alpha: F32(0.3),
            beta: F32(0.25),
        }),
        Op::Unary(UnaryOp::LeakyRelu { alpha: F32(0.2) }),
        Op::Unary(UnaryOp::Elu { alpha: F32(0.5) }),
        Op::Unary(UnaryOp::Selu {
            alpha: F32(2.0),
            gamma: F32(3.0),
        }),
        Op::Unary(UnaryOp::Gelu { tanh_approx: true }),
        Op::Cast { to: DType::F16 },
        Op::Softmax { axis: 1 },
        Op::LogSoftmax { axis: 0 },
        Op::Flatten { axis: 2 },
        Op::Transpose {
            perm: vec![0, 2, 3, 1],
        },
        Op::Shape {
            start: -3,
            end: Some(-1),
        },
        Op::Size,
        Op::Identity,
        Op::GlobalPool(PoolKind::Lp(3)),
        Op::GlobalPool(PoolKind::Max),
        Op::GlobalPool(PoolKind::Average),
    ] {
        n(&mut g, op, &[x]);
    }
    let lo = g.add_const("lo", Tensor::scalar(-1.0f32));
    let hi = g.add_const("hi", Tensor::scalar(1.0f32));
    n(&mut g, Op::Clip, &[x, lo, hi]);
    n(&mut g, Op::Where, &[nan, x, lo]);
    n(&mut g, Op::Attention { scale: F32(0.125) }, &[x, x, x]);
    let w = g.add_const("conv.w", ramp(&[4, 2, 3, 3]));
    let b = g.add_const("conv.b", f32s(&[4], &[0.5, -1.0, 2.0, 0.0]));
    n(
        &mut g,
        Op::Conv(ConvAttrs {
            strides: vec![2, 2],
            pads: vec![1, 1, 1, 1],
            dilations: vec![2, 2],
            group: 2,
            auto_pad: AutoPad::NotSet,
            epilogue: Default::default(),
            integer: None,
        }),
        &[x, w, b],
    );
    n(
        &mut g,
        Op::Conv(ConvAttrs {
            strides: vec![2, 1],
            pads: vec![],
            dilations: vec![],
            group: 2,
            auto_pad: AutoPad::SameUpper,
            epilogue: Default::default(),
            integer: None,
        }),
        &[x, w],
    );
    let gb = g.add_const("gemm.b", ramp(&[5, 3]));
    let gc = g.add_const("gemm.c", f32s(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0]));
    n(
        &mut g,
        Op::Gemm(GemmAttrs {
            alpha: F32(0.5),
            beta: F32(2.0),
            trans_a: true,
            trans_b: true,
            epilogue: Default::default(),
            integer: None,
        }),
        &[m, gb, gc],
    );
    let mm = g.add_const("mm", ramp(&[4, 6]));
    n(&mut g, Op::MatMul, &[m, mm]);
    let bn: Vec<ValueId> = (0..4)
        .map(|i| g.add_const(format!("bn{i}"), f32s(&[4], &[1.0, 0.5, 0.25, 2.0])))
        .collect();
    n(
        &mut g,
        Op::BatchNorm { epsilon: F32(1e-3) },
        &[x, bn[0], bn[1], bn[2], bn[3]],
    );
    for kind in [PoolKind::Max, PoolKind::Average, PoolKind::Lp(3)] {
        n(
            &mut g,
            Op::Pool(PoolAttrs {
                kind,
                kernel: vec![3, 2],
                strides: vec![2, 2],
                pads: vec![1, 0, 1, 0],
                dilations: vec![1, 1],
                ceil_mode: true,
                count_include_pad: kind == PoolKind::Average,
                auto_pad: AutoPad::NotSet,
            }),
            &[x],
        );
    }
    let axes = g.add_const("axes", i64s(&[1, -1]));
    for kind in [
        ReduceKind::Sum,
        ReduceKind::Mean,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
        ReduceKind::L1,
        ReduceKind::L2,
        ReduceKind::LogSum,
        ReduceKind::LogSumExp,
        ReduceKind::SumSquare,
    ] {
        n(
            &mut g,
            Op::Reduce(ReduceAttrs {
                kind,
                keepdims: false,
                noop_with_empty_axes: kind == ReduceKind::Sum,
            }),
            &[x, axes],
        );
    }
    let scale = g.add_const("ln.scale", f32s(&[8], &[1.0; 8]));
    n(
        &mut g,
        Op::LayerNorm {
            axis: -1,
            epsilon: F32(1e-6),
        },
        &[x, scale],
    );
    let shape = g.add_const("shape", i64s(&[0, 4, 64]));
    n(&mut g, Op::Reshape { allowzero: false }, &[x, shape]);
    let shape2 = g.add_const("shape2", i64s(&[3, 2, 2]));
    n(&mut g, Op::Reshape { allowzero: true }, &[m, shape2]);
    n(&mut g, Op::Concat { axis: -1 }, &[x, x, x]);
    let parts = g
        .add_node(
            Op::Split {
                axis: 1,
                num_outputs: 3,
            },
            &[x],
            "split",
        )
        .unwrap();
    assert_eq!(parts.len(), 3);
    let sizes = g.add_const("sizes", i64s(&[1, 3]));
    g.add_node(
        Op::Split {
            axis: 1,
            num_outputs: 2,
        },
        &[x, sizes],
        "split2",
    )
    .unwrap();
    let starts = g.add_const("starts", i64s(&[1, 0]));
    let ends = g.add_const("ends", i64s(&[3, 7]));
    let saxes = g.add_const("saxes", i64s(&[1, 3]));
    let steps = g.add_const("steps", i64s(&[1, 2]));
    n(&mut g, Op::Slice, &[x, starts, ends, saxes, steps]);
    let idx = g.add_const("idx", Tensor::from_vec(vec![2], vec![0i64, -1]));
    n(&mut g, Op::Gather { axis: 1 }, &[x, idx]);
    let ax0 = g.add_const("ax0", i64s(&[0]));
    let u = n(&mut g, Op::Unsqueeze, &[m, ax0]);
    n(&mut g, Op::Squeeze, &[u, ax0]);
    n(&mut g, Op::Squeeze, &[u]);
    let eshape = g.add_const("eshape", i64s(&[2, 3, 1]));
    n(&mut g, Op::Expand, &[m, eshape]);
    let reps = g.add_const("reps", i64s(&[2, 1]));
    n(&mut g, Op::Tile, &[m, reps]);
    let r0 = g.add_const("r0", Tensor::scalar(0i64));
    let r1 = g.add_const("r1", Tensor::scalar(10i64));
    let r2 = g.add_const("r2", Tensor::scalar(3i64));
    n(&mut g, Op::Range, &[r0, r1, r2]);
    let cshape = g.add_const("cshape", i64s(&[2, 3]));
    n(
        &mut g,
        Op::ConstantOfShape {
            value: Tensor::from_vec(vec![1], vec![7i64]),
        },
        &[cshape],
    );
    n(
        &mut g,
        Op::ConstantOfShape {
            value: Tensor::from_vec(vec![1], vec![0f32]),
        },
        &[cshape],
    );
    let qs = g.add_const("qs", Tensor::scalar(0.05f32));
    let qz = g.add_const("qz", Tensor::scalar(-3i8));
    let q = n(
        &mut g,
        Op::QuantizeLinear {
            axis: 1,
            to: DType::I8,
        },
        &[x, qs, qz],
    );
    n(&mut g, Op::DequantizeLinear { axis: 1 }, &[q, qs, qz]);
    let qcs = g.add_const("qcs", f32s(&[4], &[0.1, 0.2, 0.3, 0.4]));
    let qcz = g.add_const("qcz", Tensor::from_vec(vec![4], vec![0u8, 1, 2, 3]));
    let qc = n(
        &mut g,
        Op::QuantizeLinear {
            axis: 1,
            to: DType::U8,
        },
        &[x, qcs, qcz],
    );
    n(&mut g, Op::DequantizeLinear { axis: 1 }, &[qc, qcs, qcz]);
    let rsizes = g.add_const("rsizes", i64s(&[16, 4]));
    let roi = g.add_const("roi", f32s(&[4], &[0.0, 0.0, 1.0, 1.0]));
    n(
        &mut g,
        Op::Resize(ResizeAttrs {
            by: ResizeBy::Sizes,
            mode: ResizeMode::Cubic,
            coord: CoordMode::TfCropAndResize,
            nearest: NearestMode::Ceil,
            cubic_coeff_a: F32(-0.5),
            exclude_outside: true,
            extrapolation_value: F32(f32::NAN),
            antialias: false,
            aspect: AspectPolicy::Stretch,
            axes: vec![2, -1],
        }),
        &[x, rsizes, roi],
    );
    let rscales = g.add_const("rscales", f32s(&[4], &[1.0, 1.0, 2.0, 0.5]));
    n(
        &mut g,
        Op::Resize(ResizeAttrs {
            by: ResizeBy::Scales,
            mode: ResizeMode::Linear,
            coord: CoordMode::AlignCorners,
            nearest: NearestMode::RoundPreferCeil,
            cubic_coeff_a: F32(-0.75),
            exclude_outside: false,
            extrapolation_value: F32(0.0),
            antialias: true,
            aspect: AspectPolicy::Stretch,
            axes: vec![],
        }),
        &[x, rscales],
    );
    let pads = g.add_const("pads", i64s(&[0, 0, 1, 1, 0, 0, 1, 1]));
    let pv = g.add_const("pv", Tensor::scalar(0.5f32));
    n(
        &mut g,
        Op::Pad {
            mode: PadMode::Reflect,
        },
        &[x, pads],
    );
    let last = n(
        &mut g,
        Op::Pad {
            mode: PadMode::Constant,
        },
        &[x, pads, pv],
    );
    let ctw = g.add_const("ct.w", ramp(&[4, 3, 3, 2]));
    let ctb = g.add_const("ct.b", f32s(&[6], &[0.5; 6]));
    n(
        &mut g,
        Op::ConvTranspose(ConvTransposeAttrs {
            strides: vec![2, 2],
            pads: vec![1, 0, 1, 0],
            dilations: vec![1, 2],
            output_padding: vec![1, 0],
            output_shape: vec![],
            group: 2,
            auto_pad: AutoPad::NotSet,
        }),
        &[x, ctw, ctb],
    );
    let ctw1 = g.add_const("ct.w1", ramp(&[4, 1, 3, 3]));
    n(
        &mut g,
        Op::ConvTranspose(ConvTransposeAttrs {
            strides: vec![2, 2],
            output_shape: vec![17, 16],
            group: 1,
            auto_pad: AutoPad::SameUpper,
            ..Default::default()
        }),
        &[x, ctw1],
    );
    for (kind, axis, keepdims, last) in [
        (ArgKind::Max, 1, false, true),
        (ArgKind::Min, -1, true, false),
    ] {
        n(
            &mut g,
            Op::Arg(ArgAttrs {
                kind,
                axis,
                keepdims,
                select_last_index: last,
            }),
            &[x],
        );
    }
    let gi = g.add_const(
        "ge.idx",
        Tensor::from_vec(vec![3, 2], vec![0i64, 1, -1, 2, 3, 0]),
    );
    n(&mut g, Op::GatherElements { axis: 1 }, &[m, gi]);
    let upd = g.add_const("upd", ramp(&[3, 2]));
    n(
        &mut g,
        Op::ScatterElements {
            axis: 1,
            reduction: ScatterReduction::Add,
        },
        &[m, gi, upd],
    );
    let ndi = g.add_const("nd.idx", Tensor::from_vec(vec![2, 1], vec![2i64, 0]));
    let ndu = g.add_const("nd.upd", ramp(&[2, 4]));
    n(
        &mut g,
        Op::ScatterNd {
            reduction: ScatterReduction::Max,
        },
        &[m, ndi, ndu],
    );
    let tk = g.add_const("trilu.k", Tensor::scalar(1i64));
    n(&mut g, Op::Trilu { upper: false }, &[x, tk]);
    n(&mut g, Op::Trilu { upper: true }, &[ii]);
    let cax = g.add_const("cum.axis", Tensor::scalar(1i32));
    n(
        &mut g,
        Op::CumSum {
            exclusive: true,
            reverse: true,
        },
        &[x, cax],
    );
    n(&mut g, Op::Hardmax { axis: 1 }, &[x]);
    n(&mut g, Op::LpNormalization { axis: 1, p: 1 }, &[x]);
    let k = g.add_const("topk.k", i64s(&[2]));
    let topk = g
        .add_node(
            Op::TopK {
                axis: 1,
                largest: false,
                sorted: false,
            },
            &[x, k],
            "topk",
        )
        .unwrap();
    assert_eq!(topk.len(), 2);
    assert_eq!(g.ty(topk[1]).to_string(), "i64[N,2,8,8]");
    g.add_output("y", last);
    g.add_output("split_1", parts[1]);
    g.add_output("topk_indices", topk[1]);
    g
}

#[test]
fn every_op_round_trips() {
    let g = every_op_graph();
    // Every op variant appears.
    let names: std::collections::BTreeSet<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    for op in every_op_with_non_default_attrs() {
        assert!(names.contains(op.name()), "missing {}", op.name());
    }
    check_round_trip(&g);
}

#[test]
fn golden_small_cnn() {
    let golden = include_str!("golden/small_cnn.kir");
    let g = parse(golden, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text::to_text(&g), golden);
    check_round_trip(&g);
}

// -------------------------------------------------------------------------------------------------
// Errors.

#[test]
fn malformed_texts_report_positions() {
    let head = "graph @g(%x: f32[2,3]) -> (y: f32[2,3]) {\n";
    let cases: Vec<(String, usize, &str)> = vec![
        ("".into(), 1, "expected `graph`"),
        ("graph g".into(), 1, "expected `@name`"),
        (format!("{head}  return %x\n"), 3, "expected `}`"),
        (format!("{head}  %0 = relu(%1) : f32[2,3]\n  return %0\n}}"), 2, "undefined value %1"),
        (format!("{head}  %0 = relu(%x) : f32[2,4]\n  return %0\n}}"), 2, "inference gives f32[2,3]"),
        (format!("{head}  %0 = relu(%x) {{alpha=1.0}} : f32[2,3]\n  return %0\n}}"), 2, "no attribute `alpha`"),
        (format!("{head}  %0 = frob(%x) : f32[2,3]\n  return %0\n}}"), 2, "unknown op `frob`"),
        (format!("{head}  %0 = relu(%x) : f32[2,3]\n  %0 = relu(%x) : f32[2,3]\n  return %0\n}}"), 3, "redefinition of %0"),
        (format!("{head}  %0 = const dense<[1, 2]> : i8[3]\n  return %x\n}}"), 2, "2 elements"),
        (format!("{head}  %0 = const dense<[1, 300]> : i8[2]\n  return %x\n}}"), 2, "out of range for i8"),
        (format!("{head}  %0 = const dense<[1.5]> : i32[1]\n  return %x\n}}"), 2, "expected an integer"),
        (format!("{head}  %0 = const dense<[1]> : bool[1]\n  return %x\n}}"), 2, "`true` or `false`"),
        (format!("{head}  %0 = const dense<[1]> : f32[N]\n  return %x\n}}"), 2, "fully known shape"),
        (format!("{head}  %0 = const dense<[1]> : f31[1]\n  return %x\n}}"), 2, "unknown dtype `f31`"),
        (format!("{head}  return %x, %x\n}}"), 2, "header declares 1 outputs"),
        (format!("{head}  %0 = const dense<1.0> : f32[]\n  return %0\n}}"), 3, "output `y` is declared f32[2,3]"),
        (format!("{head}  %0 = const dense<\"s\"> : f32[]\n  return %x\n}}"), 2, "expected a number"),
        (format!("{head}  %0 = const dense<[nan(0x1ffff)]> : f16[1]\n  return %x\n}}"), 2, "does not fit"),
        (format!("{head}  return %x\n}}\nextra"), 4, "end of input"),
        ("graph @g(%x: f32[\"unterminated) -> () {\n return\n}".into(), 1, "unterminated string"),
        ("graph @g(%0: f32[1]) -> () {\n return\n}".into(), 1, "must be named"),
        ("graph @g(%x: f32[1], %x: f32[1]) -> () {\n return\n}".into(), 1, "duplicate graph input"),
        ("graph @g(%x: f32[1] quant(scale=1.0)) -> () {\n return\n}".into(), 1, "needs both"),
        ("graph @g() -> () {\n  %0 = const elided : f32[1] quant(scale=[1.0], zero_point=1.5)\n return\n}".into(), 2, "zero points must be integers"),
        ("graph @g() -> () {\n  %0 = const elided : f32[99999999999999999999999]\n return\n}".into(), 2, "invalid dimension"),
        ("graph @g() -> () {\n  %0 = const elided : f32[1]\n  %1 = identity(%0) {x=} : f32[1]\n return\n}".into(), 3, "expected an attribute value"),
        ("graph @g() -> () {\n  %0 = const elided : f32[1] // ok\n  %1 = identity(%0) : f32[1] /\n return\n}".into(), 3, "unexpected `/`"),
        ("graph @g() -> () {\n  %0 = const elided : f32[1]\n  %1 = cast(%0) {to=f99} : f32[1]\n return\n}".into(), 3, "unknown dtype `f99`"),
        ("graph @g() -> () {\n  %0 = const elided : f32[1]\n  %1 = transpose(%0) : f32[1]\n return\n}".into(), 3, "requires attribute `perm`"),
        ("graph @g() -> () {\n  %0, %1 = const elided : f32[1]\n return\n}".into(), 2, "defines one value"),
        ("graph @g() -> () {\n  %0 = const elided : f32[1]\n  %1 = split(%0) {num_outputs=2} : f32[1]\n return\n}".into(), 3, "2 results but 1 are named"),
        ("graph @g() -> () {\n  %0 = const elided : f32[1]\n  %1 = identity(%0)\n return\n}".into(), 3, "lists 0 result types"),
        ("graph @g() -> () {\n  %0 = const dense<-infinity> : f32[]\n return\n}".into(), 2, "unexpected `-infinity`"),
        ("graph @g() -> () {\n  %0 = const dense<1.5e> : f32[]\n return\n}".into(), 2, "exponent digits"),
        ("graph @g() -> () {\n  %0 = const dense<12ab> : f32[]\n return\n}".into(), 2, "malformed number"),
        ("graph @g() -> () {\n  %0 = const dense<1> : f32[]\n".into(), 3, "expected a statement or `return`"),
    ];
    for (text, line, msg) in cases {
        let e = parse(&text, &|_| None).expect_err(&text);
        assert!(
            e.message.contains(msg) && e.line == line,
            "want line {line} `{msg}`, got {e}\n{text}"
        );
        assert!(e.to_string().starts_with(&format!("line {line}, column ")));
    }
}

// -------------------------------------------------------------------------------------------------
// Property tests.

/// One step of a random graph recipe: indices are taken modulo the number of values so far.
#[derive(Clone, Debug)]
enum Step {
    Const {
        dtype: usize,
        dims: Vec<usize>,
        seed: Vec<u8>,
        special: Vec<u8>,
    },
    Unary(usize, usize),
    Binary(usize, usize, usize),
    Leaky(usize, f32),
    Conv {
        x: usize,
        m: usize,
        k: usize,
        stride: usize,
        pad: usize,
        group: usize,
        auto: usize,
    },
    Reshape(usize, usize),
    Transpose(usize, u64),
    Concat(Vec<usize>, i64),
    Split(usize, i64, usize),
    Softmax(usize, i64),
    Cast(usize, usize),
    Pool(usize, usize, usize, bool),
    Reduce(usize, usize, bool),
    Gemm(usize, usize, f32, bool),
    QuantDequant(usize, f32, i64),
}

fn step() -> impl Strategy<Value = Step> {
    let idx = 0usize..64;
    prop_oneof![
        (
            0usize..13,
            prop::collection::vec(0usize..6, 0..4),
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(dtype, dims, seed, special)| Step::Const {
                dtype,
                dims,
                seed,
                special
            }),
        (idx.clone(), 0usize..22).prop_map(|(a, u)| Step::Unary(a, u)),
        (idx.clone(), idx.clone(), 0usize..18).prop_map(|(a, b, o)| Step::Binary(a, b, o)),
        (idx.clone(), any::<f32>()).prop_map(|(a, f)| Step::Leaky(a, f)),
        (
            idx.clone(),
            1usize..6,
            1usize..4,
            1usize..3,
            0usize..2,
            1usize..3,
            0usize..4
        )
            .prop_map(|(x, m, k, stride, pad, group, auto)| Step::Conv {
                x,
                m,
                k,
                stride,
                pad,
                group,
                auto
            }),
        (idx.clone(), 0usize..4).prop_map(|(a, s)| Step::Reshape(a, s)),
        (idx.clone(), any::<u64>()).prop_map(|(a, s)| Step::Transpose(a, s)),
        (prop::collection::vec(idx.clone(), 1..4), -3i64..3).prop_map(|(v, a)| Step::Concat(v, a)),
        (idx.clone(), -2i64..3, 1usize..4).prop_map(|(a, ax, n)| Step::Split(a, ax, n)),
        (idx.clone(), -2i64..3).prop_map(|(a, ax)| Step::Softmax(a, ax)),
        (idx.clone(), 0usize..13).prop_map(|(a, d)| Step::Cast(a, d)),
        (idx.clone(), 0usize..3, 1usize..3, any::<bool>())
            .prop_map(|(a, k, s, c)| Step::Pool(a, k, s, c)),
        (idx.clone(), 0usize..10, any::<bool>()).prop_map(|(a, k, kd)| Step::Reduce(a, k, kd)),
        (idx.clone(), idx.clone(), any::<f32>(), any::<bool>())
            .prop_map(|(a, b, al, t)| Step::Gemm(a, b, al, t)),
        (idx, 0.001f32..10.0, -5i64..5).prop_map(|(a, s, z)| Step::QuantDequant(a, s, z)),
    ]
}

const SPECIAL_F32: [f32; 8] = [
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    1e-45,
    f32::MAX,
    0.1,
];

fn random_const(dtype: DType, dims: &[usize], seed: &[u8], special: &[u8]) -> Tensor {
    let n: usize = dims.iter().product();
    let size = dtype.size();
    let mut bytes: Vec<u8> = (0..n * size)
        .map(|i| {
            seed.get(i % seed.len().max(1))
                .copied()
                .unwrap_or(0)
                .wrapping_add((i / seed.len().max(1)) as u8)
        })
        .collect();
    if dtype == DType::Bool {
        for b in &mut bytes {
            *b &= 1;
        }
    }
    // Sprinkle special values.
    for (k, &s) in special.iter().enumerate() {
        if n == 0 {
            break;
        }
        let i = (k * 7 + s as usize) % n;
        let v = SPECIAL_F32[s as usize % SPECIAL_F32.len()];
        let sp: Vec<u8> = match dtype {
            DType::F32 => v.to_le_bytes().to_vec(),
            DType::F64 => (v as f64).to_le_bytes().to_vec(),
            DType::F16 => [
                0x0000u16, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0x0001, 0x7bff, 0xfe01,
            ][s as usize % 8]
                .to_le_bytes()
                .to_vec(),
            DType::BF16 => [
                0x0000u16, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x0001, 0x7f7f, 0xffc1,
            ][s as usize % 8]
                .to_le_bytes()
                .to_vec(),
            _ => continue,
        };
        bytes[i * size..(i + 1) * size].copy_from_slice(&sp);
    }
    Tensor::from_bytes(dtype, dims.to_vec(), bytes.into()).unwrap()
}

fn build(inputs: &[(String, TensorType)], steps: &[Step], outs: &[usize]) -> Graph {
    let mut g = Graph::new("random graph");
    // Unique input names (duplicates are renamed by the printer, tested separately).
    // A fixed image-like input so that conv and pooling get a chance.
    let mut vals: Vec<ValueId> = vec![g.add_input(
        "img",
        TensorType::new(DType::F32, sym(&["N", "4", "6", "6"])),
    )];
    for (i, (n, t)) in inputs.iter().enumerate() {
        let name = if n == "img" || inputs[..i].iter().any(|(m, _)| m == n) {
            format!("{n}{i}")
        } else {
            n.clone()
        };
        vals.push(g.add_input(name, t.clone()));
    }
    let pick = |vals: &Vec<ValueId>, i: usize| vals[i % vals.len()];
    for s in steps {
        let node = |g: &mut Graph, op: Op, ins: &[ValueId], vals: &mut Vec<ValueId>| {
            if let Ok(o) = g.add_node(op, ins, "") {
                vals.extend(o);
            }
        };
        match s {
            Step::Const {
                dtype,
                dims,
                seed,
                special,
            } => {
                let t = random_const(DType::ALL[*dtype], dims, seed, special);
                vals.push(g.add_const(format!("c{}", dims.len()), t));
            }
            Step::Unary(a, u) => node(
                &mut g,
                Op::Unary(UnaryOp::ALL[*u]),
                &[pick(&vals, *a)],
                &mut vals,
            ),
            Step::Binary(a, b, o) => node(
                &mut g,
                Op::Binary(BinaryOp::ALL[*o]),
                &[pick(&vals, *a), pick(&vals, *b)],
                &mut vals,
            ),
            Step::Leaky(a, f) => node(
                &mut g,
                Op::Unary(UnaryOp::LeakyRelu { alpha: F32(*f) }),
                &[pick(&vals, *a)],
                &mut vals,
            ),
            Step::Conv {
                x,
                m,
                k,
                stride,
                pad,
                group,
                auto,
            } => {
                let xv = pick(&vals, *x);
                let ty = g.ty(xv).clone();
                if ty.rank() != 4 || ty.dtype != DType::F32 {
                    continue;
                }
                let Some(c) = ty.shape[1].known() else {
                    continue;
                };
                if c % group != 0 || m % group != 0 {
                    continue;
                }
                let w = g.add_const("w", ramp(&[*m, c / group, *k, *k]));
                vals.push(w);
                let auto_pad = [
                    AutoPad::NotSet,
                    AutoPad::SameUpper,
                    AutoPad::SameLower,
                    AutoPad::Valid,
                ][*auto];
                let op = Op::Conv(ConvAttrs {
                    strides: vec![*stride; 2],
                    pads: if auto_pad == AutoPad::NotSet {
                        vec![*pad; 4]
                    } else {
                        vec![]
                    },
                    dilations: vec![],
                    group: *group,
                    auto_pad,
                    epilogue: Default::default(),
                    integer: None,
                });
                node(&mut g, op, &[xv, w], &mut vals);
            }
            Step::Reshape(a, s) => {
                let shape = [vec![-1i64], vec![0, -1], vec![1, -1, 2], vec![0, 0, -1]][*s].clone();
                let sh = g.add_const("shape", i64s(&shape));
                vals.push(sh);
                node(
                    &mut g,
                    Op::Reshape { allowzero: false },
                    &[pick(&vals, *a), sh],
                    &mut vals,
                );
            }
            Step::Transpose(a, seed) => {
                let xv = pick(&vals, *a);
                let r = g.ty(xv).rank();
                let mut perm: Vec<usize> = (0..r).collect();
                let mut s = *seed;
                for i in (1..r).rev() {
                    perm.swap(i, (s % (i as u64 + 1)) as usize);
                    s /= i as u64 + 1;
                }
                node(&mut g, Op::Transpose { perm }, &[xv], &mut vals);
            }
            Step::Concat(v, axis) => {
                let ins: Vec<ValueId> = v.iter().map(|&i| pick(&vals, i)).collect();
                node(&mut g, Op::Concat { axis: *axis }, &ins, &mut vals);
            }
            Step::Split(a, axis, n) => node(
                &mut g,
                Op::Split {
                    axis: *axis,
                    num_outputs: *n,
                },
                &[pick(&vals, *a)],
                &mut vals,
            ),
            Step::Softmax(a, axis) => node(
                &mut g,
                Op::Softmax { axis: *axis },
                &[pick(&vals, *a)],
                &mut vals,
            ),
            Step::Cast(a, d) => node(
                &mut g,
                Op::Cast { to: DType::ALL[*d] },
                &[pick(&vals, *a)],
                &mut vals,
            ),
            Step::Pool(a, k, s, ceil) => {
                let kind = [PoolKind::Max, PoolKind::Average, PoolKind::Lp(3)][*k];
                let op = Op::Pool(PoolAttrs {
                    kind,
                    kernel: vec![2, 2],
                    strides: vec![*s, *s],
                    pads: vec![],
                    dilations: vec![],
                    ceil_mode: *ceil,
                    count_include_pad: false,
                    auto_pad: AutoPad::NotSet,
                });
                node(&mut g, op, &[pick(&vals, *a)], &mut vals);
            }
            Step::Reduce(a, k, keepdims) => {
                let kind = [
                    ReduceKind::Sum,
                    ReduceKind::Mean,
                    ReduceKind::Max,
                    ReduceKind::Min,
                    ReduceKind::Prod,
                    ReduceKind::L1,
                    ReduceKind::L2,
                    ReduceKind::LogSum,
                    ReduceKind::LogSumExp,
                    ReduceKind::SumSquare,
                ][*k];
                let axes = g.add_const("axes", i64s(&[-1]));
                vals.push(axes);
                let op = Op::Reduce(ReduceAttrs {
                    kind,
                    keepdims: *keepdims,
                    noop_with_empty_axes: false,
                });
                node(&mut g, op, &[pick(&vals, *a), axes], &mut vals);
            }
            Step::Gemm(a, b, alpha, tb) => {
                let op = Op::Gemm(GemmAttrs {
                    alpha: F32(*alpha),
                    beta: F32(1.0),
                    trans_a: false,
                    trans_b: *tb,
                    epilogue: Default::default(),
                    integer: None,
                });
                node(&mut g, op, &[pick(&vals, *a), pick(&vals, *b)], &mut vals);
            }
            Step::QuantDequant(a, s, z) => {
                let sc = g.add_const("s", Tensor::scalar(*s));
                let zp = g.add_const("z", Tensor::scalar(*z as i8));
                vals.push(sc);
                vals.push(zp);
                let xv = pick(&vals, *a);
                if let Ok(q) = g.add_node(
                    Op::QuantizeLinear {
                        axis: 1,
                        to: DType::I8,
                    },
                    &[xv, sc, zp],
                    "",
                ) {
                    vals.push(q[0]);
                    node(
                        &mut g,
                        Op::DequantizeLinear { axis: 1 },
                        &[q[0], sc, zp],
                        &mut vals,
                    );
                }
            }
        }
    }
    for (i, &o) in outs.iter().enumerate() {
        let name = if i % 2 == 0 {
            format!("out{i}")
        } else {
            format!("out {i}:\"q\"")
        };
        g.add_output(name, pick(&vals, o));
    }
    g
}

fn input_type() -> impl Strategy<Value = TensorType> {
    let dim = prop_oneof![
        4 => (1usize..9).prop_map(Dim::Known),
        1 => Just(Dim::sym("N")),
        1 => Just(Dim::sym("batch size")),
        1 => Just(Dim::Unknown),
    ];
    (
        prop::sample::select(vec![
            DType::F32,
            DType::F32,
            DType::F16,
            DType::I64,
            DType::Bool,
            DType::U8,
        ]),
        prop::collection::vec(dim, 0..5),
    )
        .prop_map(|(d, dims)| TensorType::new(d, dims.into_iter().collect()))
}

proptest! {
    // 256 cases by default; set PROPTEST_CASES for longer runs.

    #[test]
    fn random_graphs_round_trip(
        inputs in prop::collection::vec(("[a-z\"% ]{0,4}", input_type()), 1..4),
        steps in prop::collection::vec(step(), 0..24),
        outs in prop::collection::vec(0usize..64, 0..4),
    ) {
        let g = build(&inputs, &steps, &outs);
        check_round_trip(&g);
    }

    #[test]
    fn random_strings_never_panic(s in "\\PC{0,200}") {
        let _ = parse(&s, &|_| None);
    }

    #[test]
    fn mutated_texts_never_panic(
        cut in 0usize..4000,
        len in 0usize..20,
        insert in prop::sample::select(vec!["", "%", "@", "\"", "[", "]", "(", ")", "{", "}", "<", ">", ",", ":", "=", "-", "0x", "nan(", "1e", "\n", "//", "?", "%0", "%x", "f32[", "quant(", "dense<", "-inf", "1.5", "99999999999999999999"]),
    ) {
        let base = golden_text_for_fuzzing();
        let chars: Vec<char> = base.chars().collect();
        let at = cut % (chars.len() + 1);
        let end = (at + len).min(chars.len());
        let mutated: String = chars[..at].iter().collect::<String>() + insert + &chars[end..].iter().collect::<String>();
        match parse(&mutated, &|_| None) {
            Ok(g) => {
                // Whatever parses, prints stably.
                let t = text::to_text(&g);
                let g2 = parse(&t, &|_| None).unwrap_or_else(|e| panic!("{e}\n{t}"));
                prop_assert_eq!(text::to_text(&g2), t);
            }
            Err(e) => prop_assert!(e.line >= 1 && e.col >= 1),
        }
    }
}

#[test]
fn fuzz_base_parses() {
    let g = parse(golden_text_for_fuzzing(), &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(g.nodes.len(), 6);
    let t = text::to_text(&g);
    assert_eq!(
        t.lines().skip(1).collect::<Vec<_>>(),
        golden_text_for_fuzzing()
            .lines()
            .skip(2)
            .collect::<Vec<_>>()
    );
}

fn golden_text_for_fuzzing() -> &'static str {
    include_str!("golden/fuzz_base.kir")
}

/// A quantized conv and gemm print every integer attribute and the quantized output types, and
/// read back to the same graph.
#[test]
fn quantized_conv_and_gemm_round_trip() {
    let mut g = Graph::new("q");
    let x = g.add_input("x", TensorType::known(DType::U8, &[1, 2, 4, 4]));
    let w = g.add_const("w", Tensor::from_vec(vec![3, 2, 3, 3], vec![1i8; 54]));
    let b = g.add_const("b", Tensor::from_vec(vec![3], vec![5i32, -6, 7]));
    let requant = Requant {
        to: DType::U8,
        multiplier: vec![F32(0.25), F32(0.125), F32(0.5)],
        scale: F32(0.05),
        zero_point: 3,
        min: 3,
        max: 255,
        mode: RequantMode::Float,
    };
    let conv = Op::Conv(ConvAttrs {
        group: 1,
        pads: vec![1; 4],
        integer: Some(IntegerAttrs {
            x_zero_point: 128,
            requant: Some(requant),
        }),
        ..Default::default()
    });
    let y = g.add_node(conv, &[x, w, b], "conv").unwrap()[0];
    assert_eq!(g.ty(y).dtype, DType::U8);
    assert_eq!(g.ty(y).quant.as_ref().unwrap().zero_point, vec![3]);
    let f = g.add_node(Op::Flatten { axis: 1 }, &[y], "flat").unwrap()[0];
    let wb = g.add_const("wb", Tensor::from_vec(vec![4, 48], vec![-1i8; 192]));
    let gemm = Op::Gemm(GemmAttrs {
        trans_b: true,
        integer: Some(IntegerAttrs {
            x_zero_point: 3,
            requant: None,
        }),
        ..Default::default()
    });
    let z = g.add_node(gemm, &[f, wb], "fc").unwrap()[0];
    assert_eq!(g.ty(z).dtype, DType::I32);
    g.add_output("z", z);
    let text = check_round_trip(&g);
    for needle in [
        "x_zero_point=128",
        "requant_multiplier=dense<[0.25, 0.125, 0.5]> : f32[3]",
        "requant_to=u8",
        "requant_min=3",
        "requant_mode=float",
        "x_zero_point=3}",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
}
