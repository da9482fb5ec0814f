//! The zoo's ShuffleNets (mdistiller's and RepDistiller's `ShuffleV1`,
//! `ShuffleV2`): a 1x1 stem `conv1`/`bn1` of 24 channels, three stages
//! `layer1..3` of units built from grouped and depthwise convolutions and a
//! channel shuffle, global average pooling and `linear`. Names are their
//! `state_dict` keys; convolutions start as theirs (kaiming normal, fan out),
//! `linear` as `nn.Linear`. Taps: `feat0` (the stem), `feat1..3` (the stages),
//! `preact1..3` (each stage's last unit before its ReLU, as the originals
//! expose it), `pooled`.
use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::VarBuilder;
use kd_core::nn::{
    add, avg_pool2d, cat_channels, channel_shuffle, global_avg_pool, linear, narrow_channels, relu,
    Conv2dConfig, Linear,
};
use kd_core::registry::{ArchPlugin, TapShapes};
use kd_core::{ArchConfig, Mode, Network, Outputs, Result};

use super::{strided, zoo_taps, ConvBn, ZooOutputs};

const STEM: usize = 24;

/// `convK`/`bnK` of a unit, from `cin` to `cout`.
fn conv_bn(
    k: usize,
    (cin, cout): (usize, usize),
    config: Conv2dConfig,
    vb: &VarBuilder,
) -> Result<ConvBn> {
    ConvBn::new(
        cin,
        cout,
        config,
        vb.pp(format!("conv{k}")),
        vb.pp(format!("bn{k}")),
    )
}

const ONE: Conv2dConfig = Conv2dConfig::new(1, 1, 0);

/// A depthwise 3x3 convolution of `stride` (padding 1).
const fn depthwise(channels: usize, stride: usize) -> Conv2dConfig {
    Conv2dConfig::new(3, stride, 1).with_groups(channels)
}

/// ShuffleNet's unit: grouped 1x1, shuffle, depthwise 3x3, grouped 1x1; a
/// strided unit concatenates a 3x3 average pool of its input, the others add it.
struct V1Unit {
    convs: [ConvBn; 3],
    groups: usize,
    strided: bool,
}

impl V1Unit {
    fn new(cin: usize, cout: usize, stride: usize, groups: usize, vb: VarBuilder) -> Result<Self> {
        let mid = cout / 4;
        // The original leaves the first unit's 1x1 (from the stem) ungrouped.
        let g = if cin == STEM { 1 } else { groups };
        Ok(Self {
            convs: [
                conv_bn(1, (cin, mid), ONE.with_groups(g), &vb)?,
                conv_bn(2, (mid, mid), depthwise(mid, stride), &vb)?,
                conv_bn(3, (mid, cout), ONE.with_groups(groups), &vb)?,
            ],
            groups: g,
            strided: stride == 2,
        })
    }

    /// The unit's output and its sum (or concatenation) before the ReLU.
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        let [a, b, c] = &self.convs;
        let y = channel_shuffle(&relu(&a.forward(x, mode)?)?, self.groups)?;
        let y = c.forward(&relu(&b.forward(&y, mode)?)?, mode)?;
        let preact = match self.strided {
            true => cat_channels(&[&y, &avg_pool2d(x, 3, 2, 1)?])?,
            false => add(&y, x)?,
        };
        Ok((relu(&preact)?, preact))
    }
}

/// ShuffleNet V2's unit: half the channels pass; the other half goes through
/// 1x1, depthwise 3x3, 1x1; the halves are concatenated and shuffled.
struct V2Unit {
    convs: [ConvBn; 3],
}

impl V2Unit {
    fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let c = channels / 2;
        Ok(Self {
            convs: [
                conv_bn(1, (c, c), ONE, &vb)?,
                conv_bn(2, (c, c), depthwise(c, 1), &vb)?,
                conv_bn(3, (c, c), ONE, &vb)?,
            ],
        })
    }

    /// The unit's output and, as the original exposes it, the concatenation
    /// before the last ReLU (not shuffled).
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        let [a, b, c] = &self.convs;
        let half = x.dim(1)? / 2;
        let (keep, y) = (
            narrow_channels(x, 0, half)?,
            narrow_channels(x, half, half)?,
        );
        let y = b.forward(&relu(&a.forward(&y, mode)?)?, mode)?;
        let y = c.forward(&y, mode)?;
        let preact = cat_channels(&[&keep, &y])?;
        let out = channel_shuffle(&cat_channels(&[&keep, &relu(&y)?])?, 2)?;
        Ok((out, preact))
    }
}

/// ShuffleNet V2's strided unit: both branches read the whole input (left:
/// depthwise 3x3, 1x1; right: 1x1, depthwise 3x3, 1x1), then concatenate and shuffle.
struct V2Down {
    convs: [ConvBn; 5],
}

impl V2Down {
    fn new(cin: usize, cout: usize, vb: VarBuilder) -> Result<Self> {
        let mid = cout / 2;
        Ok(Self {
            convs: [
                conv_bn(1, (cin, cin), depthwise(cin, 2), &vb)?,
                conv_bn(2, (cin, mid), ONE, &vb)?,
                conv_bn(3, (cin, mid), ONE, &vb)?,
                conv_bn(4, (mid, mid), depthwise(mid, 2), &vb)?,
                conv_bn(5, (mid, mid), ONE, &vb)?,
            ],
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let [c1, c2, c3, c4, c5] = &self.convs;
        let left = relu(&c2.forward(&c1.forward(x, mode)?, mode)?)?;
        let right = c4.forward(&relu(&c3.forward(x, mode)?)?, mode)?;
        let right = relu(&c5.forward(&right, mode)?)?;
        channel_shuffle(&cat_channels(&[&left, &right])?, 2)
    }
}

/// One stage: V1's units, or V2's strided unit and then its units.
enum Stage {
    V1(Vec<V1Unit>),
    V2(Box<V2Down>, Vec<V2Unit>),
}

impl Stage {
    /// The stage's output and its last unit's pre-activation.
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        match self {
            Stage::V1(units) => chain(units, x.clone(), |u, x| u.forward(x, mode)),
            Stage::V2(down, units) => {
                chain(units, down.forward(x, mode)?, |u, x| u.forward(x, mode))
            }
        }
    }
}

/// Runs `units` one after another from `x`: the last output and pre-activation.
fn chain<U>(
    units: &[U],
    mut x: Tensor,
    forward: impl Fn(&U, &Tensor) -> Result<(Tensor, Tensor)>,
) -> Result<(Tensor, Tensor)> {
    let mut preact = None;
    for unit in units {
        let (out, pre) = forward(unit, &x)?;
        (x, preact) = (out, Some(pre));
    }
    Ok((x, preact.expect("a stage has units")))
}

/// Which ShuffleNet, with its stage widths and units per stage.
#[derive(Clone, Copy)]
pub enum Version {
    /// ShuffleNet with this many groups.
    V1 { groups: usize },
    /// ShuffleNet V2, with the width of its last 1x1 convolution.
    V2 { last: usize },
}

pub struct ShuffleNet {
    stem: ConvBn,
    stages: Vec<Stage>,
    head: Option<ConvBn>,
    linear: Linear,
}

impl ShuffleNet {
    pub fn new(
        config: &ArchConfig,
        vb: VarBuilder,
        version: Version,
        (widths, units): ([usize; 3], [usize; 3]),
    ) -> Result<Self> {
        let stem = ConvBn::new(
            config.input_shape[0],
            STEM,
            ONE,
            vb.pp("conv1"),
            vb.pp("bn1"),
        )?;
        let mut cin = STEM;
        let mut stages = Vec::new();
        for (s, (&w, &n)) in widths.iter().zip(&units).enumerate() {
            let layer = vb.pp(format!("layer{}", s + 1));
            stages.push(match version {
                Version::V1 { groups } => Stage::V1(
                    (0..n)
                        .map(|i| match i {
                            0 => V1Unit::new(cin, w - cin, 2, groups, layer.pp(0)),
                            i => V1Unit::new(w, w, 1, groups, layer.pp(i)),
                        })
                        .collect::<Result<_>>()?,
                ),
                Version::V2 { .. } => Stage::V2(
                    Box::new(V2Down::new(cin, w, layer.pp(0))?),
                    (1..=n)
                        .map(|i| V2Unit::new(w, layer.pp(i)))
                        .collect::<Result<_>>()?,
                ),
            });
            cin = w;
        }
        let head = match version {
            Version::V1 { .. } => None,
            Version::V2 { last } => {
                let h = ConvBn::new(cin, last, ONE, vb.pp("conv2"), vb.pp("bn2"))?;
                cin = last;
                Some(h)
            }
        };
        Ok(Self {
            stem,
            stages,
            head,
            linear: linear(cin, config.num_classes, vb.pp("linear"))?,
        })
    }

    pub fn taps(config: &ArchConfig, version: Version, widths: [usize; 3]) -> TapShapes {
        let [_, h, w] = config.input_shape;
        let mut side = (h, w);
        let mut feats = vec![[STEM, h, w]];
        for c in widths {
            side = (strided(side.0, 2), strided(side.1, 2));
            feats.push([c, side.0, side.1]);
        }
        let pooled = match version {
            Version::V1 { .. } => widths[2],
            Version::V2 { last } => last,
        };
        zoo_taps(&feats, true, pooled)
    }
}

impl Network for ShuffleNet {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let mut x = relu(&self.stem.forward(images, mode)?)?;
        let (mut feats, mut preacts) = (vec![x.clone()], Vec::new());
        for stage in &self.stages {
            let (out, preact) = stage.forward(&x, mode)?;
            x = out;
            feats.push(x.clone());
            preacts.push(preact);
        }
        if let Some(head) = &self.head {
            x = relu(&head.forward(&x, mode)?)?;
        }
        let pooled = global_avg_pool(&x)?;
        let logits = self.linear.forward(&pooled)?;
        Ok(ZooOutputs {
            feats,
            preacts,
            pooled,
        }
        .with_logits(logits))
    }
}

const V1: (Version, [usize; 3], [usize; 3]) =
    (Version::V1 { groups: 3 }, [240, 480, 960], [4, 8, 4]);
const V2: (Version, [usize; 3], [usize; 3]) =
    (Version::V2 { last: 1024 }, [116, 232, 464], [3, 7, 3]);

kd_core::inventory::submit! {
    ArchPlugin {
        name: "ShuffleV1",
        summary: "ShuffleNet of the CIFAR zoo (groups 3, widths 240-480-960, units 4-8-4; grouped and depthwise convolutions)",
        build: |config, vb| Ok(Box::new(ShuffleNet::new(config, vb, V1.0, (V1.1, V1.2))?)),
        taps: |config| ShuffleNet::taps(config, V1.0, V1.1),
    }
}

kd_core::inventory::submit! {
    ArchPlugin {
        name: "ShuffleV2",
        summary: "ShuffleNet V2 of the CIFAR zoo (size 1: widths 116-232-464, 1x1 to 1024; channel split and shuffle)",
        build: |config, vb| Ok(Box::new(ShuffleNet::new(config, vb, V2.0, (V2.1, V2.2))?)),
        taps: |config| ShuffleNet::taps(config, V2.0, V2.1),
    }
}
