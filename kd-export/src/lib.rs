//! kd's networks as ONNX files, checked before they are written.
//!
//! [`export`] traces a model's evaluation-mode forward pass (the layers of
//! [`kd_core::nn`] record themselves, see [`kd_core::nn::trace`]) and writes
//! it as one ONNX graph: opset [`OPSET`], a dynamic batch dimension, dropout
//! gone, BatchNorm folded into the convolution before it or kept as
//! `BatchNormalization`, the weights as initialisers under their
//! `state_dict` names, and the model's metadata as metadata properties.
//! [`check`] runs the file with tract, an ONNX evaluator in Rust, and
//! compares its logits with kd's own forward pass.
mod graph;
mod proto;

use anyhow::{bail, Context, Result};
use kd_core::candle::{DType, Device, Tensor};
use kd_core::data::Normalization;
use kd_core::nn::trace::trace;
use kd_core::{Mode, Model};
use prost::Message;
use tract_onnx::pb::{ModelProto, OperatorSetIdProto, StringStringEntryProto};

use graph::Graph;

/// The ONNX operator set: every op kd writes (Conv, BatchNormalization, Gemm,
/// Relu, Clip, MaxPool, AveragePool, GlobalAveragePool, Flatten, Add, Sub,
/// Div, Concat, Slice, Reshape, Transpose) is in it.
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;
/// The graph's input (N x C x H x W images) and output (N x classes logits).
pub const INPUT: &str = "input";
pub const OUTPUT: &str = "logits";
/// The name of the dynamic batch dimension.
const BATCH: &str = "batch";

/// The largest logit difference [`check`] accepts, relative to the largest
/// logit: BatchNorm kept computes as kd does, folded reorders the arithmetic.
pub const TOLERANCE_KEPT: f32 = 1e-5;
pub const TOLERANCE_FOLDED: f32 = 1e-4;

/// How to write the graph.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Fold each BatchNorm into the convolution before it.
    pub fold_bn: bool,
    /// Bake this normalisation into the graph: the file then takes images
    /// scaled to [0, 1] instead of normalised ones.
    pub normalize_inside: Option<Normalization>,
    /// The model's metadata, written as ONNX metadata properties.
    pub metadata: Vec<(String, String)>,
}

impl Options {
    /// The tolerance [`check`] holds an export with these options to.
    pub fn tolerance(&self) -> f32 {
        match self.fold_bn {
            true => TOLERANCE_FOLDED,
            false => TOLERANCE_KEPT,
        }
    }
}

/// `model` as the bytes of an ONNX file.
pub fn export(model: &Model, options: &Options) -> Result<Vec<u8>> {
    Ok(model_proto(model, options)?.encode_to_vec())
}

/// `model` as an ONNX `ModelProto`.
pub fn model_proto(model: &Model, options: &Options) -> Result<ModelProto> {
    let [c, h, w] = model.config.input_shape;
    let arch = model.arch.name;
    let probe = Tensor::zeros((2, c, h, w), DType::F32, model.device())?;
    let (out, nodes) = trace(|| model.forward(&probe, Mode::Eval));
    let logits = out?.logits;
    let names = model
        .tensors()
        .into_iter()
        .map(|(n, t)| (t.id(), n))
        .collect();
    let mut g = Graph::new(names, options.fold_bn);
    let images = match &options.normalize_inside {
        Some(n) => normalize(&mut g, n, c)?,
        None => INPUT.to_string(),
    };
    g.bind(probe.id(), &images);
    g.emit(&nodes, logits.id(), arch)?;
    let last = g.value(logits.id(), arch)?;
    let Some(node) = g.nodes.iter_mut().find(|n| n.output == [last.clone()]) else {
        bail!("`{arch}` returns its input as its logits: there is no graph to export");
    };
    node.output = vec![OUTPUT.to_string()];
    let graph = tract_onnx::pb::GraphProto {
        name: arch.to_string(),
        node: g.nodes,
        initializer: g.initializers,
        input: vec![proto::value_info(
            INPUT,
            &[None, Some(c), Some(h), Some(w)],
            BATCH,
        )],
        output: vec![proto::value_info(
            OUTPUT,
            &[None, Some(model.config.num_classes)],
            BATCH,
        )],
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "kd".into(),
        producer_version: kd_core::VERSION.into(),
        graph: Some(graph),
        metadata_props: metadata(options),
        ..Default::default()
    })
}

/// The metadata properties: the model's own, then what the input is.
fn metadata(options: &Options) -> Vec<StringStringEntryProto> {
    let input = match options.normalize_inside {
        Some(_) => "images scaled to [0, 1]; the normalisation is inside the graph",
        None => {
            "normalised images: (pixel / 255 - mean) / std, with kd.normalization's mean and std"
        }
    };
    let mut props: Vec<_> = options.metadata.clone();
    props.push(("kd.onnx_input".into(), input.into()));
    props
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key, value })
        .collect()
}

/// `(input - mean) / std` in front of the network; returns the normalised value.
fn normalize(g: &mut Graph, n: &Normalization, channels: usize) -> Result<String> {
    let mean = g.constant(
        &per_channel(&n.mean, channels, "mean")?,
        "normalization.mean",
    )?;
    let std = g.constant(&per_channel(&n.std, channels, "std")?, "normalization.std")?;
    let centred = g.node("Sub", vec![INPUT.into(), mean], vec![]);
    Ok(g.node("Div", vec![centred, std], vec![]))
}

/// A normalisation's mean or std as a 1 x C x 1 x 1 tensor (one value serves every channel).
fn per_channel(v: &[f32], channels: usize, what: &str) -> Result<Tensor> {
    let v = match v.len() {
        1 => vec![v[0]; channels],
        l if l == channels => v.to_vec(),
        l => bail!("the normalisation's {what} has {l} values for {channels} channels"),
    };
    Ok(Tensor::from_vec(v, (1, channels, 1, 1), &Device::Cpu)?)
}

/// Images in [0, 1] normalised as kd's data sets do.
fn normalized(images: &Tensor, n: &Normalization) -> Result<Tensor> {
    let c = images.dim(1)?;
    let mean = per_channel(&n.mean, c, "mean")?;
    let std = per_channel(&n.std, c, "std")?;
    Ok(images.broadcast_sub(&mean)?.broadcast_div(&std)?)
}

/// An ONNX file compiled by tract for one input shape, ready to run.
pub struct Runner {
    plan: tract_onnx::prelude::TypedRunnableModel<tract_onnx::prelude::TypedModel>,
    dims: Vec<usize>,
}

impl Runner {
    /// Reads and optimises `file` for inputs of `dims` (N x C x H x W).
    pub fn new(file: &[u8], dims: &[usize]) -> Result<Self> {
        use tract_onnx::prelude::{DatumExt, Framework, InferenceModelExt};
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &file[..])
            .context("tract could not read the ONNX file")?
            .with_input_fact(0, f32::fact(dims).into())?
            .into_optimized()?
            .into_runnable()?;
        Ok(Self {
            plan,
            dims: dims.to_vec(),
        })
    }

    /// The logits for `images`, which must have the shape the runner was made for.
    pub fn run(&self, images: &Tensor) -> Result<Tensor> {
        if images.dims() != self.dims {
            bail!("this runner takes {:?}, not {:?}", self.dims, images.dims());
        }
        let values = images.flatten_all()?.to_vec1::<f32>()?;
        let input = tract_onnx::prelude::Tensor::from_shape(&self.dims, &values)?;
        use tract_onnx::prelude::tvec;
        let out = self.plan.run(tvec!(input.into()))?;
        let logits = out[0].to_array_view::<f32>()?;
        let shape = logits.shape().to_vec();
        Ok(Tensor::from_vec(
            logits.iter().copied().collect(),
            shape,
            &Device::Cpu,
        )?)
    }
}

/// Runs an ONNX file on `images` (N x C x H x W, float32) with tract.
pub fn evaluate(file: &[u8], images: &Tensor) -> Result<Tensor> {
    Runner::new(file, images.dims())?.run(images)
}

/// The largest absolute difference between two sets of logits over the
/// largest magnitude of `reference`: a NaN or infinite logit on either side
/// gives NaN (no tolerance accepts it).
pub fn relative_error(ours: &Tensor, reference: &Tensor) -> Result<f32> {
    if ours.dims() != reference.dims() {
        bail!(
            "the ONNX graph gives logits of {:?}, kd {:?}",
            ours.dims(),
            reference.dims()
        );
    }
    let a = ours.flatten_all()?.to_vec1::<f32>()?;
    let b = reference.flatten_all()?.to_vec1::<f32>()?;
    let (mut diff, mut scale) = (0f32, f32::MIN_POSITIVE);
    for (x, y) in a.iter().zip(&b) {
        if !x.is_finite() || !y.is_finite() {
            return Ok(f32::NAN);
        }
        diff = diff.max((x - y).abs());
        scale = scale.max(y.abs());
    }
    Ok(diff / scale)
}

/// A fixed batch of images in [0, 1] with varied pixels: the probe [`check`] runs.
pub fn probe_images(batch: usize, shape: [usize; 3]) -> Result<Tensor> {
    let [c, h, w] = shape;
    let n = batch * c * h * w;
    let values = (0..n).map(|i| ((i * 7919) % 257) as f32 / 256.0).collect();
    Ok(Tensor::from_vec(values, (batch, c, h, w), &Device::Cpu)?)
}

/// [`check`], failing unless the error is within the options' tolerance
/// (NaN fails too); returns the error.
pub fn check_within(model: &Model, onnx: &[u8], options: &Options) -> Result<f32> {
    let error = check(model, onnx, options)?;
    // A NaN error is never within the tolerance.
    if error.is_nan() || error > options.tolerance() {
        bail!(
            "the exported graph's logits differ from kd's by {error:.2e} (relative; at most {:.0e} expected). This is a bug in kd's export: please report it with the model",
            options.tolerance()
        );
    }
    Ok(error)
}

/// Runs `onnx` with tract on a probe batch and compares its logits with
/// `model`'s: the relative error (see [`relative_error`]).
pub fn check(model: &Model, onnx: &[u8], options: &Options) -> Result<f32> {
    let images = probe_images(4, model.config.input_shape)?;
    let kd_input = match &options.normalize_inside {
        Some(n) => normalized(&images, n)?,
        None => images.clone(),
    };
    let ours = model
        .forward(&kd_input.to_device(model.device())?, Mode::Eval)?
        .logits
        .to_device(&Device::Cpu)?;
    let theirs = evaluate(onnx, &images)?;
    relative_error(&theirs, &ours)
}
