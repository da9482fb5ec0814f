//! A traced forward pass ([`kd_core::nn::trace`]) as ONNX nodes and initialisers.
use std::collections::{HashMap, HashSet};

use anyhow::{bail, Result};
use kd_core::candle::{Tensor, TensorId};
use kd_core::nn::trace::{Node, Op};
use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

use crate::proto;

/// The graph being written: nodes, initialisers and the ONNX name of each
/// traced tensor.
pub struct Graph {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    values: HashMap<TensorId, String>,
    /// The model's variables by tensor: initialisers keep their `state_dict` names.
    names: HashMap<TensorId, String>,
    /// The initialiser written for each tensor.
    written: HashMap<TensorId, String>,
    fold_bn: bool,
}

impl Graph {
    pub fn new(names: HashMap<TensorId, String>, fold_bn: bool) -> Self {
        Self {
            nodes: Vec::new(),
            initializers: Vec::new(),
            values: HashMap::new(),
            names,
            written: HashMap::new(),
            fold_bn,
        }
    }

    /// Names the ONNX value that stands for traced tensor `id`.
    pub fn bind(&mut self, id: TensorId, name: &str) {
        self.values.insert(id, name.to_string());
    }

    /// The ONNX value of traced tensor `id`, or an error when no recorded
    /// layer made it (a raw tensor operation in the network).
    pub fn value(&self, id: TensorId, arch: &str) -> Result<String> {
        match self.values.get(&id) {
            Some(v) => Ok(v.clone()),
            None => bail!(
                "`{arch}` computes part of its output with an operation kd cannot export: build its forward pass from kd_core::nn's layers and functions (add, flatten, global_avg_pool, ...), which record themselves"
            ),
        }
    }

    /// An initialiser for `t`, named after the model's variable when it is one.
    /// One tensor is written once; two tensors never share a name (a second
    /// one under a taken name gets a suffix).
    pub fn constant(&mut self, t: &Tensor, fallback: &str) -> Result<String> {
        if let Some(name) = self.written.get(&t.id()) {
            return Ok(name.clone());
        }
        let base = match self.names.get(&t.id()) {
            Some(n) => n.clone(),
            None => format!("{fallback}.{}", self.initializers.len()),
        };
        let taken = |n: &str| self.initializers.iter().any(|i| i.name == n);
        let name = (0..)
            .map(|k| match k {
                0 => base.clone(),
                k => format!("{base}.{k}"),
            })
            .find(|n| !taken(n))
            .expect("a free name");
        self.initializers.push(proto::tensor(&name, t)?);
        self.written.insert(t.id(), name.clone());
        Ok(name)
    }

    /// An int64 initialiser of its own (a shape or an index), named `what.N`.
    fn ints(&mut self, values: &[i64], what: &str) -> String {
        let name = format!("{what}.{}", self.initializers.len());
        self.initializers.push(proto::int64s(&name, values));
        name
    }

    /// Appends a node and returns its output's name.
    pub fn node(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let name = format!("{op}_{}", self.nodes.len());
        let output = format!("{name}.out");
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name,
            op_type: op.to_string(),
            attribute,
            ..NodeProto::default()
        });
        output
    }

    /// Writes the nodes that `output` depends on, in the order they ran.
    pub fn emit(&mut self, nodes: &[Node], output: TensorId, arch: &str) -> Result<()> {
        let needed = needed(nodes, output);
        let consumers = consumers(nodes, &needed);
        let mut folded = HashSet::new();
        for (i, node) in nodes.iter().enumerate() {
            if !needed.contains(&i) || folded.contains(&i) {
                continue;
            }
            let input = self.value(node.inputs[0], arch)?;
            let (out_id, value) = match &node.op {
                Op::Conv2d { .. } => {
                    match self.fold_target(nodes, i, &needed, &consumers, output) {
                        Some(bn) => {
                            folded.insert(bn);
                            let folded_conv = fold(&node.op, &nodes[bn].op)?;
                            self.name_like(&folded_conv, &node.op);
                            (nodes[bn].output, self.op(&folded_conv, input)?)
                        }
                        None => (node.output, self.op(&node.op, input)?),
                    }
                }
                Op::Add => {
                    let other = self.value(node.inputs[1], arch)?;
                    (node.output, self.node("Add", vec![input, other], vec![]))
                }
                Op::Concat => {
                    let inputs = node
                        .inputs
                        .iter()
                        .map(|id| self.value(*id, arch))
                        .collect::<Result<Vec<_>>>()?;
                    let attrs = vec![proto::int("axis", 1)];
                    (node.output, self.node("Concat", inputs, attrs))
                }
                op => (node.output, self.op(op, input)?),
            };
            self.bind(out_id, &value);
        }
        Ok(())
    }

    /// The BatchNorm node a plain convolution at `i` folds into: the only
    /// reader of its output, when folding is on.
    fn fold_target(
        &self,
        nodes: &[Node],
        i: usize,
        needed: &HashSet<usize>,
        consumers: &HashMap<TensorId, usize>,
        output: TensorId,
    ) -> Option<usize> {
        let conv = &nodes[i];
        let Op::Conv2d {
            relu: false,
            max_pool: None,
            ..
        } = conv.op
        else {
            return None;
        };
        if !self.fold_bn || conv.output == output || consumers.get(&conv.output) != Some(&1) {
            return None;
        }
        (i + 1..nodes.len()).find(|&j| {
            needed.contains(&j)
                && matches!(nodes[j].op, Op::BatchNorm { .. })
                && nodes[j].inputs == [conv.output]
        })
    }

    /// Names a folded convolution's tensors after the original's
    /// (`conv1.weight`, `conv1.bias`).
    fn name_like(&mut self, folded: &Op, original: &Op) {
        let (Op::Conv2d { weight, bias, .. }, Op::Conv2d { weight: w0, .. }) = (folded, original)
        else {
            return;
        };
        if let Some(name) = self.names.get(&w0.id()).cloned() {
            let layer = name.strip_suffix(".weight").unwrap_or(&name);
            if let Some(b) = bias {
                self.names.insert(b.id(), format!("{layer}.bias"));
            }
            self.names.insert(weight.id(), name);
        }
    }

    /// The nodes of one single-input op.
    fn op(&mut self, op: &Op, input: String) -> Result<String> {
        Ok(match op {
            Op::Conv2d {
                weight,
                bias,
                stride,
                padding,
                relu,
                max_pool,
                groups,
            } => {
                let mut y =
                    self.conv(input, (weight, bias.as_ref()), (*stride, *padding, *groups))?;
                if *relu {
                    y = self.node("Relu", vec![y], vec![]);
                }
                match max_pool {
                    Some(k) => {
                        let (k, stride, padding) = (*k, *k, 0);
                        self.op(&Op::MaxPool { k, stride, padding }, y)?
                    }
                    None => y,
                }
            }
            Op::BatchNorm {
                weight,
                bias,
                mean,
                var,
                eps,
            } => {
                let mut inputs = vec![input];
                for (t, name) in [
                    (weight, "weight"),
                    (bias, "bias"),
                    (mean, "running_mean"),
                    (var, "running_var"),
                ] {
                    inputs.push(self.constant(t, &format!("bn.{name}"))?);
                }
                let attrs = vec![proto::float("epsilon", *eps as f32)];
                self.node("BatchNormalization", inputs, attrs)
            }
            Op::Linear { weight, bias } => {
                let mut inputs = vec![input, self.constant(weight, "linear.weight")?];
                if let Some(b) = bias {
                    inputs.push(self.constant(b, "linear.bias")?);
                }
                self.node("Gemm", inputs, vec![proto::int("transB", 1)])
            }
            Op::Relu => self.node("Relu", vec![input], vec![]),
            Op::Relu6 => self.clip(input, 0.0, 6.0)?,
            Op::MaxPool { k, stride, padding } => {
                self.node("MaxPool", vec![input], window(*k, *stride, *padding))
            }
            Op::GlobalAvgPool => {
                let pooled = self.node("GlobalAveragePool", vec![input], vec![]);
                self.op(&Op::Flatten, pooled)?
            }
            Op::Flatten => self.node("Flatten", vec![input], vec![proto::int("axis", 1)]),
            Op::Narrow { start, len } => {
                let (from, to) = (*start as i64, (start + len) as i64);
                let inputs = vec![
                    input,
                    self.ints(&[from], "slice.starts"),
                    self.ints(&[to], "slice.ends"),
                    self.ints(&[1], "slice.axes"),
                ];
                self.node("Slice", inputs, vec![])
            }
            Op::ChannelShuffle { groups, shape } => self.channel_shuffle(input, *groups, *shape),
            Op::AvgPool { k, stride, padding } => {
                let mut attrs = window(*k, *stride, *padding);
                attrs.push(proto::int("count_include_pad", 1));
                self.node("AveragePool", vec![input], attrs)
            }
            Op::Add | Op::Concat => bail!("{op:?} takes more than one input"),
        })
    }

    /// A `Conv` node of a square kernel.
    fn conv(
        &mut self,
        input: String,
        (weight, bias): (&Tensor, Option<&Tensor>),
        (stride, padding, groups): (usize, usize, usize),
    ) -> Result<String> {
        let k = weight.dim(3)?;
        let mut inputs = vec![input, self.constant(weight, "conv.weight")?];
        if let Some(b) = bias {
            inputs.push(self.constant(b, "conv.bias")?);
        }
        let attrs = vec![
            proto::ints("kernel_shape", &[k, k]),
            proto::ints("pads", &[padding; 4]),
            proto::ints("strides", &[stride, stride]),
            proto::int("group", groups as i64),
        ];
        Ok(self.node("Conv", inputs, attrs))
    }

    /// `Clip` between two constants (opset 11 on takes them as inputs).
    fn clip(&mut self, input: String, min: f32, max: f32) -> Result<String> {
        let device = &kd_core::candle::Device::Cpu;
        let (min, max) = (Tensor::new(min, device)?, Tensor::new(max, device)?);
        let inputs = vec![
            input,
            self.constant(&min, "clip.min")?,
            self.constant(&max, "clip.max")?,
        ];
        Ok(self.node("Clip", inputs, vec![]))
    }

    /// (g, C/g) channels read as (C/g, g): reshape, transpose, reshape.
    fn channel_shuffle(&mut self, input: String, groups: usize, shape: [usize; 3]) -> String {
        let [c, h, w] = shape.map(|d| d as i64);
        let g = groups as i64;
        // 0 keeps the batch dimension as it comes.
        let split = self.ints(&[0, g, c / g, h, w], "shuffle.split");
        let x = self.node("Reshape", vec![input, split], vec![]);
        let perm = vec![proto::ints("perm", &[0, 2, 1, 3, 4])];
        let x = self.node("Transpose", vec![x], perm);
        let merge = self.ints(&[0, c, h, w], "shuffle.merge");
        self.node("Reshape", vec![x, merge], vec![])
    }
}

/// A pooling window's attributes: square kernel, stride, the same padding on every side.
fn window(k: usize, stride: usize, padding: usize) -> Vec<AttributeProto> {
    vec![
        proto::ints("kernel_shape", &[k, k]),
        proto::ints("strides", &[stride, stride]),
        proto::ints("pads", &[padding; 4]),
    ]
}

/// The indices of the nodes `output` depends on.
fn needed(nodes: &[Node], output: TensorId) -> HashSet<usize> {
    let mut wanted = HashSet::from([output]);
    let mut needed = HashSet::new();
    for (i, node) in nodes.iter().enumerate().rev() {
        // The last node that made a tensor is its producer (a layer that
        // records itself once around an inner one that also records).
        if wanted.remove(&node.output) {
            needed.insert(i);
            wanted.extend(node.inputs.iter().copied());
        }
    }
    needed
}

/// How many needed nodes read each tensor.
fn consumers(nodes: &[Node], needed: &HashSet<usize>) -> HashMap<TensorId, usize> {
    let mut count = HashMap::new();
    for i in needed {
        for id in &nodes[*i].inputs {
            *count.entry(*id).or_insert(0) += 1;
        }
    }
    count
}

/// A convolution with the BatchNorm after it folded in:
/// `w' = w * gamma / sqrt(var + eps)` per output channel and
/// `b' = (b - mean) * gamma / sqrt(var + eps) + beta`.
fn fold(conv: &Op, bn: &Op) -> Result<Op> {
    let (
        Op::Conv2d {
            weight,
            bias,
            stride,
            padding,
            groups,
            ..
        },
        Op::BatchNorm {
            weight: gamma,
            bias: beta,
            mean,
            var,
            eps,
        },
    ) = (conv, bn)
    else {
        bail!("only a convolution folds a BatchNorm");
    };
    let scale = (gamma / (var + *eps)?.sqrt()?)?;
    let co = scale.dim(0)?;
    let folded_weight = weight.broadcast_mul(&scale.reshape((co, 1, 1, 1))?)?;
    let b = match bias {
        Some(b) => b.clone(),
        None => mean.zeros_like()?,
    };
    let folded_bias = ((b - mean)? * &scale)?.add(beta)?;
    Ok(Op::Conv2d {
        weight: folded_weight,
        bias: Some(folded_bias),
        stride: *stride,
        padding: *padding,
        relu: false,
        max_pool: None,
        groups: *groups,
    })
}
