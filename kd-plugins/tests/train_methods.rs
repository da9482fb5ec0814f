//! Each method trains a student on the synthetic set through the generic
//! trainer: the loss falls and the student beats chance clearly.
use kd_core::candle::Device;
use kd_core::loss::Params;
use kd_core::{registry, ArchConfig, Model};
use kd_plugins as _;
use kd_train::data::{synthetic, Splits, SyntheticSpec};
use kd_train::train::{Silent, TrainConfig, Trainer};

fn data() -> Splits {
    synthetic(&SyntheticSpec {
        train: 384,
        test: 200,
        shape: [3, 16, 16],
        classes: 4,
        seed: 5,
    })
    .unwrap()
}

fn config(d: &Splits) -> ArchConfig {
    ArchConfig {
        input_shape: d.train.shape,
        num_classes: d.train.num_classes(),
    }
}

fn teacher(d: &Splits) -> Model {
    let t = Model::new("deep_nn", config(d), 1, &Device::Cpu).unwrap();
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 32,
        lr: 0.002,
        ..TrainConfig::default()
    };
    let mut tr = Trainer::new(
        &t,
        None,
        registry::method("ce").unwrap(),
        &Params::new(),
        cfg,
        &d.train,
        &Device::Cpu,
    )
    .unwrap();
    tr.fit(&d.train, None, &mut Silent).unwrap();
    t
}

#[test]
fn every_method_lowers_its_loss_and_beats_chance() {
    let d = data();
    let t = teacher(&d);
    for method in ["ce", "kd", "cosine", "fitnets"] {
        let student = Model::new("light_nn", config(&d), 42, &Device::Cpu).unwrap();
        let cfg = TrainConfig {
            epochs: 3,
            batch_size: 32,
            lr: 0.003,
            ..TrainConfig::default()
        };
        let plugin = registry::method(method).unwrap();
        let mut tr = Trainer::new(
            &student,
            Some(&t),
            plugin,
            &Params::new(),
            cfg,
            &d.train,
            &Device::Cpu,
        )
        .unwrap();
        let initial: Vec<Vec<f32>> = kd_core::model::sorted_tensors(tr.adapters())
            .iter()
            .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        let epochs = tr.fit(&d.train, None, &mut Silent).unwrap();
        assert!(
            epochs[2].loss < epochs[0].loss,
            "{method}: loss did not fall: {epochs:?}"
        );
        if method != "ce" {
            assert!(
                epochs[2].parts.contains_key(method),
                "{method}: its term is reported"
            );
        }
        let acc = tr.evaluate(&d.test).unwrap().accuracy;
        // 4 classes: chance is 25 %.
        assert!(
            acc > 50.0,
            "{method}: {acc:.1}% is not clearly above chance (25%)"
        );
        let after: Vec<Vec<f32>> = kd_core::model::sorted_tensors(tr.adapters())
            .iter()
            .map(|(_, v)| v.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        if method == "fitnets" {
            assert_eq!(initial.len(), 2, "the regressor's weight and bias");
            assert_ne!(initial, after, "the regressor trains with the student");
            let names: Vec<String> = student.tensors().into_iter().map(|(n, _)| n).collect();
            assert!(
                names.iter().all(|n| !n.contains("regressor")),
                "the student holds no regressor: {names:?}"
            );
        } else {
            assert!(initial.is_empty(), "{method} has no trainable helpers");
        }
    }
}
