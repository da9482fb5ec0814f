//! The pieces of `torch.nn.functional` that distillation losses share, written
//! so that their gradients stay finite where PyTorch's do (a zero vector's
//! normalisation, a saturated softmax).
use candle_core::{DType, Tensor, D};
use candle_nn::ops::log_softmax;

use crate::{Error, Result};

/// Refuses two tensors of different shapes, naming both.
pub fn same_shape(a_name: &str, a: &Tensor, b_name: &str, b: &Tensor) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(Error::config(format!(
            "{a_name} {:?} and {b_name} {:?} must have the same shape",
            a.dims(),
            b.dims()
        )));
    }
    Ok(())
}

/// Refuses feature maps that are not N x C x H x W with the same H x W (the
/// channels may differ), naming both shapes: for methods that compare maps
/// position by position. Returns the two shapes.
pub fn same_spatial_size<'a>(
    student: &'a Tensor,
    teacher: &'a Tensor,
) -> Result<(&'a [usize], &'a [usize])> {
    let (s, t) = (student.dims(), teacher.dims());
    if s.len() != 4 || t.len() != 4 || s[2..] != t[2..] {
        return Err(Error::config(format!(
            "the student's features {s:?} and the teacher's {t:?} must be N x C x H x W with the same H x W"
        )));
    }
    Ok((s, t))
}

/// Feature maps brought to one H x W, for methods that compare them position
/// by position: where one side is a whole multiple of the other, the larger
/// map is average-pooled by that factor (RepDistiller's attention loss pools
/// the larger map to the smaller's size the same way). Other sizes are
/// refused, naming both shapes.
pub fn common_spatial_size(student: &Tensor, teacher: &Tensor) -> Result<(Tensor, Tensor)> {
    let (s, t) = (student.dims(), teacher.dims());
    let refuse = || {
        Error::config(format!(
            "the student's features {s:?} and the teacher's {t:?} must be N x C x H x W, with one H x W a whole multiple of the other"
        ))
    };
    if s.len() != 4 || t.len() != 4 {
        return Err(refuse());
    }
    // The factor by which `a` is larger than `b`, if it is a whole one on both sides.
    let factor = |a: &[usize], b: &[usize]| {
        let (fh, fw) = (a[2] / b[2].max(1), a[3] / b[3].max(1));
        (fh >= 1 && fh == fw && a[2] == fh * b[2] && a[3] == fw * b[3]).then_some(fh)
    };
    match (factor(s, t), factor(t, s)) {
        (Some(1), _) => Ok((student.clone(), teacher.clone())),
        (Some(k), _) => Ok((student.avg_pool2d(k)?, teacher.clone())),
        (_, Some(k)) => Ok((student.clone(), teacher.avg_pool2d(k)?)),
        _ => Err(refuse()),
    }
}

/// Hinton's soft-target term: sum(p_t * (log p_t - log p_s)) / N * T², with
/// p = softmax(logits / T) over the last dimension. Both logs come from
/// `log_softmax`, so a teacher probability that underflows to 0 adds 0, not NaN.
pub fn soft_kl(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    let log_p_t = log_softmax(&(teacher / temperature)?, D::Minus1)?;
    let log_p_s = log_softmax(&(student / temperature)?, D::Minus1)?;
    let kl = (log_p_t.exp()? * (log_p_t - log_p_s)?)?.sum_all()?;
    let batch = student.dim(0)? as f64;
    Ok((kl * (temperature * temperature / batch))?)
}

/// The Euclidean norm along `dim` (kept), floored at 1e-12: taken as
/// sqrt(max(‖x‖², 1e-24)) so that a zero vector gets a finite gradient
/// (sqrt's derivative at 0 is infinite), as PyTorch's norm does.
pub fn l2_norm(x: &Tensor, dim: usize) -> Result<Tensor> {
    Ok(x.sqr()?.sum_keepdim(dim)?.maximum(1e-24)?.sqrt()?)
}

/// `F.normalize(x, p=2, dim)`: x / max(‖x‖, 1e-12).
pub fn l2_normalize(x: &Tensor, dim: usize) -> Result<Tensor> {
    Ok(x.broadcast_div(&l2_norm(x, dim)?)?)
}

/// 1 at each row's label, 0 elsewhere: (N) labels -> (N, classes) of `dtype`.
pub fn one_hot(labels: &Tensor, classes: usize, dtype: DType) -> Result<Tensor> {
    let n = labels.dim(0)?;
    let ids = Tensor::arange(0u32, classes as u32, labels.device())?.broadcast_as((n, classes))?;
    let labels = labels
        .to_dtype(DType::U32)?
        .unsqueeze(1)?
        .broadcast_as((n, classes))?;
    Ok(ids.eq(&labels)?.to_dtype(dtype)?)
}

/// `F.smooth_l1_loss(a, b)` with beta 1 and mean reduction: 0.5 d² where
/// |d| < 1, else |d| - 0.5.
pub fn smooth_l1(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d = (a - b)?.abs()?;
    let small = d.minimum(1.0)?;
    Ok(((small.sqr()? * 0.5)? + (d - small)?)?.mean_all()?)
}

/// Mean over the last dimension and the unbiased (Bessel-corrected) standard
/// deviation, as `x.mean(-1)` and `x.std(-1)` with keepdim.
pub fn mean_std(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let n = x.dim(D::Minus1)?;
    if n < 2 {
        return Err(Error::config(format!(
            "a standard deviation needs at least 2 values per row, and rows here have {n}"
        )));
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = (centred.sqr()?.sum_keepdim(D::Minus1)? / (n - 1) as f64)?;
    Ok((mean, var.sqrt()?))
}

/// Flattens everything after the batch dimension: (N, ...) -> (N, rest).
pub fn rows(x: &Tensor) -> Result<Tensor> {
    Ok(x.flatten_from(1)?)
}

/// The number of entries of `x` greater than zero (no gradient).
pub fn count_positive(x: &Tensor) -> Result<f64> {
    Ok(x.gt(0.0)?
        .to_dtype(DType::F64)?
        .sum_all()?
        .to_scalar::<f64>()?)
}

/// The mean over rows of the Pearson correlation of `a` and `b` (N x K), as
/// DIST's code computes it: the cosine of the centred rows, with `eps` added
/// to the product of their norms.
pub fn pearson_rows(a: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let a = a.broadcast_sub(&a.mean_keepdim(D::Minus1)?)?;
    let b = b.broadcast_sub(&b.mean_keepdim(D::Minus1)?)?;
    let norms = ((l2_norm(&a, 1)? * l2_norm(&b, 1)?)?.squeeze(1)? + eps)?;
    Ok(((a * b)?.sum(D::Minus1)? / norms)?.mean_all()?)
}

/// log [p(in mask), p(outside mask)] of softmax(z) per row, N x 2, from
/// log-sum-exps (finite where a probability underflows). `mask` is a 0/1
/// one-hot of the same shape as `z`.
pub fn log_binary_split(z: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let all = z.log_sum_exp(D::Minus1)?;
    let inside = ((z * mask)?.sum(D::Minus1)? - &all)?;
    let outside = ((z - (mask * 1000.0)?)?.log_sum_exp(D::Minus1)? - &all)?;
    Ok(Tensor::stack(&[inside, outside], 1)?)
}

/// Euclidean distances between the rows of `e` (N x D), the diagonal zero,
/// each divided by the mean of the positive ones; squared distances are
/// clamped at 1e-12 before the root (RepDistiller's `RKDLoss`).
pub fn relative_distances(e: &Tensor) -> Result<Tensor> {
    let sq = e.sqr()?.sum_keepdim(1)?;
    let d2 = sq
        .broadcast_add(&sq.t()?)?
        .sub(&(e.matmul(&e.t()?)? * 2.0)?)?;
    let off_diagonal = Tensor::eye(e.dim(0)?, e.dtype(), e.device())?.affine(-1.0, 1.0)?;
    let d = (d2.maximum(1e-12)?.sqrt()? * off_diagonal)?;
    let mean = (d.sum_all()? / count_positive(&d)?)?;
    Ok(d.broadcast_div(&mean)?)
}

/// The cosines of the angles at every row i of `e` (N x D) between every j
/// and k, flattened (N³): <e_j − e_i, e_k − e_i> = G_jk − G_ij − G_ik + G_ii
/// from the Gram matrix G = E Eᵀ, so no N × N × D tensor is built (16.8 M
/// floats at N = 128, D = 1024). Computed in float64 against the
/// cancellation; angles at j = i or k = i (a zero difference) are 0, as
/// `F.normalize` makes them.
pub fn triplet_angle_cosines(e: &Tensor) -> Result<Tensor> {
    let (n, dtype) = (e.dim(0)?, e.dtype());
    let e = e.to_dtype(DType::F64)?;
    let g = e.matmul(&e.t()?)?;
    let eye = Tensor::eye(n, DType::F64, e.device())?;
    let diag = (&g * &eye)?.sum_keepdim(1)?;
    let norms = diag
        .broadcast_add(&diag.t()?)?
        .sub(&(&g * 2.0)?)?
        .maximum(1e-24)?
        .sqrt()?;
    let dot = g
        .unsqueeze(0)?
        .broadcast_sub(&g.unsqueeze(2)?)?
        .broadcast_sub(&g.unsqueeze(1)?)?
        .broadcast_add(&diag.unsqueeze(2)?)?;
    let off = eye.affine(-1.0, 1.0)?;
    let mask = off.unsqueeze(2)?.broadcast_mul(&off.unsqueeze(1)?)?;
    let cos = dot.broadcast_div(&norms.unsqueeze(2)?.broadcast_mul(&norms.unsqueeze(1)?)?)?;
    Ok((cos * mask)?.flatten_all()?.to_dtype(dtype)?)
}
