//! `kestrel::stages`: prune → distill → quantize on the committed digits fixture.

use kestrel::stages::{self, DistillStage, QuantizeStageOptions, StagesConfig};
use kestrel_passes::prune::{Importance, PruneOptions};
use kestrel_passes::quantize::{Method, QuantizeOptions};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/digits")
        .join(name)
}

#[test]
fn prune_distill_quantize_rows() {
    let model = fixture("digits_cnn.onnx");
    let data = fixture("digits_cnn.io.npz");
    let labels = fixture("digits_test_y.npy");
    let g = kestrel::driver::load(&model).unwrap().graph;
    let classes = kestrel::train::classes(&g, &model).unwrap();
    let ds = kestrel::train::data::Dataset::load(&g, &data, Some(&labels), classes).unwrap();
    let train = kestrel::train::TrainOptions {
        epochs: 1,
        ..Default::default()
    };
    let cfg = StagesConfig {
        prune: Some(PruneOptions {
            ratio: 0.5,
            importance: Importance::parse("l2").unwrap(),
            global: false,
            round_to: 1,
            keep: vec![],
            only: None,
        }),
        distill: Some(DistillStage {
            data: &ds,
            temperature: 4.0,
            alpha: 0.9,
            train,
        }),
        quantize: Some((
            &data,
            QuantizeStageOptions {
                method: Method::parse("minmax", None).unwrap(),
                options: QuantizeOptions::default(),
                threads: 1,
                qat: false,
            },
        )),
        eval: None,
        iters: 3,
    };
    let (_, report) = stages::run(&g, &model, &cfg).unwrap();
    print!("{}", report.markdown());
    let names: Vec<_> = report.rows.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(names, ["float", "pruned", "distilled", "int8"]);
    assert!(report.rows[1].macs < report.rows[0].macs);
    assert!(report.rows.iter().all(|r| r.accuracy.is_some()));
    assert!(report.accuracy_on.contains("distill data"));
}

#[test]
fn qat_is_a_clear_error() {
    let model = fixture("digits_cnn.onnx");
    let data = fixture("digits_cnn.io.npz");
    let g = kestrel::driver::load(&model).unwrap().graph;
    let opts = QuantizeStageOptions {
        method: Method::parse("minmax", None).unwrap(),
        options: QuantizeOptions::default(),
        threads: 1,
        qat: true,
    };
    let e = stages::quantize_stage(&g, &model, &data, &opts).unwrap_err();
    assert!(format!("{e:#}").contains("--qat is not available yet"));
}
