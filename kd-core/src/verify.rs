//! Holding a method to a reference: `kd verify`.
//!
//! A **fixture** is a safetensors file made by an independent implementation
//! (PyTorch, for kd's own methods): the inputs of one loss evaluation, the
//! loss it gave and its gradients. Tensors: `student.logits`, `teacher.logits`
//! `[N, K]` f32, `labels` `[N]` (i64 or u32), `student.TAP` / `teacher.TAP` for
//! each tap the method reads, `adapter.NAME` for trainable helpers (PyTorch
//! names), `expected.loss` (0-dim: the method's term alone, before the
//! trainer's weights) and `expected.grad.student.X` / `expected.grad.adapter.NAME`.
//! Metadata: `kd.method` (the method's name) and `kd.params` (JSON object).
//!
//! Methods without a fixture get **property checks** on a tiny float64 batch:
//! finite loss and gradients, gradients against central finite differences,
//! no gradient reaching the teacher's tensors when they are handed over as a
//! teacher hands them (detached), the same loss for a permuted batch, and a
//! zero loss when the student's outputs equal the teacher's (where
//! [`DistillLoss::zero_at_identity`] says so).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::loss::{DistillLoss, MethodContext, Params, Step};
use crate::network::Outputs;
use crate::registry::{self, MethodPlugin};
use crate::{Error, Result};

/// Fixture agreement, as numpy's `allclose`: the difference may be 1e-5 of
/// |expected| plus 1e-5 of the tensor's largest |expected|. The second term is
/// the absolute floor for entries near zero, where float32 sums in another
/// order differ.
pub const TOLERANCE: f64 = 1e-5;
/// Finite differences in float64 against the analytic gradient.
pub const FD_TOLERANCE: f64 = 1e-4;

/// One check and how far it was from passing.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    /// The largest relative error (0 for yes/no checks that passed).
    pub error: f64,
    pub passed: bool,
    pub detail: String,
}

/// The checks of one method against one fixture, or its property checks.
#[derive(Debug, Clone)]
pub struct Report {
    pub method: String,
    /// The fixture's path, or `properties`.
    pub source: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The error of the `expected.loss` check, if there was one.
    pub fn value_error(&self) -> Option<f64> {
        self.checks
            .iter()
            .find(|c| c.name == "loss")
            .map(|c| c.error)
    }

    /// The largest error among gradient checks.
    pub fn max_gradient_error(&self) -> Option<f64> {
        self.checks
            .iter()
            .filter(|c| c.name.starts_with("grad"))
            .map(|c| c.error)
            .reduce(f64::max)
    }
}

/// A fixture read from a file or from bytes a plugin embeds.
pub struct Fixture {
    pub source: PathBuf,
    pub method: String,
    pub params: Params,
    pub tensors: BTreeMap<String, Tensor>,
}

impl Fixture {
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_weights(crate::weights::read(path)?)
    }

    /// A fixture a plugin ships (`include_bytes!`), named `name` in reports.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self> {
        Self::from_weights(crate::weights::parse(Path::new(name), bytes)?)
    }

    fn from_weights(file: crate::weights::WeightsFile) -> Result<Self> {
        let path = file.path.clone();
        let method = file.metadata.get("kd.method").cloned().ok_or_else(|| {
            Error::bad_file(&path, "no `kd.method` metadata: not a kd verify fixture (the README describes the format)")
        })?;
        let params = match file.metadata.get("kd.params") {
            Some(text) => serde_json::from_str(text).map_err(|e| {
                Error::bad_file(
                    &path,
                    format!("`kd.params` is not a JSON object of numbers ({e})"),
                )
            })?,
            None => Params::new(),
        };
        Ok(Self {
            source: path,
            method,
            params,
            tensors: file.tensors,
        })
    }

    fn tensor(&self, key: &str) -> Result<&Tensor> {
        self.tensors.get(key).ok_or_else(|| {
            Error::bad_file(&self.source, format!("the fixture has no tensor `{key}`"))
        })
    }

    /// One side's outputs: `SIDE.logits` and every `SIDE.TAP`, in float32.
    fn outputs(&self, side: &str) -> Result<BTreeMap<String, Tensor>> {
        let prefix = format!("{side}.");
        self.tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|name| (name, t)))
            .map(|(name, t)| Ok((name.to_string(), t.to_dtype(DType::F32)?)))
            .collect()
    }
}

/// The fixture's labels, refused (naming the file) unless they are one per
/// row of `student.logits`, at least one, each a class index below its width:
/// a bad fixture is the fixture's fault, not the method's.
fn fixture_labels(fixture: &Fixture) -> Result<Tensor> {
    let bad = |why: String| Error::bad_file(&fixture.source, why);
    let logits = fixture.tensor("student.logits")?;
    let (n, k) = logits.dims2().map_err(|_| {
        bad(format!(
            "`student.logits` has shape {:?}, not N x K",
            logits.dims()
        ))
    })?;
    let labels = fixture.tensor("labels")?;
    if n == 0 || labels.dims() != [n] {
        return Err(bad(format!(
            "`labels` has shape {:?} for {n} rows of logits: give one label per row, and at least one row",
            labels.dims()
        )));
    }
    let values = labels.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    if let Some(v) = values
        .iter()
        .find(|v| !(v.fract() == 0.0 && **v >= 0.0 && **v < k as f64))
    {
        return Err(bad(format!(
            "`labels` holds {v}, not a class index from 0 to {}",
            k.saturating_sub(1)
        )));
    }
    Ok(labels.to_dtype(DType::U32)?)
}

/// Checks `fixture` against the registered method it names, or against
/// `method` (a method under development held to another's reference).
pub fn check_fixture(fixture: &Fixture, method: Option<&str>) -> Result<Report> {
    let method = registry::method(method.unwrap_or(&fixture.method))?;
    let params = method.resolve_params(&fixture.params)?;
    let labels = fixture_labels(fixture)?;
    let student = Leaves::new(fixture.outputs("student")?)?;
    let teacher = outputs_of(fixture.outputs("teacher")?)?.only(method.taps)?;
    let adapters = VarMap::new();
    let loss = build(
        method,
        &params,
        &adapters,
        &student.outputs(),
        &teacher,
        DType::F32,
    )?;
    for (name, var) in adapters.data().lock().unwrap().iter() {
        let t = fixture.tensor(&format!("adapter.{name}"))?;
        if t.dims() != var.dims() {
            return Err(Error::bad_file(
                &fixture.source,
                format!(
                    "`adapter.{name}` has shape {:?}; the method made it {:?}",
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&t.to_dtype(DType::F32)?)?;
    }
    let value = loss.loss(&Step::new(&student.outputs(), &teacher, &labels))?;
    let mut checks = vec![compare("loss", &value, fixture.tensor("expected.loss")?)?];
    let grads = value.backward()?;
    let vars = adapters.data().lock().unwrap();
    for (key, want) in &fixture.tensors {
        let Some(target) = key.strip_prefix("expected.grad.") else {
            continue;
        };
        let var = match target.split_once('.') {
            Some(("student", name)) => student.vars.get(name),
            Some(("adapter", name)) => vars.get(name),
            _ => None,
        }
        .ok_or_else(|| {
            Error::bad_file(
                &fixture.source,
                format!("`{key}` names no student tensor or adapter the method has"),
            )
        })?;
        let got = match grads.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.zeros_like()?,
        };
        checks.push(compare(&format!("grad {target}"), &got, want)?);
    }
    Ok(Report {
        method: method.name.to_string(),
        source: fixture.source.display().to_string(),
        checks,
    })
}

/// The student's tensors as variables, so their gradients can be read.
struct Leaves {
    vars: BTreeMap<String, Var>,
}

impl Leaves {
    fn new(tensors: BTreeMap<String, Tensor>) -> Result<Self> {
        let vars = tensors
            .into_iter()
            .map(|(k, t)| Ok((k, Var::from_tensor(&t)?)))
            .collect::<Result<_>>()?;
        Ok(Self { vars })
    }

    fn outputs(&self) -> Outputs {
        outputs_of(
            self.vars
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect(),
        )
        .expect("a student fixture has logits")
    }

    /// The outputs as [`crate::Teacher::outputs`] hands them to a loss: detached.
    fn detached(&self) -> Outputs {
        self.outputs().detach()
    }
}

fn outputs_of(mut tensors: BTreeMap<String, Tensor>) -> Result<Outputs> {
    let logits = tensors
        .remove("logits")
        .ok_or_else(|| Error::config("a fixture side has no `logits`"))?;
    Ok(Outputs {
        logits,
        taps: tensors,
    })
}

fn build(
    method: &MethodPlugin,
    params: &Params,
    adapters: &VarMap,
    student: &Outputs,
    teacher: &Outputs,
    dtype: DType,
) -> Result<Box<dyn DistillLoss>> {
    let Some(build) = method.build else {
        return Err(Error::config(format!(
            "method `{}` has no distillation loss to verify",
            method.name
        )));
    };
    let ctx = MethodContext {
        params,
        vb: crate::nn::seeded::var_builder(adapters, 7, dtype, student.logits.device()),
        student,
        teacher,
    };
    build(&ctx).map_err(|e| e.in_method(method.name))
}

/// The largest error of `got` against `want`, |got − want| / (|want| + max |want|):
/// relative for the large entries, in units of the largest for those near zero.
/// Within [`TOLERANCE`] is `allclose(rtol = atol / max = TOLERANCE)`.
fn compare(name: &str, got: &Tensor, want: &Tensor) -> Result<Check> {
    let flat =
        |t: &Tensor| -> Result<Vec<f64>> { Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?) };
    let (g, w) = (flat(got)?, flat(want)?);
    if g.len() != w.len() {
        return Ok(Check {
            name: name.into(),
            error: f64::INFINITY,
            passed: false,
            detail: format!("shape {:?}, expected {:?}", got.dims(), want.dims()),
        });
    }
    let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
    let (mut worst, mut at) = (0f64, 0);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs() / (b.abs() + scale).max(f64::MIN_POSITIVE);
        if err > worst || err.is_nan() {
            (worst, at) = (if err.is_nan() { f64::INFINITY } else { err }, i);
        }
    }
    Ok(Check {
        name: name.into(),
        error: worst,
        passed: worst <= TOLERANCE,
        detail: if g.is_empty() {
            String::new()
        } else {
            format!(
                "worst at element {at}: got {:.8e}, expected {:.8e}",
                g[at], w[at]
            )
        },
    })
}

/// A tiny float64 batch shaped like a student (narrow taps) and a teacher
/// (wide taps) with the same spatial size, and labels.
fn probe_batch(device: &Device) -> Result<(Outputs, Outputs, Tensor)> {
    let (n, k) = (4, 5);
    let noise = |shape: &[usize], seed: u64| -> Result<Tensor> {
        let len: usize = shape.iter().product();
        let mut rng = crate::init::rng_for(seed, "verify");
        let v: Vec<f64> = (0..len)
            .map(|_| rand::Rng::gen_range(&mut rng, -2.0..2.0))
            .collect();
        Ok(Tensor::from_vec(v, shape, device)?)
    };
    let side = |channels: usize, seed: u64| -> Result<Outputs> {
        let features = noise(&[n, channels, 4, 4], seed)?.relu()?;
        Ok(Outputs {
            logits: noise(&[n, k], seed + 1)?,
            taps: BTreeMap::from([
                ("flat".to_string(), features.flatten_from(1)?),
                ("features".to_string(), features),
            ]),
        })
    };
    let labels = Tensor::new(&[0u32, 3, 1, 3], device)?;
    Ok((side(2, 1)?, side(4, 3)?, labels))
}

/// Property checks of `method` with `params` (defaults filled in).
pub fn check_properties(method: &MethodPlugin, params: &Params) -> Result<Report> {
    let device = Device::Cpu;
    let params = method.resolve_params(params)?;
    let (s, t, labels) = probe_batch(&device)?;
    let t = t.only(method.taps)?;
    let student = Leaves::new(tensors_of(&s))?;
    let teacher = Leaves::new(tensors_of(&t))?;
    let adapters = VarMap::new();
    let loss = build(method, &params, &adapters, &s, &t, DType::F64)?;
    let eval = |st: &Outputs, te: &Outputs, y: &Tensor| -> Result<Tensor> {
        loss.loss(&Step::new(st, te, y))
    };
    let value = eval(&student.outputs(), &teacher.detached(), &labels)?;
    let v = value.to_scalar::<f64>()?;
    let grads = value.backward()?;
    let mut checks = vec![yes_no("finite loss", v.is_finite(), format!("loss {v}"))];

    let mut finite = true;
    let mut fd_worst = (0f64, String::new());
    for (name, var) in &student.vars {
        let Some(g) = grads.get(var.as_tensor()) else {
            continue;
        };
        let analytic: Vec<f64> = g.flatten_all()?.to_vec1()?;
        finite &= analytic.iter().all(|x| x.is_finite());
        let base: Vec<f64> = var.as_tensor().flatten_all()?.to_vec1()?;
        let scale = analytic.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-8);
        for i in 0..base.len() {
            let shifted = |h: f64| -> Result<f64> {
                let mut x = base.clone();
                x[i] += h;
                let mut tensors = tensors_of(&student.outputs());
                tensors.insert(name.clone(), Tensor::from_vec(x, var.dims(), &device)?);
                eval(&outputs_of(tensors)?, &teacher.detached(), &labels)?
                    .to_scalar::<f64>()
                    .map_err(Error::from)
            };
            let h = 1e-6;
            let numeric = (shifted(h)? - shifted(-h)?) / (2.0 * h);
            let err = (numeric - analytic[i]).abs() / analytic[i].abs().max(scale * 1e-3);
            if err > fd_worst.0 || err.is_nan() {
                fd_worst = (
                    err,
                    format!(
                        "{name}[{i}]: analytic {:.6e}, numeric {numeric:.6e}",
                        analytic[i]
                    ),
                );
            }
        }
    }
    checks.push(yes_no("finite gradients", finite, String::new()));
    checks.push(Check {
        name: "grad vs finite differences".into(),
        error: fd_worst.0,
        passed: fd_worst.0 <= FD_TOLERANCE,
        detail: fd_worst.1,
    });
    let leaked: Vec<&String> = teacher
        .vars
        .iter()
        .filter(|(_, var)| {
            grads.get(var.as_tensor()).is_some_and(|g| {
                g.abs()
                    .and_then(|a| a.sum_all())
                    .and_then(|s| s.to_scalar::<f64>())
                    .is_ok_and(|s| s != 0.0)
            })
        })
        .map(|(k, _)| k)
        .collect();
    checks.push(yes_no(
        "no gradient to the teacher",
        leaked.is_empty(),
        format!("{leaked:?}"),
    ));

    let order = Tensor::new(&[2u32, 0, 3, 1], &device)?;
    let permute = |o: &Outputs| -> Result<Outputs> {
        outputs_of(
            tensors_of(o)
                .into_iter()
                .map(|(k, t)| Ok((k, t.index_select(&order, 0)?)))
                .collect::<Result<_>>()?,
        )
    };
    let permuted = eval(
        &permute(&student.outputs())?,
        &permute(&teacher.detached())?,
        &labels.index_select(&order, 0)?,
    )?
    .to_scalar::<f64>()?;
    checks.push(relative(
        "same loss for a permuted batch",
        permuted,
        v,
        1e-9,
    ));

    if loss.zero_at_identity() {
        let same = student.outputs();
        let at_identity = eval(&same, &same.only(method.taps)?, &labels)?.to_scalar::<f64>()?;
        checks.push(yes_no(
            "zero loss when student = teacher",
            at_identity.abs() <= 1e-6,
            format!("loss {at_identity:e}"),
        ));
    }
    Ok(Report {
        method: method.name.to_string(),
        source: "properties".into(),
        checks,
    })
}

fn tensors_of(o: &Outputs) -> BTreeMap<String, Tensor> {
    let mut m = o.taps.clone();
    m.insert("logits".into(), o.logits.clone());
    m
}

fn yes_no(name: &str, passed: bool, detail: String) -> Check {
    Check {
        name: name.into(),
        error: if passed { 0.0 } else { f64::INFINITY },
        passed,
        detail,
    }
}

fn relative(name: &str, got: f64, want: f64, tolerance: f64) -> Check {
    let error = (got - want).abs() / want.abs().max(1e-12);
    Check {
        name: name.into(),
        error,
        passed: error <= tolerance,
        detail: format!("{got:e} against {want:e}"),
    }
}
