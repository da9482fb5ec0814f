//! Times the tutorial's layers one by one at batch 128 (ms, median of N runs),
//! one `name ms` line each: each conv layer shape forward, and forward+backward
//! with its ReLU (input gradient only where the network needs one), the
//! max-pool, and Candle's own conv and pool for the largest layer.
//! `kd-bench/compare --ops` sets them beside PyTorch's.
//!
//! `cargo run --release -p kd-bench --bin kd-ops -- [RUNS] [ONLY]`: ONLY times
//! just the names that start with it (for a profiler).
use kd_bench::{Timer, TUTORIAL_CONVS};
use kd_core::candle::{DType, Device, Module, Tensor, Var};

fn backward(t: Tensor) {
    t.sum_all().unwrap().backward().unwrap();
}

fn main() {
    let timer = Timer::from_args();
    let report = |name: &str, f: &mut dyn FnMut()| timer.report(name, f);
    let dev = Device::Cpu;
    for conv in TUTORIAL_CONVS.iter().filter(|c| timer.wants(&c.key())) {
        let (layer, x) = (conv.layer(), conv.input());
        report(&format!("{}_fwd", conv.key()), &mut || {
            layer.forward(&x).unwrap();
        });
        report(&format!("{}_fwd_bwd", conv.key()), &mut || {
            backward(layer.forward(&x).unwrap())
        });
    }
    let y = Var::from_tensor(&Tensor::randn(0f32, 1., (128, 64, 32, 32), &dev).unwrap()).unwrap();
    report("maxpool_64x32_fwd_bwd", &mut || {
        backward(kd_core::nn::max_pool2d(y.as_tensor(), 2).unwrap())
    });
    report("candle_maxpool_64x32_fwd_bwd", &mut || {
        backward(y.as_tensor().max_pool2d(2).unwrap())
    });
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (128, 128, 32, 32), &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (64, 128, 3, 3), &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::zeros(64, DType::F32, &dev).unwrap()).unwrap();
    report("candle_conv_128_64_32_fwd_bwd", &mut || {
        let y = kd_kernels::reference_conv2d(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1, 1);
        backward(y.unwrap().relu().unwrap())
    });
    // The zoo's BatchNorm in training, at resnet8x4's first stage (batch 64).
    let varmap = kd_core::candle_nn::VarMap::new();
    let vb = kd_core::candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let bn = kd_core::nn::BatchNorm2d::new(64, vb.pp("bn")).unwrap();
    let z = Var::from_tensor(&Tensor::randn(0f32, 1., (64, 64, 32, 32), &dev).unwrap()).unwrap();
    report("batchnorm_64x64x32_train_fwd_bwd", &mut || {
        backward(
            bn.forward(z.as_tensor(), kd_core::Mode::Train { seed: 0 })
                .unwrap(),
        )
    });
    let big = Tensor::randn(0f32, 1., (1024, 1024), &dev).unwrap();
    report("matmul_1024", &mut || {
        big.matmul(&big).unwrap();
    });
}
