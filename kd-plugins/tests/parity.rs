//! Parity with PyTorch: the fixtures in tests/fixtures were made by
//! `tests/fixtures/generate.py` from the tutorial's own classes and loss
//! formulas (see tests/fixtures/README.md).
use std::collections::BTreeMap;
use std::path::PathBuf;

use kd_core::candle::{DType, Device, Tensor, Var};
use kd_core::loss::cross_entropy;
use kd_core::optim::{Adam, Optimizer};
use kd_core::verify::{check_fixture, Fixture};
use kd_core::{weights, ArchConfig, Mode, Model, Student};
use kd_plugins as _;

/// tests/fixtures, or `KD_FIXTURES` when set.
fn fixture_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("KD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "missing fixture {}: regenerate the fixtures with `python3 tests/fixtures/generate.py` (tests/fixtures/README.md says how to install what it needs)",
        path.display()
    );
    path
}

fn read(name: &str) -> BTreeMap<String, Tensor> {
    weights::read(&fixture_path(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
        .tensors
}

/// 1e-4 relative for entries above a tenth of the tensor's largest value, and
/// 1e-5 of that value for the entries below (sums in another order differ in
/// the last bits). The teacher's 128->64 layer runs Winograd's F(4x4, 3x3),
/// about 4x the direct convolution's rounding error: its smallest gradient
/// entries differed by up to 1.6e-6 of the largest, over the 1e-6 a floor of
/// a hundredth allowed (torch.testing's default for f32 is 1.3e-6 relative
/// plus 1e-5 absolute, far looser for gradients this small).
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_close_within(what, got, want, 1e-4)
}

/// [`assert_close`] with the relative error allowed (1e-4 there).
fn assert_close_within(what: &str, got: &Tensor, want: &Tensor, tolerance: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let w = want
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = (0usize, 0f32);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs() / (b.abs().max(scale * 1e-1).max(1e-12));
        if err > worst.1 || err.is_nan() {
            worst = (i, err);
        }
    }
    assert!(
        worst.1 <= tolerance,
        "{what}: element {} differs: got {}, PyTorch {} (relative error {:.2e})",
        worst.0,
        g[worst.0],
        w[worst.0],
        worst.1
    );
}

fn model(arch: &str, shape: [usize; 3]) -> Model {
    let tag = format!("{}x{}x{}", shape[0], shape[1], shape[2]);
    let config = ArchConfig {
        input_shape: shape,
        num_classes: 10,
    };
    let m = Model::new(arch, config, 0, &Device::Cpu).unwrap();
    weights::load_into(&m, &read_weights(&format!("{arch}_{tag}"))).unwrap();
    m
}

/// A state_dict fixture: `STEM.safetensors` and any `STEM.partK.safetensors`,
/// with tensors over 1 MiB stored as row blocks `NAME@0`, `NAME@1`, ... that
/// are concatenated back (generate.py's `save_weights`).
fn read_weights(stem: &str) -> weights::WeightsFile {
    let mut file = weights::read(&fixture_path(&format!("{stem}.safetensors"))).unwrap();
    let name = std::path::Path::new(stem)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for k in 1.. {
        let part = fixture_path(&format!("{stem}.safetensors"))
            .with_file_name(format!("{name}.part{k}.safetensors"));
        if !part.exists() {
            break;
        }
        file.tensors.extend(weights::read(&part).unwrap().tensors);
    }
    let mut blocks: BTreeMap<String, Vec<(usize, Tensor)>> = BTreeMap::new();
    for (key, t) in std::mem::take(&mut file.tensors) {
        match key.split_once('@') {
            Some((name, i)) => blocks
                .entry(name.into())
                .or_default()
                .push((i.parse().unwrap(), t)),
            None => {
                file.tensors.insert(key, t);
            }
        }
    }
    for (name, mut parts) in blocks {
        parts.sort_by_key(|p| p.0);
        let parts: Vec<Tensor> = parts.into_iter().map(|p| p.1).collect();
        file.tensors.insert(name, Tensor::cat(&parts, 0).unwrap());
    }
    file
}

fn forward_parity(shape: [usize; 3]) {
    let tag = format!("{}x{}x{}", shape[0], shape[1], shape[2]);
    let io = read(&format!("io_{tag}.safetensors"));
    for arch in ["deep_nn", "light_nn"] {
        let m = model(arch, shape);
        let out = m.forward(&io["images"], Mode::Eval).unwrap();
        assert_close(
            &format!("{arch} {tag} logits"),
            &out.logits,
            &io[&format!("{arch}.logits")],
        );
        for tap in ["features", "flat"] {
            assert_close(
                &format!("{arch} {tag} tap {tap}"),
                out.tap(tap).unwrap(),
                &io[&format!("{arch}.{tap}")],
            );
        }
    }
}

fn gradient_parity(shape: [usize; 3]) {
    let tag = format!("{}x{}x{}", shape[0], shape[1], shape[2]);
    let io = read(&format!("io_{tag}.safetensors"));
    let grads = read(&format!("grads_{tag}.safetensors"));
    for arch in ["deep_nn", "light_nn"] {
        let m = model(arch, shape);
        let logits = m.forward(&io["images"], Mode::Eval).unwrap().logits;
        let loss = cross_entropy(&logits, &grads["labels"]).unwrap();
        assert_close(
            &format!("{arch} {tag} loss"),
            &loss.reshape(1).unwrap(),
            &grads[&format!("{arch}.loss")],
        );
        let g = loss.backward().unwrap();
        let mut checked = 0;
        for (name, var) in m.varmap().data().lock().unwrap().iter() {
            let got = g
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let want = match grads.get(&format!("{arch}.grad.{name}")) {
                Some(w) => w.clone(),
                // Stored as its factors: d loss / d output (N x hidden), transposed,
                // times the layer's input, the `flat` tap. Multiplied in f64.
                None if name == "classifier.0.weight" => {
                    let dz = &grads[&format!("{arch}.grad_output.classifier.0")];
                    let flat = &io[&format!("{arch}.flat")];
                    let f64_ = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
                    f64_(dz).t().unwrap().matmul(&f64_(flat)).unwrap()
                }
                None => panic!("the fixture has no gradient for {arch} {name}"),
            };
            assert_close(&format!("{arch} {tag} grad {name}"), got, &want);
            checked += 1;
        }
        assert_eq!(checked, if arch == "deep_nn" { 12 } else { 8 });
    }
}

#[test]
fn forward_matches_pytorch_cifar_shape() {
    forward_parity([3, 32, 32]);
}

#[test]
fn forward_matches_pytorch_mnist_shape() {
    forward_parity([1, 28, 28]);
}

#[test]
fn gradients_match_pytorch_cifar_shape() {
    gradient_parity([3, 32, 32]);
}

#[test]
fn gradients_match_pytorch_mnist_shape() {
    gradient_parity([1, 28, 28]);
}

/// NaN and infinite pixels go through convolution, ReLU and max-pooling as
/// in PyTorch: the same elements are NaN or infinite, and the rest agree.
fn nonfinite_parity(shape: [usize; 3]) {
    let tag = format!("{}x{}x{}", shape[0], shape[1], shape[2]);
    let io = read(&format!("nonfinite_{tag}.safetensors"));
    for arch in ["deep_nn", "light_nn"] {
        let out = model(arch, shape)
            .forward(&io["images"], Mode::Eval)
            .unwrap();
        for (what, got) in [
            ("features", out.tap("features").unwrap()),
            ("logits", &out.logits),
        ] {
            let want = io[&format!("{arch}.{what}")]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(
                want.iter().any(|v| v.is_nan()),
                "the fixture has NaN outputs"
            );
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let same = if w.is_finite() {
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs())
                } else {
                    g.is_nan() == w.is_nan() && (w.is_nan() || g == w)
                };
                assert!(same, "{arch} {tag} {what}[{i}]: got {g}, PyTorch {w}");
            }
        }
    }
}

#[test]
fn nan_and_infinity_propagate_as_in_pytorch_cifar_shape() {
    nonfinite_parity([3, 32, 32]);
}

#[test]
fn nan_and_infinity_propagate_as_in_pytorch_mnist_shape() {
    nonfinite_parity([1, 28, 28]);
}

#[test]
fn parameter_counts_match_the_tutorial() {
    let cifar = |a| {
        Model::new(
            a,
            ArchConfig {
                input_shape: [3, 32, 32],
                num_classes: 10,
            },
            1,
            &Device::Cpu,
        )
        .unwrap()
    };
    assert_eq!(cifar("deep_nn").parameter_count(), 1_186_986);
    assert_eq!(cifar("light_nn").parameter_count(), 267_738);
    let mnist = |a| {
        Model::new(
            a,
            ArchConfig {
                input_shape: [1, 28, 28],
                num_classes: 10,
            },
            1,
            &Device::Cpu,
        )
        .unwrap()
    };
    assert_eq!(mnist("deep_nn").parameter_count(), 938_922);
    assert_eq!(mnist("light_nn").parameter_count(), 206_010);
}

/// Every method fixture in tests/fixtures/methods, through the same check
/// `kd verify` runs (1e-5 relative).
#[test]
fn every_method_matches_its_pytorch_fixture() {
    let dir = fixture_path("methods");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 11,
        "{} method fixtures in {}",
        files.len(),
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &files {
        let report = check_fixture(&Fixture::read(path).unwrap(), None).unwrap();
        for c in report.checks.iter().filter(|c| !c.passed) {
            failures.push(format!(
                "{} {}: {} error {:.2e} {}",
                report.method,
                path.display(),
                c.name,
                c.error,
                c.detail
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cross_entropy_matches_pytorch() {
    let f = read("cross_entropy.safetensors");
    let logits = Var::from_tensor(&f["logits"]).unwrap();
    let loss = cross_entropy(logits.as_tensor(), &f["labels"]).unwrap();
    assert_close("ce value", &loss.reshape(1).unwrap(), &f["value"]);
    let g = loss.backward().unwrap();
    assert_close(
        "ce grad",
        g.get(logits.as_tensor()).unwrap(),
        &f["grad.logits"],
    );
}

/// kd's Adam against `torch.optim.Adam(lr=1e-3)`, step for step, and its
/// state round-trips: a fresh optimizer with the saved moments continues identically.
#[test]
fn adam_matches_pytorch_step_for_step() {
    let f = read("adam.safetensors");
    let p = Var::from_tensor(&f["param.initial"]).unwrap();
    let mut adam = Adam::new(vec![("p".into(), p.clone())], 1e-3).unwrap();
    // d(sum(p * g))/dp = g: the fixture's gradient, through real backprop.
    let grads_of = |p: &Var, g: &Tensor| {
        (p.as_tensor() * g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    };
    for step in 0..3 {
        adam.step(&grads_of(&p, &f["grads"].get(step).unwrap()))
            .unwrap();
        assert_close(
            &format!("adam step {}", step + 1),
            p.as_tensor(),
            &f[&format!("param.after_step_{}", step + 1)],
        );
    }
    let (state, steps) = (adam.state(), adam.steps_taken());
    let q = Var::from_tensor(p.as_tensor()).unwrap();
    let mut resumed = Adam::new(vec![("p".into(), q.clone())], 1e-3).unwrap();
    resumed.load_state(&state, steps).unwrap();
    let g = Tensor::new(&[0.1f32, -0.2, 0.3, 0.0, 1.0, -1.0], &Device::Cpu).unwrap();
    adam.step(&grads_of(&p, &g)).unwrap();
    resumed.step(&grads_of(&q, &g)).unwrap();
    assert_eq!(
        p.as_tensor().to_vec1::<f32>().unwrap(),
        q.as_tensor().to_vec1::<f32>().unwrap()
    );
}

/// A method whose shapes cannot be matched is refused when it is built, before
/// training, naming both sizes.
#[test]
fn cosine_rejects_widths_that_do_not_divide() {
    use kd_core::candle_nn::{VarBuilder, VarMap};
    use kd_core::loss::{MethodContext, Params};
    let f = read("methods/cosine.safetensors");
    let side = |prefix: &str, width: usize| kd_core::Outputs {
        logits: f[&format!("{prefix}.logits")].clone(),
        taps: BTreeMap::from([(
            "flat".to_string(),
            f[&format!("{prefix}.flat")].narrow(1, 0, width).unwrap(),
        )]),
    };
    let (student, teacher) = (side("student", 1024), side("teacher", 1500));
    let ctx = MethodContext {
        params: &Params::new(),
        vb: VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
        student: &student,
        teacher: &teacher,
    };
    let build = kd_core::registry::method("cosine").unwrap().build.unwrap();
    let err = build(&ctx)
        .err()
        .expect("1500 / 1024 is not whole")
        .to_string();
    assert!(err.contains("1500") && err.contains("1024"), "{err}");
}

/// Where the feature maps' sizes differ by a whole factor, AT and FitNets
/// pool the larger to the smaller's size (as RepDistiller's AT does): the loss
/// is the one of the pooled map; other sizes are refused, naming both shapes.
#[test]
fn feature_methods_pool_the_larger_map_and_refuse_other_sizes() {
    use kd_core::candle_nn::VarMap;
    use kd_core::loss::{MethodContext, Params, Step};
    let f = read("methods/at.safetensors");
    let side = |prefix: &str, features: Tensor| kd_core::Outputs {
        logits: f[&format!("{prefix}.logits")].clone(),
        taps: BTreeMap::from([("features".to_string(), features)]),
    };
    let crop = |prefix: &str, size: usize| {
        f[&format!("{prefix}.features")]
            .narrow(2, 0, size)
            .unwrap()
            .narrow(3, 0, size)
            .unwrap()
    };
    let labels = f["labels"].to_dtype(DType::U32).unwrap();
    let params = Params::from([("p".to_string(), 2.0)]);
    let loss = |method: &str, student: &kd_core::Outputs, teacher: &kd_core::Outputs| {
        let varmap = VarMap::new();
        let ctx = MethodContext {
            params: &params,
            vb: kd_core::nn::seeded::var_builder(&varmap, 0, DType::F32, &Device::Cpu),
            student,
            teacher,
        };
        let build = kd_core::registry::method(method).unwrap().build.unwrap();
        build(&ctx).map(|m| {
            m.loss(&Step::new(student, teacher, &labels))
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
    };
    let teacher = side("teacher", crop("teacher", 4));
    let big = side("student", crop("student", 8));
    let pooled = side("student", crop("student", 8).avg_pool2d(2).unwrap());
    for method in ["at", "fitnets"] {
        let (got, want) = (
            loss(method, &big, &teacher).unwrap(),
            loss(method, &pooled, &teacher).unwrap(),
        );
        assert!(
            (got - want).abs() <= 1e-6 * want.abs(),
            "{method}: {got} vs {want}"
        );
        let err = loss(method, &side("student", crop("student", 6)), &teacher)
            .expect_err("6x6 against 4x4")
            .to_string();
        assert!(
            err.contains("[8, 16, 6, 6]") && err.contains("[8, 32, 4, 4]"),
            "{method}: {err}"
        );
    }
}

/// The trainer's settings a fixture names in its `kd.settings` metadata (a JSON
/// object of `TrainConfig` keys), the rest at their defaults.
fn settings_of(file: &weights::WeightsFile) -> kd_train::train::TrainConfig {
    let mut config = serde_json::to_value(kd_train::train::TrainConfig::default()).unwrap();
    let given: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&file.metadata["kd.settings"]).unwrap();
    config.as_object_mut().unwrap().extend(given);
    serde_json::from_value(config).unwrap()
}

fn fixtures_in(folder: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_path(folder))
        .unwrap()
        .map(|e| format!("{folder}/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no fixtures in {folder}");
    names
}

/// SGD (momentum, dampening, Nesterov, weight decay), AdamW and Adam with weight
/// decay against torch.optim, step for step, built from the registry by the
/// settings each fixture names. The second parameter has no gradient at one
/// step of `sgd_momentum`: it and its momentum must stay as they are. Each
/// optimizer's saved state continues identically in a fresh one.
#[test]
fn every_optimizer_matches_pytorch_step_for_step() {
    for name in fixtures_in("optim") {
        let file = weights::read(&fixture_path(&name)).unwrap();
        let f = &file.tensors;
        let config = settings_of(&file);
        let skip: i64 = file.metadata["kd.skip_b_at_step"].parse().unwrap();
        let vars = |f: &BTreeMap<String, Tensor>| {
            ["a", "b"].map(|k| Var::from_tensor(&f[&format!("{k}.initial")]).unwrap())
        };
        let named = |v: &[Var; 2]| vec![("a".into(), v[0].clone()), ("b".into(), v[1].clone())];
        let params = vars(f);
        let mut opt = config.build_optimizer(named(&params)).unwrap();
        let steps = f["grads.a"].dims()[0];
        let grads_at = |params: &[Var; 2], step: usize| {
            let mut loss = (params[0].as_tensor() * f["grads.a"].get(step).unwrap()).unwrap();
            if step as i64 + 1 != skip {
                loss = (loss + (params[1].as_tensor() * f["grads.b"].get(step).unwrap()).unwrap())
                    .unwrap();
            }
            loss.sum_all().unwrap().backward().unwrap()
        };
        for step in 0..steps {
            opt.step(&grads_at(&params, step)).unwrap();
            for (k, p) in ["a", "b"].iter().zip(&params) {
                let key = format!("{k}.after_step_{}", step + 1);
                assert_close(&format!("{name} {key}"), p.as_tensor(), &f[&key]);
            }
        }
        let copies = vars(&BTreeMap::from([
            (
                "a.initial".to_string(),
                params[0].as_tensor().copy().unwrap(),
            ),
            (
                "b.initial".to_string(),
                params[1].as_tensor().copy().unwrap(),
            ),
        ]));
        let mut resumed = config.build_optimizer(named(&copies)).unwrap();
        resumed.load_state(&opt.state(), opt.steps_taken()).unwrap();
        opt.step(&grads_at(&params, 0)).unwrap();
        resumed.step(&grads_at(&copies, 0)).unwrap();
        for (p, q) in params.iter().zip(&copies) {
            assert_eq!(
                p.as_tensor().to_vec1::<f32>().unwrap(),
                q.as_tensor().to_vec1::<f32>().unwrap(),
                "{name}: a resumed optimizer drifts"
            );
        }
    }
}

/// Every schedule against torch.optim.lr_scheduler (MultiStepLR,
/// CosineAnnealingLR, and LinearLR warm-up in front of either through
/// SequentialLR), epoch by epoch over a run, to 1e-9 relative.
#[test]
fn every_schedule_matches_pytorch_over_a_run() {
    for name in fixtures_in("schedules") {
        let file = weights::read(&fixture_path(&name)).unwrap();
        let config = settings_of(&file);
        let torch_lrs: Vec<f64> = serde_json::from_str(&file.metadata["kd.lr_f64"]).unwrap();
        let stored = file.tensors["lr"].to_vec1::<f32>().unwrap();
        let schedule = config.schedule().unwrap();
        assert_eq!(torch_lrs.len(), config.epochs, "{name}");
        for (epoch, (want, stored)) in torch_lrs.iter().zip(stored).enumerate() {
            let got = schedule.lr(epoch, 0);
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1e-12),
                "{name}: epoch {epoch}: kd {got}, PyTorch {want}"
            );
            assert!(
                ((got as f32) - stored).abs() <= 1e-6 * stored.abs(),
                "{name}: epoch {epoch}: kd {got}, stored {stored}"
            );
        }
    }
}

/// RandomCrop(padding 4) and RandomHorizontalFlip at given draws, against
/// torchvision's definition (zero padding, crop at top/left, flip of the width).
#[test]
fn crop_and_flip_match_torchvision() {
    use kd_train::data::transform::{Image, RandomCrop, RandomHorizontalFlip};
    let f = read("transforms.safetensors");
    let images = f["images"].to_dtype(DType::U8).unwrap();
    let [n, c, h, w] = images.dims4().map(|(n, c, h, w)| [n, c, h, w]).unwrap();
    let mut checked = 0;
    for (key, want) in f.iter().filter(|(k, _)| k.starts_with("crop_")) {
        let draw: Vec<usize> = key[5..].split('_').map(|v| v.parse().unwrap()).collect();
        for i in 0..n {
            let mut pixels = images
                .get(i)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<u8>()
                .unwrap();
            let mut image = Image {
                pixels: &mut pixels,
                shape: [c, h, w],
            };
            RandomCrop { padding: 4 }.crop_at(&mut image, draw[0], draw[1]);
            if draw[2] == 1 {
                RandomHorizontalFlip::flip(&mut image);
            }
            let want: Vec<u8> = want
                .get(i)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_dtype(DType::U8)
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(pixels, want, "{key}, image {i}");
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}

/// The zoo's members with a full fixture: one per family.
const ZOO_FIXTURES: [&str; 3] = ["resnet8", "wrn_16_1", "vgg8"];
const ZOO_CONFIG: ArchConfig = ArchConfig {
    input_shape: [3, 32, 32],
    num_classes: 100,
};

/// Members whose fixture weights are not stored but computed (generate.py's
/// `formula`): a family too big to store at full fidelity.
const FORMULA_FIXTURES: [&str; 6] = [
    "MobileNetV2",
    "ResNet50",
    "ShuffleV1",
    "ShuffleV2",
    "tv_resnet18",
    "tv_mobilenet_v2",
];

fn all_zoo_fixtures() -> impl Iterator<Item = &'static str> {
    ZOO_FIXTURES.into_iter().chain(FORMULA_FIXTURES)
}

/// How close a fixture's `group` of tensors must come (`kd.tolerance.GROUP`:
/// what float32 can reach through a deep net, generate.py); 1e-4 by default.
fn tolerance(file: &weights::WeightsFile, group: &str) -> f32 {
    file.metadata
        .get(&format!("kd.tolerance.{group}"))
        .map_or(1e-4, |t| t.parse().unwrap())
}

/// A zoo member with the fixture's weights (stored, with BatchNorm statistics
/// after three training batches, or from [`formula`]), and its io fixture,
/// at the size of the fixture's images (3x32x32 but where generate.py's
/// `FORMULA_SHAPES` says otherwise).
fn zoo_model(arch: &str) -> (Model, weights::WeightsFile) {
    let io = read_weights(&format!("zoo/{arch}_io"));
    let (_, c, h, w) = io.tensors["images"].dims4().unwrap();
    let config = ArchConfig {
        input_shape: [c, h, w],
        ..ZOO_CONFIG
    };
    let m = Model::new(arch, config, 0, &Device::Cpu).unwrap();
    let file = match FORMULA_FIXTURES.contains(&arch) {
        true => formula_weights(arch),
        false => read_weights(&format!("zoo/{arch}")),
    };
    weights::load_into(&m, &file).unwrap();
    (m, io)
}

/// The state_dict generate.py's `formula` makes for `arch`, in names.json's order.
fn formula_weights(arch: &str) -> weights::WeightsFile {
    let text = std::fs::read_to_string(fixture_path("zoo/names.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let layout: Vec<(String, Vec<usize>, String)> =
        serde_json::from_value(all[arch]["state_dict"].clone()).unwrap();
    let tensors = layout
        .into_iter()
        .enumerate()
        .map(|(i, (key, shape, dtype))| {
            let t = match dtype.as_str() {
                "I64" => Tensor::zeros(shape, DType::I64, &Device::Cpu).unwrap(),
                _ => formula(i as u64, &shape, &key),
            };
            (key, t)
        })
        .collect();
    weights::WeightsFile {
        path: fixture_path("zoo/names.json"),
        tensors,
        metadata: BTreeMap::new(),
    }
}

/// generate.py's `formula`, bit for bit: SplitMix64 of (tensor index, element).
fn formula(index: u64, shape: &[usize], key: &str) -> Tensor {
    let n: usize = shape.iter().product();
    let fan_in = (n / shape[0]) as f64;
    let leaf = key.rsplit('.').next().unwrap();
    let values: Vec<f32> = (1..=n as u64)
        .map(|i| {
            let mut z = i
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(index.wrapping_mul(0x632B_E59B_D9B4_E019));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 / (1u64 << 53) as f64;
            let v = match leaf {
                "running_var" => 0.5 + u,
                "running_mean" | "bias" => (u - 0.5) * 0.2,
                _ if shape.len() == 1 => 1.0 + (u - 0.5) * 0.4,
                _ => (u - 0.5) * 2.0 * (1.5 / fan_in).sqrt(),
            };
            v as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Evaluation-mode logits and every tap (running statistics in use), and
/// each tap's declared shape.
#[test]
fn zoo_eval_matches_pytorch() {
    for arch in all_zoo_fixtures() {
        let (m, file) = zoo_model(arch);
        let within = tolerance(&file, "eval");
        let io = file.tensors;
        let out = m.forward(&io["images"], Mode::Eval).unwrap();
        assert_close_within(
            &format!("{arch} eval logits"),
            &out.logits,
            &io["eval.logits"],
            within,
        );
        let mut taps = 0;
        for (key, want) in io.iter().filter(|(k, _)| {
            k.starts_with("eval.") && !["eval.logits", "eval.loss"].contains(&k.as_str())
        }) {
            let tap = &key["eval.".len()..];
            assert_close_within(
                &format!("{arch} eval {tap}"),
                out.tap(tap).unwrap(),
                want,
                within,
            );
            taps += 1;
        }
        assert!(taps >= 1, "{arch}: no taps in the fixture");
        for (tap, shape) in (m.arch.taps)(&m.config) {
            assert_eq!(
                &out.tap(tap).unwrap().dims()[1..],
                &shape[..],
                "{arch}: declared shape of {tap}"
            );
        }
    }
}

/// A training-mode step: logits from the batch's statistics, the loss, and
/// the gradient of every parameter the fixture holds (all but the largest).
#[test]
fn zoo_gradients_match_pytorch() {
    for arch in all_zoo_fixtures() {
        let (m, file) = zoo_model(arch);
        let io = &file.tensors;
        // The computed-weight members' gradients are taken in evaluation mode (generate.py says why).
        let (mode, step) = match file.metadata.get("kd.grad_mode").map(String::as_str) {
            Some("eval") => (Mode::Eval, "eval"),
            _ => (Mode::Train { seed: 0 }, "train"),
        };
        let within = tolerance(&file, "grad");
        let out = m.forward(&io["images"], mode).unwrap();
        assert_close(
            &format!("{arch} {step} logits"),
            &out.logits,
            &io[&format!("{step}.logits")],
        );
        let labels = io["labels"].to_dtype(DType::U32).unwrap();
        let loss = cross_entropy(&out.logits, &labels).unwrap();
        assert_close(
            &format!("{arch} loss"),
            &loss.reshape(1).unwrap(),
            &io[&format!("{step}.loss")],
        );
        let grads = loss.backward().unwrap();
        let params = m.params();
        let mut checked = 0;
        for (key, want) in io.iter().filter(|(k, _)| k.starts_with("grad.")) {
            let name = &key["grad.".len()..];
            let (_, var) = params
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{arch}: no parameter {name}"));
            let got = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch}: no gradient for {name}"));
            // A bias before a training-mode BatchNorm has no gradient in exact
            // arithmetic (the batch mean removes it): both sides are rounding noise.
            let largest = |t: &Tensor| {
                t.abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            if largest(want) < 1e-6 {
                assert!(
                    largest(got) < 1e-6,
                    "{arch} grad {name}: PyTorch's is zero, kd's {}",
                    largest(got)
                );
            } else {
                assert_close_within(&format!("{arch} grad {name}"), got, want, within);
            }
            checked += 1;
        }
        let skipped: Vec<String> =
            serde_json::from_str(&file.metadata["kd.skipped_grads"]).unwrap();
        assert_eq!(
            checked + skipped.len(),
            params.len(),
            "{arch}: every gradient checked or named as left out"
        );
        assert!(
            checked * 3 >= params.len(),
            "{arch}: {checked} of {} gradients checked",
            params.len()
        );
    }
}

/// After one training-mode forward: every running mean and variance (momentum
/// 0.1, unbiased variance) and `num_batches_tracked`; the optimizer never
/// sees them.
#[test]
fn zoo_running_statistics_match_pytorch() {
    for arch in all_zoo_fixtures() {
        let (m, file) = zoo_model(arch);
        let tolerance = tolerance(&file, "train");
        let io = file.tensors;
        let out = m.forward(&io["images"], Mode::Train { seed: 0 }).unwrap();
        // A net with dropout before its head has its pooled features stored
        // instead of logits: PyTorch's dropout masks are not kd's.
        let (what, got, want) = match io.get("train.logits") {
            Some(want) => ("logits", &out.logits, want),
            None => ("pooled", out.tap("pooled").unwrap(), &io["train.pooled"]),
        };
        assert_close_within(&format!("{arch} train {what}"), got, want, tolerance);
        let now: BTreeMap<String, Tensor> = m.tensors().into_iter().collect();
        let mut checked = 0;
        for (key, want) in io.iter().filter(|(k, _)| k.starts_with("after.")) {
            let name = &key["after.".len()..];
            assert_close_within(&format!("{arch} {name}"), &now[name], want, tolerance);
            assert!(m.buffers().contains(name), "{arch}: {name} is a buffer");
            checked += 1;
        }
        assert_eq!(checked, m.buffers().len(), "{arch}: every buffer checked");
        assert!(m.params().iter().all(|(n, _)| !m.buffers().contains(n)));
    }
}

/// Every registered network but the tutorial's has PyTorch's `state_dict`
/// (names, shapes, int64 counters), parameter count and taps (generate.py's
/// names.json): a new member without a PyTorch definition fails here.
#[test]
fn zoo_names_shapes_and_counts_match_pytorch() {
    let text = std::fs::read_to_string(fixture_path("zoo/names.json")).unwrap();
    let all: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let registered: Vec<&str> = kd_core::registry::archs()
        .iter()
        .map(|a| a.name)
        .filter(|n| !["deep_nn", "light_nn"].contains(n))
        .collect();
    let fixtures: Vec<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(
        fixtures.len(),
        registered.len(),
        "{fixtures:?} against {registered:?}"
    );
    assert!(
        registered.iter().all(|n| all.contains_key(*n)),
        "{registered:?}"
    );
    for (arch, want) in &all {
        let m = Model::new(arch, ZOO_CONFIG, 0, &Device::Cpu).unwrap();
        let got: Vec<(String, Vec<usize>, String)> = m
            .tensors()
            .into_iter()
            .map(|(n, t)| {
                (
                    n,
                    t.dims().to_vec(),
                    if t.dtype() == DType::I64 {
                        "I64"
                    } else {
                        "F32"
                    }
                    .to_string(),
                )
            })
            .collect();
        let mut expected: Vec<(String, Vec<usize>, String)> =
            serde_json::from_value(want["state_dict"].clone()).unwrap();
        expected.sort();
        assert_eq!(got, expected, "{arch}: state_dict");
        assert_eq!(
            m.parameter_count() as u64,
            want["parameters"].as_u64().unwrap(),
            "{arch}: parameters"
        );
        let taps = (m.arch.taps)(&ZOO_CONFIG);
        for (tap, shape) in want["taps"].as_object().unwrap() {
            let shape: Vec<usize> = serde_json::from_value(shape.clone()).unwrap();
            assert!(
                taps.iter().any(|(n, s)| n == tap && *s == shape),
                "{arch}: tap {tap} {shape:?} not among {taps:?}"
            );
        }
    }
}
