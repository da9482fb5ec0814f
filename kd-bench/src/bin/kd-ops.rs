//! Times single layers of the teacher at batch 128 (ms, median of 3), to see
//! where a step goes. `cargo run --release -p kd-bench --bin kd-ops`

use kd_core::candle::{Device, Module, Tensor, Var};
use kd_core::candle_nn::VarBuilder;

fn main() {
    kd_core::malloc::keep_freed_memory();
    let dev = Device::Cpu;
    let varmap = kd_core::candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, kd_core::candle::DType::F32, &dev);
    let conv = kd_core::nn::Conv2d::new(128, 64, 3, 1, 1, vb.pp("c")).unwrap();
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (128, 128, 32, 32), &dev).unwrap()).unwrap();
    let a = Tensor::randn(0f32, 1., (64, 1152), &dev).unwrap();
    let bm = Tensor::randn(0f32, 1., (128, 1152, 1024), &dev).unwrap();
    println!(
        "candle matmul 128 x (64x1152 . 1152x1024) {:.1}",
        kd_bench::median_ms(3, || {
            a.broadcast_matmul(&bm).unwrap();
        })
    );
    let big = Tensor::randn(0f32, 1., (1024, 1024), &dev).unwrap();
    println!(
        "candle matmul 1024^3 {:.1}",
        kd_bench::median_ms(3, || {
            big.matmul(&big).unwrap();
        })
    );
    println!(
        "conv 128->64 @32 forward {:.1}",
        kd_bench::median_ms(3, || {
            conv.forward(x.as_tensor()).unwrap();
        })
    );
    println!(
        "conv 128->64 @32 fwd+bwd {:.1}",
        kd_bench::median_ms(3, || {
            conv.forward(x.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        })
    );
    let (w, b) = (
        Tensor::randn(0f32, 0.1, (64, 128, 3, 3), &dev).unwrap(),
        Tensor::zeros(64, kd_core::candle::DType::F32, &dev).unwrap(),
    );
    let (wv, bv) = (Var::from_tensor(&w).unwrap(), Var::from_tensor(&b).unwrap());
    println!(
        "candle conv 128->64 @32 forward {:.1}",
        kd_bench::median_ms(3, || {
            kd_core::nn::reference_conv2d(x.as_tensor(), &w, &b, 1, 1).unwrap();
        })
    );
    println!(
        "candle conv 128->64 @32 fwd+bwd {:.1}",
        kd_bench::median_ms(3, || {
            kd_core::nn::reference_conv2d(x.as_tensor(), wv.as_tensor(), bv.as_tensor(), 1, 1)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        })
    );
    let y = Var::from_tensor(&Tensor::randn(0f32, 1., (128, 64, 32, 32), &dev).unwrap()).unwrap();
    println!(
        "relu @64x32x32 fwd+bwd {:.1}",
        kd_bench::median_ms(3, || {
            y.as_tensor()
                .relu()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        })
    );
    println!(
        "maxpool @64x32x32 forward {:.1}",
        kd_bench::median_ms(3, || {
            kd_core::nn::max_pool2d(y.as_tensor(), 2).unwrap();
        })
    );
    println!(
        "maxpool @64x32x32 fwd+bwd {:.1}",
        kd_bench::median_ms(3, || {
            kd_core::nn::max_pool2d(y.as_tensor(), 2)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        })
    );
    println!(
        "candle maxpool fwd+bwd {:.1}",
        kd_bench::median_ms(3, || {
            y.as_tensor()
                .max_pool2d(2)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        })
    );
    println!(
        "sum_all backward only @64x32x32 {:.1}",
        kd_bench::median_ms(3, || {
            y.as_tensor().sum_all().unwrap().backward().unwrap();
        })
    );
}
