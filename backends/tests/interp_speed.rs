//! Speed check: a ResNet-18-shaped graph (same convolutions, 1.8 G MACs, random weights) built with
//! the IR builder. Ignored by default (timing depends on the machine); run with
//! `cargo test -p kestrel-backends --test interp_speed -- --ignored --nocapture`.

mod common;
use common::*;
use kestrel_backends::interp::run;
use kestrel_ir::testing::{Lcg, Random};
use kestrel_ir::{
    AutoPad, BinaryOp, ConvAttrs, DType, GemmAttrs, Graph, Op, PoolAttrs, PoolKind, TensorType,
    UnaryOp, ValueId,
};

struct Builder {
    g: Graph,
    seed: u64,
}

impl Builder {
    fn weights(&mut self, dims: &[usize], scale: f32) -> ValueId {
        let n: usize = dims.iter().product();
        self.seed += 1;
        let mut rng = Lcg::from_state(self.seed);
        let v: Vec<f32> = (0..n).map(|_| rng.uniform_f32(-1.0, 1.0) * scale).collect();
        let name = format!("w{}", self.seed);
        self.g.add_const(name, f32t(dims, &v))
    }

    fn conv(
        &mut self,
        x: ValueId,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        relu: bool,
    ) -> ValueId {
        let w = self.weights(&[cout, cin, k, k], (2.0 / (cin * k * k) as f32).sqrt());
        let b = self.weights(&[cout], 0.01);
        let attrs = ConvAttrs {
            strides: vec![stride; 2],
            pads: vec![k / 2; 4],
            dilations: vec![],
            group: 1,
            auto_pad: AutoPad::NotSet,
            epilogue: Default::default(),
            integer: None,
        };
        let y = self.g.add(Op::Conv(attrs), &[x, w, b], "conv").unwrap();
        if relu {
            self.g.add(Op::Unary(UnaryOp::Relu), &[y], "relu").unwrap()
        } else {
            y
        }
    }

    fn block(&mut self, x: ValueId, cin: usize, cout: usize, stride: usize) -> ValueId {
        let a = self.conv(x, cin, cout, 3, stride, true);
        let b = self.conv(a, cout, cout, 3, 1, false);
        let skip = if stride != 1 || cin != cout {
            self.conv(x, cin, cout, 1, stride, false)
        } else {
            x
        };
        let s = self
            .g
            .add(Op::Binary(BinaryOp::Add), &[b, skip], "add")
            .unwrap();
        self.g.add(Op::Unary(UnaryOp::Relu), &[s], "relu").unwrap()
    }
}

fn resnet18_shaped() -> Graph {
    let mut b = Builder {
        g: Graph::new("resnet18-shaped"),
        seed: 0,
    };
    let x =
        b.g.add_input("input", TensorType::known(DType::F32, &[1, 3, 224, 224]));
    let mut h = b.conv(x, 3, 64, 7, 2, true);
    let pool = PoolAttrs {
        kind: PoolKind::Max,
        kernel: vec![3, 3],
        strides: vec![2, 2],
        pads: vec![1; 4],
        dilations: vec![],
        ceil_mode: false,
        count_include_pad: false,
        auto_pad: AutoPad::NotSet,
    };
    h = b.g.add(Op::Pool(pool), &[h], "maxpool").unwrap();
    let mut c = 64;
    for (cout, stride) in [(64, 1), (128, 2), (256, 2), (512, 2)] {
        h = b.block(h, c, cout, stride);
        h = b.block(h, cout, cout, 1);
        c = cout;
    }
    h =
        b.g.add(Op::GlobalPool(PoolKind::Average), &[h], "gap")
            .unwrap();
    h = b.g.add(Op::Flatten { axis: 1 }, &[h], "flatten").unwrap();
    let w = b.weights(&[1000, 512], 0.05);
    let bias = b.weights(&[1000], 0.01);
    let gemm = GemmAttrs {
        trans_b: true,
        ..Default::default()
    };
    h = b.g.add(Op::Gemm(gemm), &[h, w, bias], "fc").unwrap();
    b.g.add_output("logits", h);
    b.g
}

#[test]
#[ignore]
fn resnet18_shaped_graph_runs_quickly() {
    let g = resnet18_shaped();
    let x = iota(&[1, 3, 224, 224], 0.0);
    let x = f32t(
        &[1, 3, 224, 224],
        &x.to_f32_vec()
            .iter()
            .map(|v| (v * 0.001).sin())
            .collect::<Vec<_>>(),
    );
    let start = std::time::Instant::now();
    let out = run(&g, &[x]).unwrap();
    let secs = start.elapsed().as_secs_f64();
    eprintln!("resnet18-shaped graph: {secs:.3} s");
    assert_eq!(out[0].dims(), &[1, 1000]);
    assert!(out[0].to_f32_vec().iter().all(|v| v.is_finite()));
    assert!(secs < 5.0, "took {secs:.3} s");
}
