//! kd's Adam against `torch.optim.Adam(lr=1e-3)`, step for step.
use std::path::PathBuf;

use kd_core::candle::{Tensor, Var};
use kd_core::optim::Adam;

#[test]
fn adam_matches_pytorch_step_for_step() {
    let dir = std::env::var_os("KD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/fixtures")
        });
    let f = kd_core::weights::read(&dir.join("adam.safetensors"))
        .unwrap()
        .tensors;
    let p = Var::from_tensor(&f["param.initial"]).unwrap();
    let mut adam = Adam::new(vec![("p".into(), p.clone())], 1e-3).unwrap();
    for step in 0..3 {
        // d(sum(p * g))/dp = g: the fixture's gradient, through real backprop.
        let g = f["grads"].get(step).unwrap();
        let grads = (p.as_tensor() * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        adam.step(&grads).unwrap();
        let want = f[&format!("param.after_step_{}", step + 1)]
            .to_vec1::<f32>()
            .unwrap();
        let got = p.as_tensor().to_vec1::<f32>().unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs().max(1e-3),
                "step {}: got {got:?}, PyTorch {want:?}",
                step + 1
            );
        }
    }
    // State round-trips: a fresh optimizer with the saved moments continues identically.
    let (state, steps) = adam.state();
    let q = Var::from_tensor(p.as_tensor()).unwrap();
    let mut resumed = Adam::new(vec![("p".into(), q.clone())], 1e-3).unwrap();
    resumed.load_state(&state, steps).unwrap();
    let g = Tensor::new(
        &[0.1f32, -0.2, 0.3, 0.0, 1.0, -1.0],
        &kd_core::candle::Device::Cpu,
    )
    .unwrap();
    adam.step(
        &(p.as_tensor() * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap(),
    )
    .unwrap();
    resumed
        .step(
            &(q.as_tensor() * &g)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(
        p.as_tensor().to_vec1::<f32>().unwrap(),
        q.as_tensor().to_vec1::<f32>().unwrap()
    );
}

#[test]
fn adam_rejects_a_non_positive_learning_rate() {
    let p = Var::new(&[1f32], &kd_core::candle::Device::Cpu).unwrap();
    let err = Adam::new(vec![("p".into(), p)], 0.0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("learning rate"), "{err}");
}
