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
