//! In-memory image-classification data: u8 NCHW images, u32 labels, class
//! names and the normalisation applied when a batch is assembled. The file
//! formats that fill it are kd-train's.
pub mod transform;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Per-channel mean and standard deviation, on the 0..1 pixel scale
/// (torchvision's `Normalize` after `ToTensor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// The mean and std of channel `ch`: one value serves every channel.
    pub fn channel(&self, ch: usize) -> (f32, f32) {
        let at = |v: &[f32]| v.get(ch).or(v.first()).copied().unwrap_or(f32::NAN);
        (at(&self.mean), at(&self.std))
    }
}

/// A set of labelled images held in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// N x C x H x W pixel bytes.
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
    /// C, H, W of one image.
    pub shape: [usize; 3],
    pub classes: Vec<String>,
    pub normalization: Normalization,
}

/// A training and a test split of one data set.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

/// Images ready for a network: normalised f32 N x C x H x W, and labels.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
    /// Positions of these samples in their data set (keys for teacher caches).
    pub indices: Vec<usize>,
}

impl Dataset {
    /// Checks that sizes agree, labels are in range and the set is not empty.
    pub fn new(
        name: impl Into<String>,
        images: Vec<u8>,
        labels: Vec<u32>,
        shape: [usize; 3],
        classes: Vec<String>,
        normalization: Normalization,
    ) -> Result<Self> {
        let name = name.into();
        let per_image: usize = shape.iter().product();
        if labels.is_empty() {
            return Err(Error::config(format!("data set `{name}` is empty")));
        }
        if per_image == 0 || images.len() != labels.len() * per_image {
            return Err(Error::config(format!(
                "data set `{name}`: {} pixel bytes do not make {} images of {:?}",
                images.len(),
                labels.len(),
                shape
            )));
        }
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes.len())
        {
            return Err(Error::config(format!(
                "data set `{name}`: label {l} of sample {i} is outside the {} classes (0..{})",
                classes.len(),
                classes.len() - 1
            )));
        }
        if normalization.mean.len() != shape[0] || normalization.std.len() != shape[0] {
            return Err(Error::config(format!(
                "data set `{name}`: normalisation has {} means and {} stds for {} channels",
                normalization.mean.len(),
                normalization.std.len(),
                shape[0]
            )));
        }
        Ok(Self {
            name,
            images,
            labels,
            shape,
            classes,
            normalization,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The first `n` samples (the tutorial's CPU note). `n` larger than the set
    /// is an error rather than a silent truncation.
    pub fn first(&self, n: usize) -> Result<Self> {
        if n == 0 || n > self.len() {
            return Err(Error::config(format!(
                "subset of {n} asked for, but `{}` has {} samples: use a number from 1 to {}",
                self.name,
                self.len(),
                self.len()
            )));
        }
        let per_image: usize = self.shape.iter().product();
        let mut out = self.clone();
        out.images.truncate(n * per_image);
        out.labels.truncate(n);
        Ok(out)
    }

    /// Per-channel mean and std of the pixels (0..1 scale).
    pub fn channel_stats(&self) -> Normalization {
        channel_stats(&self.images, self.shape)
    }

    /// Assembles the samples at `indices` into a normalised batch on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Result<Batch> {
        self.batch_with(indices, &[], (0, 0), device)
    }

    /// [`batch`](Self::batch), each sample first passed through `transforms`
    /// with a generator of its own, seeded by (`seed`, `epoch`) and its index.
    pub fn batch_with(
        &self,
        indices: &[usize],
        transforms: &[Box<dyn transform::Transform>],
        (seed, epoch): (u64, usize),
        device: &Device,
    ) -> Result<Batch> {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let per_image = c * plane;
        // One lookup table per channel turns a byte into its normalised value.
        let tables: Vec<[f32; 256]> = (0..c)
            .map(|ch| {
                let (m, s) = self.normalization.channel(ch);
                std::array::from_fn(|v| (v as f32 / 255.0 - m) / s)
            })
            .collect();
        let mut data = Vec::with_capacity(indices.len() * per_image);
        let mut labels = Vec::with_capacity(indices.len());
        let mut scratch = vec![0u8; if transforms.is_empty() { 0 } else { per_image }];
        for &i in indices {
            let mut img = &self.images[i * per_image..(i + 1) * per_image];
            if !transforms.is_empty() {
                scratch.copy_from_slice(img);
                let mut rng = crate::init::rng_for(seed, &format!("augment/{epoch}/{i}"));
                let mut image = transform::Image {
                    pixels: &mut scratch,
                    shape: self.shape,
                };
                for t in transforms {
                    t.apply(&mut image, &mut rng);
                }
                img = &scratch;
            }
            for (ch, table) in tables.iter().enumerate() {
                data.extend(
                    img[ch * plane..(ch + 1) * plane]
                        .iter()
                        .map(|&b| table[b as usize]),
                );
            }
            labels.push(self.labels[i]);
        }
        let n = indices.len();
        Ok(Batch {
            images: Tensor::from_vec(data, (n, c, h, w), device)?,
            labels: Tensor::from_vec(labels, n, device)?,
            indices: indices.to_vec(),
        })
    }

    /// Index batches in order (evaluation) or shuffled for `epoch` under
    /// `seed`: the order of an epoch depends on nothing else, so a resumed run
    /// sees the same batches.
    pub fn batch_indices(
        &self,
        batch_size: usize,
        shuffle: Option<(u64, usize)>,
    ) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some((seed, epoch)) = shuffle {
            let mut rng = crate::init::rng_for(seed, &format!("shuffle/{epoch}"));
            order.shuffle(&mut rng);
        }
        order
            .chunks(batch_size.max(1))
            .map(|c| c.to_vec())
            .collect()
    }
}

pub fn channel_stats(images: &[u8], shape: [usize; 3]) -> Normalization {
    let [c, h, w] = shape;
    let plane = h * w;
    let per_image = c * plane;
    let n = images.len() / per_image.max(1);
    let mut mean = Vec::with_capacity(c);
    let mut std = Vec::with_capacity(c);
    for ch in 0..c {
        let (mut sum, mut sq) = (0f64, 0f64);
        for i in 0..n {
            for &b in &images[i * per_image + ch * plane..i * per_image + (ch + 1) * plane] {
                let v = b as f64 / 255.0;
                sum += v;
                sq += v * v;
            }
        }
        let count = (n * plane).max(1) as f64;
        let m = sum / count;
        mean.push(m as f32);
        std.push(((sq / count - m * m).max(1e-12)).sqrt() as f32);
    }
    Normalization { mean, std }
}

/// The largest `--image-size`: a 20,000-image set of that size already
/// takes 60 GB of memory.
pub const MAX_IMAGE_SIZE: usize = 1024;

/// How a folder of image files of any size is read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageOptions {
    /// The side every image is resized and cropped to; `None`: the median.
    pub image_size: Option<usize>,
    /// Skip (and count) images that cannot be decoded instead of stopping.
    pub skip_bad_images: bool,
}
