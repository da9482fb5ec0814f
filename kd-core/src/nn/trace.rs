//! The layers a forward pass ran, recorded by the layers themselves: how a
//! network becomes a graph (ONNX) without a second description of it.
//!
//! Each layer of [`crate::nn`] records one [`Node`] while a [`trace`] is
//! active, naming its inputs and output by Candle's tensor ids. A network
//! built from these layers (and [`super::add`], [`super::flatten`],
//! [`super::global_avg_pool`] between them) traces whole; a raw tensor
//! operation leaves a gap that the exporter reports.
use std::cell::RefCell;

use candle_core::{Tensor, TensorId};

/// What one recorded layer computes, with the tensors it holds.
#[derive(Debug, Clone)]
pub enum Op {
    /// `nn.Conv2d` (square kernel), then ReLU and `MaxPool2d(k)` when fused.
    Conv2d {
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: usize,
        relu: bool,
        max_pool: Option<usize>,
        /// ONNX's `group`: 1, or the groups of a grouped convolution.
        groups: usize,
    },
    /// BatchNorm in evaluation mode: `(x - mean) / sqrt(var + eps) * weight + bias`
    /// per channel (dimension 1).
    BatchNorm {
        weight: Tensor,
        bias: Tensor,
        mean: Tensor,
        var: Tensor,
        eps: f64,
    },
    /// `nn.Linear`: `x @ weight.T + bias`.
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    Relu,
    /// `nn.ReLU6`: `min(max(x, 0), 6)`.
    Relu6,
    /// `nn.MaxPool2d(k, stride, padding)`.
    MaxPool {
        k: usize,
        stride: usize,
        padding: usize,
    },
    /// Mean over the spatial dimensions: N x C x H x W to N x C.
    GlobalAvgPool,
    /// Everything from dimension 1 on as one.
    Flatten,
    /// Element-wise sum of two tensors of one shape.
    Add,
    /// The inputs side by side along the channels.
    Concat,
    /// Channels `start..start + len`.
    Narrow {
        start: usize,
        len: usize,
    },
    /// ShuffleNet's channel shuffle over `groups` of a sample of `shape` (C, H, W).
    ChannelShuffle {
        groups: usize,
        shape: [usize; 3],
    },
    /// `AvgPool2d(k, stride, padding)`, the padding counted in each mean.
    AvgPool {
        k: usize,
        stride: usize,
        padding: usize,
    },
}

/// One recorded layer: its op, the tensors it read and the one it made.
#[derive(Debug, Clone)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
}

thread_local! {
    static NODES: RefCell<Option<Vec<Node>>> = const { RefCell::new(None) };
}

/// Runs `run` and returns what it returned with the layers it ran, in order.
pub fn trace<T>(run: impl FnOnce() -> T) -> (T, Vec<Node>) {
    let outer = NODES.with(|n| n.replace(Some(Vec::new())));
    let out = run();
    let nodes = NODES.with(|n| n.replace(outer)).unwrap_or_default();
    (out, nodes)
}

/// Records a layer when a trace is active; `op` is built only then.
pub fn record(op: impl FnOnce() -> Op, inputs: &[&Tensor], output: &Tensor) {
    NODES.with(|n| {
        if let Some(nodes) = n.borrow_mut().as_mut() {
            nodes.push(Node {
                op: op(),
                inputs: inputs.iter().map(|t| t.id()).collect(),
                output: output.id(),
            });
        }
    });
}
