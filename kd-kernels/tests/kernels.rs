//! kd's CPU convolution and max-pool against Candle's reference: values and
//! gradients.
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use kd_kernels::{reference_conv2d, reference_max_pool2d, Conv2dOp, MaxPool2dOp};

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

/// Relative tolerance of the direct paths: the same products as Candle's, in
/// another order.
const DIRECT: f32 = 1e-5;
/// Relative tolerance of the Winograd paths: F(4x4, 3x3)'s transforms scale
/// a tile by up to 8 before the products and cancel it after them, which
/// costs a few bits (on the tutorial's 128->64 layer, against an `f64`
/// convolution: worst error 2.4e-6 of the largest output, the direct path's
/// 4e-7).
const WINOGRAD: f32 = 1e-4;

fn assert_close(what: &str, a: &Tensor, b: &Tensor) {
    assert_close_within(DIRECT, what, a, b)
}

fn assert_close_within(tolerance: f32, what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tolerance * y.abs().max(scale * 0.1),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Gradients of both outputs under one loss that weighs every output
/// differently, so that the gradients are not uniform.
fn mixed_gradients(ours: &Tensor, reference: &Tensor, seed: u64) -> (GradStore, GradStore) {
    let mix = random(ours.dims(), seed);
    let grads = |y: &Tensor| (y * &mix).unwrap().sum_all().unwrap().backward().unwrap();
    (grads(ours), grads(reference))
}

#[allow(clippy::too_many_arguments)]
fn check(n: usize, ci: usize, h: usize, w: usize, co: usize, k: usize, pad: usize, stride: usize) {
    for relu in [false, true] {
        check_conv(DIRECT, n, ci, h, w, co, k, pad, stride, relu);
    }
}

/// A 3x3 stride-1 layer with 32 or more channels on both sides: Winograd's
/// (or, on AVX-512 CPUs, the direct path's where it has 16 columns or fewer).
fn check_winograd(n: usize, ci: usize, h: usize, w: usize, co: usize, pad: usize) {
    for relu in [false, true] {
        check_conv(WINOGRAD, n, ci, h, w, co, 3, pad, 1, relu);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_conv(
    tolerance: f32,
    n: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    k: usize,
    pad: usize,
    stride: usize,
    relu: bool,
) {
    let what = format!("{n}x{ci}x{h}x{w} -> {co} k{k} p{pad} s{stride} relu {relu}");
    let x = Var::from_tensor(&random(&[n, ci, h, w], 1)).unwrap();
    let wt = Var::from_tensor(&random(&[co, ci, k, k], 2)).unwrap();
    let b = Var::from_tensor(&random(&[co], 3)).unwrap();
    let op = Conv2dOp::new(pad, stride, relu);
    let ours = x
        .as_tensor()
        .apply_op3(wt.as_tensor(), b.as_tensor(), op)
        .unwrap();
    let conv = reference_conv2d(x.as_tensor(), wt.as_tensor(), b.as_tensor(), pad, stride).unwrap();
    let reference = if relu {
        let values = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.contains(&0.0), "{what}: the ReLU clipped nothing");
        conv.relu().unwrap()
    } else {
        conv.clone()
    };
    assert_close_within(tolerance, &format!("{what} forward"), &ours, &reference);
    // The gradients' reference is masked where ours is clipped: an output
    // within rounding of 0 may have either sign on either side, and its
    // gradient then passes on one side only (a whole `mix` value).
    let reference = if relu {
        (conv * ours.gt(0f32).unwrap().to_dtype(DType::F32).unwrap()).unwrap()
    } else {
        conv
    };
    let gradients = [("input", &x), ("kernel", &wt), ("bias", &b)];
    assert_gradients_close(tolerance, &what, (&ours, &reference), &gradients, 4);
    // As a first layer, whose input images need no gradient: there the
    // kernel and bias gradients may take another path (with a ReLU, one
    // pass that masks the gradient itself).
    let images = x.as_tensor().detach();
    let first = images
        .apply_op3(
            wt.as_tensor(),
            b.as_tensor(),
            Conv2dOp::new(pad, stride, relu),
        )
        .unwrap();
    let what = format!("{what} as a first layer");
    let ours = assert_gradients_close(tolerance, &what, (&first, &reference), &gradients[1..], 4);
    assert!(ours.get(&images).is_none(), "{what}: an input gradient");
}

/// The gradients of `vars` for two outputs under the same random mix (drawn
/// from `seed`), within `tolerance`; returns the first output's gradients.
fn assert_gradients_close(
    tolerance: f32,
    what: &str,
    (ours, reference): (&Tensor, &Tensor),
    vars: &[(&str, &Var)],
    seed: u64,
) -> GradStore {
    let (g1, g2) = mixed_gradients(ours, reference, seed);
    for (name, v) in vars {
        assert_close_within(
            tolerance,
            &format!("{what} {name} gradient"),
            g1.get(v.as_tensor()).unwrap(),
            g2.get(v.as_tensor()).unwrap(),
        );
    }
    g1
}

#[test]
fn the_tutorial_shapes_match_candle() {
    check(4, 3, 32, 32, 128, 3, 1, 1);
    check_winograd(3, 128, 32, 32, 64, 1);
    check_winograd(3, 64, 16, 16, 32, 1);
    check(5, 16, 8, 8, 32, 3, 1, 1); // the FitNets regressor
    check(2, 1, 28, 28, 16, 3, 1, 1);
    check(3, 16, 14, 14, 16, 3, 1, 1);
}

/// 3x3 stride-1 layers with 4 to 16 input channels take the direct
/// correlation: partial register blocks of output channels (7 = 4 + 3) and
/// of vector steps, and paddings 0 and 2, which change the planes' stride.
#[test]
fn direct_layers_match_candle_on_odd_sizes_and_paddings() {
    check(2, 4, 6, 5, 7, 3, 0, 1);
    check(1, 8, 5, 9, 3, 3, 2, 1);
    check(2, 16, 16, 16, 16, 3, 1, 1);
    check(3, 16, 1, 1, 5, 3, 1, 1);
    check(2, 5, 3, 17, 9, 3, 1, 1);
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

/// 3x3 stride-1 layers with 32 or more channels take the Winograd paths
/// (forward and both gradients): F(4x4, 3x3) from 17 output columns (a row
/// of five tiles or more), F(2x2, 3x3) below; on CPUs with AVX-512 the
/// direct path takes those narrow ones instead (`winograd.rs`' unit tests
/// check F(2x2, 3x3) on every CPU). Odd sizes leave partial tiles and a partial group
/// of eight tiles, and paddings 0 and 2 move the tiles' origin.
#[test]
fn winograd_layers_match_candle_on_odd_sizes_and_paddings() {
    // F(2x2, 3x3).
    check_winograd(2, 32, 7, 9, 32, 1);
    check_winograd(3, 40, 5, 5, 33, 0);
    check_winograd(2, 32, 6, 3, 48, 2);
    check_winograd(1, 64, 1, 1, 32, 1);
    // More images than one block holds (4 MiB of tiles: 20 of these), the last short.
    check_winograd(25, 32, 14, 14, 32, 1);
    // F(4x4, 3x3).
    check_winograd(2, 32, 30, 33, 32, 1);
    check_winograd(2, 33, 31, 34, 40, 0);
    check_winograd(1, 32, 5, 29, 32, 2);
    check_winograd(2, 32, 9, 17, 32, 1); // five tiles a row
    check_winograd(2, 32, 28, 28, 32, 1); // Fashion-MNIST's first layers
                                          // Blocks of 4 images, the last short.
    check_winograd(7, 32, 32, 32, 64, 1);
}

/// A NaN or infinity reaches exactly the outputs whose window holds it, as
/// the same value as in a direct convolution (PyTorch's): Winograd's tiles
/// add an infinity with both signs, so blocks with non-finite values take
/// the direct path.
#[test]
fn non_finite_inputs_give_the_direct_convolutions_non_finite_outputs() {
    // Candle's ReLU turns NaN into 0, so the reference has none: a NaN
    // keeps its place through the fused ReLU, an infinity may not.
    let cases = [
        (f32::NAN, true),
        (f32::NAN, false),
        (f32::INFINITY, false),
        (f32::NEG_INFINITY, false),
    ];
    // 8x8 takes F(2x2, 3x3) (the direct path on AVX-512 CPUs), 32x32 F(4x4, 3x3).
    for ((bad, relu), size) in cases.into_iter().flat_map(|case| [(case, 8), (case, 32)]) {
        let (n, ci, h, w, co) = (3, 32, size, size, 32);
        let mut values = random(&[n, ci, h, w], 1)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        values[(ci * h + 3) * w + 4] = bad; // image 1, channel 0, pixel (3, 4)
        let x = Tensor::from_vec(values, (n, ci, h, w), &Device::Cpu).unwrap();
        let wt = random(&[co, ci, 3, 3], 2);
        let b = random(&[co], 3);
        let op = Conv2dOp::new(1, 1, relu);
        let ours = x.apply_op3(&wt, &b, op).unwrap();
        let reference = reference_conv2d(&x, &wt, &b, 1, 1).unwrap();
        let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let reference = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // A tile sums an infinity with both signs, which makes NaN.
        assert_eq!(
            non_finite(&ours),
            non_finite(&reference),
            "{bad}: non-finite outputs differ"
        );
        assert!(
            ours.iter().any(|v| !v.is_finite()),
            "{bad} reached no output"
        );
    }
}

/// Positions and kinds of the non-finite values in `v`.
fn non_finite(v: &[f32]) -> Vec<(usize, &'static str)> {
    (0..v.len())
        .filter(|&i| !v[i].is_finite())
        .map(|i| {
            (
                i,
                if v[i].is_nan() {
                    "NaN"
                } else if v[i] > 0.0 {
                    "inf"
                } else {
                    "-inf"
                },
            )
        })
        .collect()
}

/// The direct path's kernel gradient also multiplies the columns past each
/// output row, whose gradient is 0, with the input pixels they reach: a
/// non-finite input hands it over to im2col, so that an infinity in the last
/// column reaches only the kernel taps a convolution gives it.
#[test]
fn non_finite_inputs_reach_the_direct_kernel_gradient_as_in_a_convolution() {
    let (n, ci, h, w, co) = (2, 16, 8, 8, 4);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut values = random(&[n, ci, h, w], 1)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        values[(ci * h + 3) * w + w - 1] = bad; // image 1, channel 0, pixel (3, 7)
        let x = Tensor::from_vec(values, (n, ci, h, w), &Device::Cpu).unwrap();
        let wt = Var::from_tensor(&random(&[co, ci, 3, 3], 2)).unwrap();
        let b = Var::from_tensor(&random(&[co], 3)).unwrap();
        let op = Conv2dOp::new(1, 1, false);
        let ours = x.apply_op3(wt.as_tensor(), b.as_tensor(), op).unwrap();
        let reference = reference_conv2d(&x, wt.as_tensor(), b.as_tensor(), 1, 1).unwrap();
        let (g1, g2) = mixed_gradients(&ours, &reference, 4);
        let values = |g: &GradStore| {
            g.get(wt.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (ours, reference) = (values(&g1), values(&g2));
        assert!(!non_finite(&ours).is_empty(), "{bad} reached no tap");
        assert_eq!(
            non_finite(&ours),
            non_finite(&reference),
            "{bad}: non-finite kernel gradients differ"
        );
    }
}

#[test]
fn images_get_no_gradient_they_do_not_need() {
    let x = random(&[2, 3, 8, 8], 1);
    let wt = Var::from_tensor(&random(&[4, 3, 3, 3], 2)).unwrap();
    let b = Var::from_tensor(&random(&[4], 3)).unwrap();
    let y = x
        .apply_op3(wt.as_tensor(), b.as_tensor(), Conv2dOp::new(1, 1, false))
        .unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    assert!(g.get(wt.as_tensor()).is_some());
}

fn check_pool(n: usize, c: usize, h: usize, w: usize, k: usize) {
    let what = format!("max-pool {n}x{c}x{h}x{w} k{k}");
    let x = Var::from_tensor(&random(&[n, c, h, w], 5)).unwrap();
    let ours = x.as_tensor().apply_op1(MaxPool2dOp { k }).unwrap();
    let reference = reference_max_pool2d(x.as_tensor(), k).unwrap();
    assert_close(&format!("{what} forward"), &ours, &reference);
    let (g1, g2) = mixed_gradients(&ours, &reference, 6);
    assert_close(
        &format!("{what} input gradient"),
        g1.get(x.as_tensor()).unwrap(),
        g2.get(x.as_tensor()).unwrap(),
    );
}

#[test]
fn max_pool_matches_the_reference_on_even_and_odd_sizes() {
    check_pool(4, 64, 32, 32, 2); // the teacher's first pool
    check_pool(3, 16, 16, 16, 2);
    check_pool(2, 3, 7, 9, 2); // trailing row and column dropped
    check_pool(2, 5, 9, 10, 3);
    check_pool(1, 1, 2, 2, 2);
}

#[test]
fn max_pool_sends_a_tied_windows_gradient_to_its_first_maximum_like_pytorch() {
    // Window 0 is all ties, window 1 has its maximum at the last position.
    let x = Var::from_tensor(
        &Tensor::from_vec(
            vec![1f32, 1., 0., 2., 1., 1., -1., 5.],
            (1, 1, 2, 4),
            &Device::Cpu,
        )
        .unwrap(),
    )
    .unwrap();
    let y = x.as_tensor().apply_op1(MaxPool2dOp { k: 2 }).unwrap();
    assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [1., 5.]);
    let g = y.sum_all().unwrap().backward().unwrap();
    let dx = g.get(x.as_tensor()).unwrap();
    assert_eq!(
        dx.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        [1., 0., 0., 0., 0., 0., 0., 1.]
    );
}

#[test]
fn max_pool_sends_a_nan_windows_gradient_to_its_first_nan_like_pytorch() {
    // Window 0: NaN at positions 1 and 2; window 1: NaN at position 3 only.
    // Rows of one and two windows: the one-by-one path and a step of four.
    for columns in [1, 4] {
        let nan = f32::NAN;
        let mut row0 = vec![1f32, nan, 0., 2.];
        let mut row1 = vec![nan, 5., -1., nan];
        row0.resize(2 * columns, 0.5);
        row1.resize(2 * columns, 0.5);
        let values: Vec<f32> = row0.into_iter().chain(row1).collect();
        let x = Var::from_tensor(
            &Tensor::from_vec(values, (1, 1, 2, 2 * columns), &Device::Cpu).unwrap(),
        )
        .unwrap();
        let y = x.as_tensor().apply_op1(MaxPool2dOp { k: 2 }).unwrap();
        let y = y.flatten_all().unwrap();
        assert!(y.to_vec1::<f32>().unwrap()[0].is_nan(), "{columns} windows");
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = g.get(x.as_tensor()).unwrap().flatten_all().unwrap();
        let dx = dx.to_vec1::<f32>().unwrap();
        let w = 2 * columns;
        assert_eq!(
            [dx[0], dx[1], dx[w], dx[w + 1]],
            [0., 1., 0., 0.],
            "{columns} windows"
        );
        if columns > 1 {
            assert_eq!([dx[2], dx[3], dx[w + 2], dx[w + 3]], [0., 0., 0., 1.]);
        }
    }
}

fn bits(t: &Tensor) -> Vec<u32> {
    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v.into_iter().map(f32::to_bits).collect()
}

/// A max-pool fused into the convolution against the same convolution
/// followed by [`MaxPool2dOp`]: the same bits forward and backward (input,
/// kernel and bias gradients), NaN included, and within rounding of Candle's
/// own convolution, ReLU and pool. Both pool with the same code, so the first
/// checks the fused op (its routes kept from the forward, its ReLU rule, its
/// shapes) and the second the pool itself. `nan` puts a NaN into the first
/// image.
#[allow(clippy::too_many_arguments)]
fn check_fused_pool(
    tolerance: f32,
    n: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    k: usize,
    relu: bool,
    nan: bool,
) {
    let what = format!("{n}x{ci}x{h}x{w} -> {co}, pool {k}, relu {relu}, NaN {nan}");
    let mut input = random(&[n, ci, h, w], 7)
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    if nan {
        input[(h / 2) * w + w / 2] = f32::NAN;
    }
    let input = Tensor::from_vec(input, (n, ci, h, w), &Device::Cpu).unwrap();
    let x = Var::from_tensor(&input).unwrap();
    let wt = Var::from_tensor(&random(&[co, ci, 3, 3], 8)).unwrap();
    let b = Var::from_tensor(&random(&[co], 9)).unwrap();
    let conv = |op: Conv2dOp| {
        x.as_tensor()
            .apply_op3(wt.as_tensor(), b.as_tensor(), op)
            .unwrap()
    };
    let fused = conv(Conv2dOp::new(1, 1, relu).with_max_pool(k));
    let separate = conv(Conv2dOp::new(1, 1, relu))
        .apply_op1(MaxPool2dOp { k })
        .unwrap();
    assert_eq!(fused.dims(), [n, co, h / k, w / k], "{what}");
    assert_eq!(bits(&fused), bits(&separate), "{what} forward");
    let (g1, g2) = mixed_gradients(&fused, &separate, 10);
    for (name, v) in [("input", &x), ("kernel", &wt), ("bias", &b)] {
        let (ours, theirs) = (
            g1.get(v.as_tensor()).unwrap(),
            g2.get(v.as_tensor()).unwrap(),
        );
        assert_eq!(bits(ours), bits(theirs), "{what} {name} gradient");
    }
    if nan {
        let values = fused.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            values.iter().any(|v| v.is_nan()),
            "{what}: the NaN was lost"
        );
        return;
    }
    // Candle's ReLU turns NaN into 0, so only finite inputs have a reference.
    let reference = reference_conv2d(x.as_tensor(), wt.as_tensor(), b.as_tensor(), 1, 1).unwrap();
    let reference = if relu {
        reference.relu().unwrap()
    } else {
        reference
    };
    let reference = reference_max_pool2d(&reference, k).unwrap();
    assert_close_within(tolerance, &format!("{what} forward"), &fused, &reference);
    let gradients = [("input", &x), ("kernel", &wt), ("bias", &b)];
    assert_gradients_close(tolerance, &what, (&fused, &reference), &gradients, 10);
}

#[test]
fn a_fused_max_pool_matches_the_separate_pool_bit_for_bit() {
    for relu in [false, true] {
        for nan in [false, true] {
            check_fused_pool(DIRECT, 2, 1, 28, 28, 16, 2, relu, nan); // the student's first layer
            check_fused_pool(DIRECT, 3, 16, 14, 14, 16, 2, relu, nan); // and its second
            check_fused_pool(DIRECT, 2, 3, 7, 9, 4, 2, relu, nan); // trailing row and column dropped
            check_fused_pool(DIRECT, 1, 2, 5, 6, 3, 2, relu, nan); // rows of 3 windows
            check_fused_pool(DIRECT, 2, 5, 9, 10, 6, 3, relu, nan);
            check_fused_pool(WINOGRAD, 2, 32, 28, 28, 32, 2, relu, nan); // the teacher's second
        }
    }
}

#[test]
fn a_max_pool_larger_than_the_output_is_an_error_that_says_so() {
    let x = random(&[1, 2, 3, 3], 1);
    let (wt, b) = (random(&[2, 2, 3, 3], 2), random(&[2], 3));
    let err = x
        .apply_op3(&wt, &b, Conv2dOp::new(1, 1, true).with_max_pool(4))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("4x4 max-pool does not fit the convolution's 3x3 output")
            && err.contains("at most the output's size"),
        "{err}"
    );
}
