//! The generic trainer on a tiny CNN defined here, registered the way any
//! plugin registers its architecture.
use std::collections::BTreeMap;

use kd_core::candle::{Device, Module, Tensor};
use kd_core::candle_nn::VarBuilder;
use kd_core::loss::Params;
use kd_core::nn::{linear, max_pool2d, Conv2d, Conv2dConfig};
use kd_core::registry::{ArchPlugin, MethodPlugin};
use kd_core::{ArchConfig, Mode, Model, Network, Outputs, Result};
use kd_train::data::{synthetic, SyntheticSpec};
use kd_train::train::{Silent, TrainConfig, Trainer};

struct Tiny {
    conv: Conv2d,
    fc: kd_core::nn::Linear,
}

impl Network for Tiny {
    fn forward(&self, images: &Tensor, _mode: Mode) -> Result<Outputs> {
        let x = max_pool2d(&self.conv.forward(images)?.relu()?, 2)?;
        let flat = x.flatten_from(1)?;
        Ok(Outputs {
            logits: self.fc.forward(&flat)?,
            taps: BTreeMap::from([("flat".into(), flat)]),
        })
    }
}

fn tiny(config: &ArchConfig, vb: VarBuilder) -> Result<Box<dyn Network>> {
    let [c, h, w] = config.input_shape;
    Ok(Box::new(Tiny {
        conv: Conv2d::new(c, 8, Conv2dConfig::SAME_3X3, vb.pp("conv"))?,
        fc: linear(8 * (h / 2) * (w / 2), config.num_classes, vb.pp("fc"))?,
    }))
}

fn tiny_taps(config: &ArchConfig) -> kd_core::registry::TapShapes {
    let [_, h, w] = config.input_shape;
    vec![("flat", vec![8 * (h / 2) * (w / 2)])]
}

kd_core::inventory::submit! {
    ArchPlugin { name: "test_tiny", summary: "a tiny test CNN", build: tiny, taps: tiny_taps }
}

kd_core::inventory::submit! {
    MethodPlugin { name: "test_supervised", summary: "cross-entropy", params: &[], taps: &[], build: None, fixtures: &[] }
}

fn train(seed: u64, epochs: usize) -> (Model, f64) {
    let data = synthetic(&SyntheticSpec {
        train: 600,
        test: 200,
        shape: [3, 12, 12],
        classes: 4,
        seed: 3,
    })
    .unwrap();
    let config = ArchConfig {
        input_shape: [3, 12, 12],
        num_classes: 4,
    };
    let model = Model::new("test_tiny", config, seed, &Device::Cpu).unwrap();
    let method = kd_core::registry::method("test_supervised").unwrap();
    let cfg = TrainConfig {
        epochs,
        batch_size: 32,
        lr: 0.003,
        seed,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(
        &model,
        None,
        method,
        &Params::new(),
        cfg,
        &data.train,
        &Device::Cpu,
    )
    .unwrap();
    let summaries = trainer
        .fit(&data.train, Some(&data.test), &mut Silent)
        .unwrap();
    if epochs > 1 {
        assert!(
            summaries.last().unwrap().loss < summaries[0].loss,
            "loss falls: {summaries:?}"
        );
    }
    let acc = trainer.evaluate(&data.test).unwrap().accuracy;
    (model, acc)
}

fn bits(m: &Model) -> Vec<(String, Vec<u32>)> {
    m.tensors()
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn a_tiny_cnn_learns_the_synthetic_set_well_above_chance() {
    let (_, acc) = train(42, 3);
    // 4 classes: chance is 25 %.
    assert!(
        acc > 70.0,
        "test accuracy {acc:.1}% is not clearly above chance (25%)"
    );
}

#[test]
fn same_seed_same_bits_other_seed_other_weights() {
    let (a, _) = train(42, 1);
    let (b, _) = train(42, 1);
    let (c, _) = train(43, 1);
    assert_eq!(
        bits(&a),
        bits(&b),
        "same seed must give bitwise identical weights"
    );
    assert_ne!(bits(&a), bits(&c), "another seed must give other weights");
}

#[test]
fn initialisation_follows_pytorch_bounds_and_is_seeded() {
    let config = ArchConfig {
        input_shape: [3, 12, 12],
        num_classes: 4,
    };
    let a = Model::new("test_tiny", config.clone(), 42, &Device::Cpu).unwrap();
    let b = Model::new("test_tiny", config, 42, &Device::Cpu).unwrap();
    assert_eq!(bits(&a), bits(&b));
    for (name, t) in a.tensors() {
        let fan_in = if name.starts_with("conv") {
            3 * 9
        } else {
            8 * 6 * 6
        } as f32;
        let bound = 1.0 / fan_in.sqrt();
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            max <= bound && (v.len() < 100 || max > 0.9 * bound),
            "{name}: max |w| {max} vs bound {bound}"
        );
    }
}

#[test]
fn absurd_settings_are_refused_by_name() {
    let data = synthetic(&SyntheticSpec {
        train: 10,
        test: 5,
        shape: [1, 8, 8],
        classes: 2,
        seed: 0,
    })
    .unwrap();
    let model = Model::new(
        "test_tiny",
        ArchConfig {
            input_shape: [1, 8, 8],
            num_classes: 2,
        },
        0,
        &Device::Cpu,
    )
    .unwrap();
    let method = kd_core::registry::method("test_supervised").unwrap();
    for (cfg, word) in [
        (
            TrainConfig {
                lr: -1.0,
                ..TrainConfig::default()
            },
            "learning rate",
        ),
        (
            TrainConfig {
                epochs: 0,
                ..TrainConfig::default()
            },
            "epochs",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..TrainConfig::default()
            },
            "batch size",
        ),
        (
            TrainConfig {
                ce_weight: -0.5,
                ..TrainConfig::default()
            },
            "ce weight",
        ),
    ] {
        let err = Trainer::new(
            &model,
            None,
            method,
            &Params::new(),
            cfg,
            &data.train,
            &Device::Cpu,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains(word), "{err}");
    }
    let err = kd_core::registry::method("test_supervisd")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("Did you mean `test_supervised`"), "{err}");
}
