//! kd's Adam refuses settings that cannot train. Its parity with PyTorch is
//! in kd-plugins/tests/parity.rs, beside the other PyTorch fixtures.
use kd_core::candle::Var;
use kd_core::optim::Adam;

#[test]
fn adam_rejects_a_non_positive_learning_rate() {
    let p = Var::new(&[1f32], &kd_core::candle::Device::Cpu).unwrap();
    let err = Adam::new(vec![("p".into(), p)], 0.0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("learning rate"), "{err}");
}
