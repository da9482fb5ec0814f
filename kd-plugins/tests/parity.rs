//! Parity with PyTorch: the fixtures in ../shared/reference/fixtures were made
//! by PyTorch from the tutorial's own classes and loss formulas.
use std::collections::BTreeMap;
use std::path::PathBuf;

use kd_core::candle::{DType, Device, Tensor, Var};
use kd_core::candle_nn::{VarBuilder, VarMap};
use kd_core::loss::{cross_entropy, MethodContext, Params};
use kd_core::{registry, weights, ArchConfig, Mode, Model, Outputs, Student};
use kd_plugins as _;

fn fixtures() -> PathBuf {
    std::env::var_os("KD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/fixtures")
        })
}

fn read(name: &str) -> BTreeMap<String, Tensor> {
    weights::read(&fixtures().join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
        .tensors
}

/// 1e-4 relative, with an absolute floor of 1e-4 of the tensor's largest value
/// for entries near zero (sums in another order differ in the last bits).
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
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
        let err = (a - b).abs() / (b.abs().max(scale * 1e-2).max(1e-12));
        if err > worst.1 || err.is_nan() {
            worst = (i, err);
        }
    }
    assert!(
        worst.1 <= 1e-4,
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
    let file = weights::read(&fixtures().join(format!("{arch}_{tag}.safetensors"))).unwrap();
    weights::load_into(&m, &file).unwrap();
    m
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
            assert_close(
                &format!("{arch} {tag} grad {name}"),
                got,
                &grads[&format!("{arch}.grad.{name}")],
            );
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

/// Builds `method` on the loss fixtures' tensors; the student's taps are
/// variables so their gradients can be compared.
struct LossCase {
    f: BTreeMap<String, Tensor>,
    logits: Var,
    flat: Var,
    features: Var,
}

impl LossCase {
    fn new() -> Self {
        let f = read("losses.safetensors");
        let var = |k: &str| Var::from_tensor(&f[k]).unwrap();
        Self {
            logits: var("student.logits"),
            flat: var("student.flat"),
            features: var("student.features"),
            f,
        }
    }
    fn student(&self) -> Outputs {
        Outputs {
            logits: self.logits.as_tensor().clone(),
            taps: BTreeMap::from([
                ("flat".to_string(), self.flat.as_tensor().clone()),
                ("features".to_string(), self.features.as_tensor().clone()),
            ]),
        }
    }
    fn teacher(&self, logits_key: &str) -> Outputs {
        Outputs {
            logits: self.f[logits_key].clone(),
            taps: BTreeMap::from([
                ("flat".to_string(), self.f["teacher.flat"].clone()),
                ("features".to_string(), self.f["teacher.features"].clone()),
            ]),
        }
    }
}

fn run_method(case: &LossCase, method: &str, teacher: &Outputs, adapters: &VarMap) -> Tensor {
    let plugin = registry::method(method).unwrap();
    let params: Params =
        kd_core::loss::resolve_params(plugin.params, &Params::new(), method).unwrap();
    let student = case.student();
    let ctx = MethodContext {
        params: &params,
        vb: VarBuilder::from_varmap(adapters, DType::F32, &Device::Cpu),
        student: &student,
        teacher,
    };
    let loss = (plugin.build)(&ctx).unwrap().expect("a distillation term");
    for (name, var) in adapters.data().lock().unwrap().iter() {
        var.set(&case.f[name]).unwrap();
    }
    loss.loss(&student, teacher).unwrap()
}

#[test]
fn cross_entropy_matches_pytorch() {
    let case = LossCase::new();
    let loss = cross_entropy(case.logits.as_tensor(), &case.f["labels"]).unwrap();
    assert_close("ce value", &loss.reshape(1).unwrap(), &case.f["ce.value"]);
    let g = loss.backward().unwrap();
    assert_close(
        "ce grad",
        g.get(case.logits.as_tensor()).unwrap(),
        &case.f["ce.grad.student.logits"],
    );
}

#[test]
fn kd_matches_pytorch_including_extreme_logits() {
    for (prefix, teacher) in [
        ("kd", "teacher.logits"),
        ("kd_extreme", "kd_extreme.teacher.logits"),
    ] {
        let case = LossCase::new();
        let loss = run_method(&case, "kd", &case.teacher(teacher), &VarMap::new());
        assert_close(
            &format!("{prefix} value"),
            &loss.reshape(1).unwrap(),
            &case.f[&format!("{prefix}.value")],
        );
        let g = loss.backward().unwrap();
        assert_close(
            &format!("{prefix} grad"),
            g.get(case.logits.as_tensor()).unwrap(),
            &case.f[&format!("{prefix}.grad.student.logits")],
        );
    }
}

#[test]
fn cosine_matches_pytorch() {
    let case = LossCase::new();
    let loss = run_method(
        &case,
        "cosine",
        &case.teacher("teacher.logits"),
        &VarMap::new(),
    );
    assert_close(
        "cosine value",
        &loss.reshape(1).unwrap(),
        &case.f["cosine.value"],
    );
    let g = loss.backward().unwrap();
    assert_close(
        "cosine grad",
        g.get(case.flat.as_tensor()).unwrap(),
        &case.f["cosine.grad.student.flat"],
    );
}

#[test]
fn fitnets_matches_pytorch() {
    let case = LossCase::new();
    let adapters = VarMap::new();
    let loss = run_method(&case, "fitnets", &case.teacher("teacher.logits"), &adapters);
    assert_close(
        "fitnets value",
        &loss.reshape(1).unwrap(),
        &case.f["fitnets.value"],
    );
    let g = loss.backward().unwrap();
    assert_close(
        "fitnets grad features",
        g.get(case.features.as_tensor()).unwrap(),
        &case.f["fitnets.grad.student.features"],
    );
    let vars = adapters.data().lock().unwrap();
    for name in ["regressor.0.weight", "regressor.0.bias"] {
        assert_close(
            &format!("fitnets grad {name}"),
            g.get(vars[name].as_tensor()).unwrap(),
            &case.f[&format!("fitnets.grad.{name}")],
        );
    }
}

#[test]
fn cosine_rejects_widths_that_do_not_divide() {
    let case = LossCase::new();
    let mut teacher = case.teacher("teacher.logits");
    teacher.taps.insert(
        "flat".into(),
        case.f["teacher.flat"].narrow(1, 0, 1500).unwrap(),
    );
    let plugin = registry::method("cosine").unwrap();
    let student = case.student();
    let ctx = MethodContext {
        params: &Params::new(),
        vb: VarBuilder::from_varmap(&VarMap::new(), DType::F32, &Device::Cpu),
        student: &student,
        teacher: &teacher,
    };
    let err = (plugin.build)(&ctx)
        .err()
        .expect("1500 / 1024 is not whole")
        .to_string();
    assert!(err.contains("1500") && err.contains("1024"), "{err}");
}
