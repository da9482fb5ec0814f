//! kd's CPU convolution against Candle's reference: values and both gradients.
use kd_core::candle::{Device, Tensor, Var};
use kd_core::nn::{reference_conv2d, Conv2dOp};

fn random(shape: &[usize], seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        (0..n)
            .map(|_| rng.gen_range(-1.0f32..1.0))
            .collect::<Vec<_>>(),
        shape,
        &Device::Cpu,
    )
    .unwrap()
}

fn assert_close(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * y.abs().max(scale * 0.1),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

fn check(n: usize, ci: usize, h: usize, w: usize, co: usize, k: usize, pad: usize, stride: usize) {
    let what = format!("{n}x{ci}x{h}x{w} -> {co} k{k} p{pad} s{stride}");
    let x = Var::from_tensor(&random(&[n, ci, h, w], 1)).unwrap();
    let wt = Var::from_tensor(&random(&[co, ci, k, k], 2)).unwrap();
    let b = Var::from_tensor(&random(&[co], 3)).unwrap();
    let ours = x
        .as_tensor()
        .apply_op3(wt.as_tensor(), b.as_tensor(), Conv2dOp { pad, stride })
        .unwrap();
    let reference =
        reference_conv2d(x.as_tensor(), wt.as_tensor(), b.as_tensor(), pad, stride).unwrap();
    assert_close(&format!("{what} forward"), &ours, &reference);
    // A loss that weighs every output differently, so gradients are not uniform.
    let mix = random(ours.dims(), 4);
    let g1 = (&ours * &mix)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g2 = (&reference * &mix)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, v) in [("input", &x), ("kernel", &wt), ("bias", &b)] {
        assert_close(
            &format!("{what} {name} gradient"),
            g1.get(v.as_tensor()).unwrap(),
            g2.get(v.as_tensor()).unwrap(),
        );
    }
}

#[test]
fn the_tutorial_shapes_match_candle() {
    check(4, 3, 32, 32, 128, 3, 1, 1);
    check(3, 128, 32, 32, 64, 3, 1, 1);
    check(3, 64, 16, 16, 32, 3, 1, 1);
    check(5, 16, 8, 8, 32, 3, 1, 1); // the FitNets regressor
    check(2, 1, 28, 28, 16, 3, 1, 1);
}

#[test]
fn odd_sizes_strides_and_paddings_match_candle() {
    check(3, 5, 7, 9, 6, 3, 1, 1);
    // Stride 2 where the last window fits exactly: Candle's reference backward
    // cannot handle a stride that truncates the input.
    check(2, 4, 11, 9, 3, 3, 1, 2);
    check(2, 3, 9, 9, 4, 3, 0, 2);
    check(1, 2, 5, 6, 3, 1, 0, 1);
    check(2, 3, 8, 7, 5, 5, 2, 1);
    check(1, 2, 6, 6, 2, 3, 0, 1);
}

#[test]
fn images_get_no_gradient_they_do_not_need() {
    let x = random(&[2, 3, 8, 8], 1);
    let wt = Var::from_tensor(&random(&[4, 3, 3, 3], 2)).unwrap();
    let b = Var::from_tensor(&random(&[4], 3)).unwrap();
    let y = x
        .apply_op3(
            wt.as_tensor(),
            b.as_tensor(),
            Conv2dOp { pad: 1, stride: 1 },
        )
        .unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    assert!(g.get(wt.as_tensor()).is_some());
}
