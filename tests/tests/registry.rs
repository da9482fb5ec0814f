//! A crate outside kd-plugins that links it finds everything through the registries alone.
use kd_core::registry;
use kd_plugins as _;

#[test]
fn linking_kd_plugins_registers_all_methods_architectures_and_recipes() {
    let methods: Vec<_> = registry::methods().iter().map(|m| m.name).collect();
    assert_eq!(
        methods,
        ["at", "ce", "cosine", "dist", "dkd", "fitnets", "kd", "ls_kd", "pkt", "rkd", "sp"]
    );
    let archs: Vec<_> = registry::archs().iter().map(|a| a.name).collect();
    assert_eq!(
        archs,
        [
            "MobileNetV2",
            "ResNet18",
            "ResNet34",
            "ResNet50",
            "ShuffleV1",
            "ShuffleV2",
            "deep_nn",
            "light_nn",
            "resnet110",
            "resnet14",
            "resnet20",
            "resnet32",
            "resnet32x4",
            "resnet44",
            "resnet56",
            "resnet8",
            "resnet8x4",
            "tv_mobilenet_v2",
            "tv_resnet18",
            "tv_resnet34",
            "tv_resnet50",
            "vgg11",
            "vgg13",
            "vgg16",
            "vgg19",
            "vgg8",
            "wrn_16_1",
            "wrn_16_2",
            "wrn_40_1",
            "wrn_40_2"
        ]
    );
    let recipe = registry::recipe("tutorial").unwrap();
    let runs: Vec<_> = (recipe.runs)().iter().map(|r| r.name).collect();
    assert_eq!(runs, ["teacher", "ce", "kd", "cosine", "fitnets"]);
    assert_eq!(
        registry::method("kd").unwrap().params[0].name,
        "temperature"
    );
    assert_eq!(registry::method("kd").unwrap().params[0].default, 2.0);
}

/// Each architecture's forward pass hands out exactly the taps its registration
/// declares, with the declared shapes, at two input shapes. A network that
/// cannot take 28x28 images (MobileNetV2 wants sides that are multiples of 32)
/// must say so naming the size; it is then tried at 64x64 grey images.
#[test]
fn architectures_provide_the_taps_they_declare() {
    use kd_core::candle::{Device, Tensor};
    use kd_core::{ArchConfig, Mode, Model};
    for arch in registry::archs() {
        for shape in [[3, 32, 32], [1, 28, 28]] {
            let config = ArchConfig {
                input_shape: shape,
                num_classes: 10,
            };
            let (config, model) = match Model::new(arch.name, config.clone(), 0, &Device::Cpu) {
                Ok(model) => (config, model),
                Err(e) => {
                    assert!(e.to_string().contains("28x28"), "{}: {e}", arch.name);
                    let config = ArchConfig {
                        input_shape: [1, 64, 64],
                        num_classes: 10,
                    };
                    let model = Model::new(arch.name, config.clone(), 0, &Device::Cpu).unwrap();
                    (config, model)
                }
            };
            let shape = config.input_shape;
            let x = Tensor::zeros(
                (2, shape[0], shape[1], shape[2]),
                kd_core::candle::DType::F32,
                &Device::Cpu,
            )
            .unwrap();
            let out = model.forward(&x, Mode::Eval).unwrap();
            let got: Vec<(String, Vec<usize>)> = out
                .taps
                .iter()
                .map(|(k, t)| (k.clone(), t.dims()[1..].to_vec()))
                .collect();
            let mut want: Vec<(String, Vec<usize>)> = (arch.taps)(&config)
                .into_iter()
                .map(|(k, s)| (k.to_string(), s))
                .collect();
            want.sort();
            assert_eq!(got, want, "{} at {shape:?}", arch.name);
        }
    }
}
