//! Every registered architecture, exported and run by tract, gives kd's logits.
use kd_core::candle::{Device, Tensor};
use kd_core::data::Normalization;
use kd_core::{ArchConfig, Mode, Model, Student};
use kd_export::{check, export, model_proto, probe_images, Options};
use kd_plugins as _;

const CONFIG: ArchConfig = ArchConfig {
    input_shape: [3, 32, 32],
    num_classes: 10,
};

/// A model whose BatchNorm statistics have moved away from (0, 1) and whose
/// vectors (BatchNorm's scale and shift, the biases) are random, so that
/// folding them is not a no-op and a fold that forgets a term shows.
fn model(arch: &str) -> Model {
    let model = Model::new(arch, CONFIG.clone(), 7, &Device::Cpu).unwrap();
    let images = probe_images(4, CONFIG.input_shape).unwrap();
    for seed in 0..2 {
        model.forward(&images, Mode::Train { seed }).unwrap();
    }
    for (name, var) in model.params() {
        if var.rank() == 1 {
            let (lo, hi) = if name.ends_with("weight") {
                (0.5, 1.5)
            } else {
                (-0.5, 0.5)
            };
            var.set(&Tensor::rand(lo as f32, hi as f32, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    model
}

/// Images with negative values too: a stray ReLU on the input would show.
fn signed_images(batch: usize) -> Tensor {
    probe_images(batch, CONFIG.input_shape)
        .unwrap()
        .affine(2.0, -1.0)
        .unwrap()
}

fn options(fold_bn: bool) -> Options {
    Options {
        fold_bn,
        ..Options::default()
    }
}

#[test]
fn every_architecture_exports_and_matches_kd_with_batchnorm_kept_and_folded() {
    for arch in kd_core::registry::archs() {
        let model = model(arch.name);
        for fold_bn in [false, true] {
            let options = options(fold_bn);
            let onnx = export(&model, &options).unwrap();
            let error = check(&model, &onnx, &options).unwrap();
            let images = signed_images(2);
            let signed = kd_export::relative_error(
                &kd_export::evaluate(&onnx, &images).unwrap(),
                &model.forward(&images, Mode::Eval).unwrap().logits,
            )
            .unwrap();
            // Both must hold: `f32::max` would hide a NaN.
            assert!(
                signed <= options.tolerance(),
                "{} on signed images: {signed:e}",
                arch.name
            );
            println!(
                "{:<12} fold_bn={fold_bn:<5} {:>9} bytes  error {error:.2e}",
                arch.name,
                onnx.len()
            );
            assert!(
                error <= options.tolerance(),
                "{} (fold_bn {fold_bn}): relative error {error:e}",
                arch.name
            );
        }
    }
}

#[test]
fn folding_removes_every_batchnorm_that_follows_a_convolution() {
    let count = |fold_bn| {
        let proto = model_proto(&model("resnet8"), &options(fold_bn)).unwrap();
        let graph = proto.graph.unwrap();
        let bn = graph
            .node
            .iter()
            .filter(|n| n.op_type == "BatchNormalization")
            .count();
        (bn, graph.initializer.len())
    };
    let (kept, kept_inits) = count(false);
    let (folded, folded_inits) = count(true);
    // resnet8: the stem, two convolutions per block and two downsamples.
    assert_eq!(kept, 9);
    assert_eq!(folded, 0);
    assert!(folded_inits < kept_inits);
}

#[test]
fn the_batch_dimension_is_dynamic_and_weights_keep_their_state_dict_names() {
    let model = model("resnet8");
    let options = options(true);
    let onnx = export(&model, &options).unwrap();
    for batch in [1, 3] {
        let images = signed_images(batch);
        let logits = kd_export::evaluate(&onnx, &images).unwrap();
        assert_eq!(logits.dims(), [batch, 10]);
        let ours = model.forward(&images, Mode::Eval).unwrap().logits;
        let error = kd_export::relative_error(&logits, &ours).unwrap();
        assert!(error <= options.tolerance(), "batch {batch}: {error:e}");
    }
    let graph = model_proto(&model, &options).unwrap().graph.unwrap();
    let names: Vec<_> = graph.initializer.iter().map(|i| i.name.as_str()).collect();
    assert!(names.contains(&"conv1.weight"), "{names:?}");
    assert!(
        names.contains(&"conv1.bias"),
        "the folded stem has a bias: {names:?}"
    );
    assert!(names.contains(&"fc.weight"), "{names:?}");
}

#[test]
fn normalisation_inside_takes_images_in_0_1() {
    let model = model("light_nn");
    let options = Options {
        normalize_inside: Some(Normalization {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }),
        ..options(true)
    };
    let onnx = export(&model, &options).unwrap();
    assert!(check(&model, &onnx, &options).unwrap() <= options.tolerance());
    // The same file read as if the images were normalised disagrees with kd.
    let plain = Options {
        normalize_inside: None,
        ..options.clone()
    };
    assert!(check(&model, &onnx, &plain).unwrap() > 1e-2);
}

#[test]
fn metadata_travels_as_metadata_properties() {
    let options = Options {
        metadata: vec![("kd.arch".into(), "light_nn".into())],
        ..options(true)
    };
    let proto = model_proto(&model("light_nn"), &options).unwrap();
    let props: Vec<_> = proto
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert!(props.contains(&("kd.arch", "light_nn")), "{props:?}");
    assert!(props.iter().any(|(k, _)| *k == "kd.onnx_input"));
    assert_eq!(proto.opset_import[0].version, kd_export::OPSET);
}

/// The ONNX checker (Python's `onnx` package, found as `$KD_PYTHON` or
/// `python3`) accepts an export of every op kind kd writes; skipped, saying
/// so, where that package is not installed.
#[test]
fn the_onnx_checker_accepts_the_exports_where_python_has_onnx() {
    let python = std::env::var("KD_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_onnx = std::process::Command::new(&python)
        .args(["-c", "import onnx"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_onnx {
        eprintln!("skipped: {python} has no `onnx` package (pip install onnx, or set KD_PYTHON)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for arch in ["deep_nn", "light_nn", "resnet8", "wrn_16_1", "vgg8"] {
        for fold_bn in [false, true] {
            let path = dir.path().join(format!("{arch}-{fold_bn}.onnx"));
            std::fs::write(&path, export(&model(arch), &options(fold_bn)).unwrap()).unwrap();
            paths.push(path);
        }
    }
    let script = "import onnx, sys\nfor p in sys.argv[1:]:\n    onnx.checker.check_model(onnx.load(p), full_check=True)";
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the ONNX checker refused an export:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
