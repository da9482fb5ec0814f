//! A seeded synthetic data set that a small CNN can learn: each class has a
//! smooth pattern of its own, and every sample is that pattern shifted by a
//! pixel or two and buried in noise.
use rand::Rng;

use crate::data::{channel_stats, Dataset, Splits};
use kd_core::Result;

#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    pub train: usize,
    pub test: usize,
    /// C, H, W.
    pub shape: [usize; 3],
    pub classes: usize,
    pub seed: u64,
}

impl SyntheticSpec {
    /// 2,000 training and 500 test images of 3x32x32 in ten classes.
    pub const DEFAULT: Self = Self {
        train: 2000,
        test: 500,
        shape: [3, 32, 32],
        classes: CLASS_NAMES.len(),
        seed: 0,
    };
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The class names, `class0`, `class1`, ...: the first ten as a constant
/// for registrations, any further ones numbered the same way.
pub const CLASS_NAMES: &[&str] = &[
    "class0", "class1", "class2", "class3", "class4", "class5", "class6", "class7", "class8",
    "class9",
];

fn class_name(k: usize) -> String {
    CLASS_NAMES
        .get(k)
        .map_or_else(|| format!("class{k}"), |s| s.to_string())
}

pub fn synthetic(spec: &SyntheticSpec) -> Result<Splits> {
    let [c, h, w] = spec.shape;
    // Images as bytes, plus a float pattern per class.
    let bytes = kd_core::limits::product(&[spec.train + spec.test, c, h, w])
        .zip(kd_core::limits::product(&[spec.classes, c, h, w, 4]))
        .and_then(|(a, b)| a.checked_add(b));
    kd_core::limits::check_fits(
        format_args!("a synthetic data set of {c}x{h}x{w} images"),
        bytes,
    )?;
    let mut rng = kd_core::init::rng_for(spec.seed, "synthetic/patterns");
    // A class pattern: a sum of two plane waves per channel.
    let patterns: Vec<Vec<f32>> = (0..spec.classes)
        .map(|_| {
            let waves: Vec<[f32; 4]> = (0..c * 2)
                .map(|_| {
                    [
                        rng.gen_range(0.5..3.0),
                        rng.gen_range(0.5..3.0),
                        rng.gen_range(0.0..6.3),
                        rng.gen_range(-1.0..1.0),
                    ]
                })
                .collect();
            let mut p = Vec::with_capacity(c * h * w);
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let v: f32 = waves[ch * 2..ch * 2 + 2]
                            .iter()
                            .map(|[fy, fx, ph, sign]| {
                                sign.signum()
                                    * (fy * y as f32 / h as f32 * 6.3
                                        + fx * x as f32 / w as f32 * 6.3
                                        + ph)
                                        .sin()
                            })
                            .sum();
                        p.push(v / 2.0);
                    }
                }
            }
            p
        })
        .collect();
    let classes: Vec<String> = (0..spec.classes).map(class_name).collect();
    let make = |n: usize, stream: &str| {
        let mut rng = kd_core::init::rng_for(spec.seed, stream);
        let mut images = Vec::with_capacity(n * c * h * w);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let label = rng.gen_range(0..spec.classes);
            let (dy, dx) = (rng.gen_range(0..3usize), rng.gen_range(0..3usize));
            let p = &patterns[label];
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let (sy, sx) = ((y + dy) % h, (x + dx) % w);
                        let v =
                            128.0 + 80.0 * p[(ch * h + sy) * w + sx] + rng.gen_range(-50.0..50.0);
                        images.push(v.clamp(0.0, 255.0) as u8);
                    }
                }
            }
            labels.push(label as u32);
        }
        (images, labels)
    };
    let (train_images, train_labels) = make(spec.train, "synthetic/train");
    let (test_images, test_labels) = make(spec.test, "synthetic/test");
    let norm = channel_stats(&train_images, spec.shape);
    Ok(Splits {
        train: Dataset::new(
            "synthetic",
            train_images,
            train_labels,
            spec.shape,
            classes.clone(),
            norm.clone(),
        )?,
        test: Dataset::new(
            "synthetic",
            test_images,
            test_labels,
            spec.shape,
            classes,
            norm,
        )?,
    })
}
