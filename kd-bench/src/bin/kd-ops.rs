//! Times the tutorial's layers one by one at batch 128 (ms, median of N runs),
//! one `name ms` line each: each conv layer shape forward, and forward+backward
//! with its ReLU (input gradient only where the network needs one), the
//! max-pool, and Candle's own conv and pool for the largest layer.
//! `kd-bench/compare --ops` sets them beside PyTorch's.
//!
//! `cargo run --release -p kd-bench --bin kd-ops -- [RUNS]`
use kd_bench::{median_ms, TUTORIAL_CONVS};
use kd_core::candle::{DType, Device, Tensor, Var};

fn main() {
    kd_core::malloc::keep_freed_memory();
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dev = Device::Cpu;
    for conv in TUTORIAL_CONVS {
        let layer = conv.layer();
        let x = conv.input();
        println!(
            "{}_fwd {:.1}",
            conv.key(),
            median_ms(runs, || {
                layer.forward_relu(&x).unwrap();
            })
        );
        println!(
            "{}_fwd_bwd {:.1}",
            conv.key(),
            median_ms(runs, || {
                layer
                    .forward_relu(&x)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
            })
        );
    }
    let y = Var::from_tensor(&Tensor::randn(0f32, 1., (128, 64, 32, 32), &dev).unwrap()).unwrap();
    println!(
        "maxpool_64x32_fwd_bwd {:.1}",
        median_ms(runs, || {
            kd_core::nn::max_pool2d(y.as_tensor(), 2)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        })
    );
    println!(
        "candle_maxpool_64x32_fwd_bwd {:.1}",
        median_ms(runs, || {
            y.as_tensor()
                .max_pool2d(2)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        })
    );
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (128, 128, 32, 32), &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (64, 128, 3, 3), &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::zeros(64, DType::F32, &dev).unwrap()).unwrap();
    println!(
        "candle_conv_128_64_32_fwd_bwd {:.1}",
        median_ms(runs, || {
            kd_core::nn::reference_conv2d(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1, 1)
                .unwrap()
                .relu()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
        })
    );
    let big = Tensor::randn(0f32, 1., (1024, 1024), &dev).unwrap();
    println!(
        "matmul_1024 {:.1}",
        median_ms(runs, || {
            big.matmul(&big).unwrap();
        })
    );
}
