//! Transforms between the data set and the batch: they act on one image's
//! pixel bytes before normalisation, as torchvision's do before `ToTensor`.
//! Random ones draw from a generator seeded by (run seed, epoch, sample
//! index), so a result depends on neither the thread count nor where a run
//! was resumed.
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One image's pixel bytes, C x H x W.
pub struct Image<'a> {
    pub pixels: &'a mut [u8],
    pub shape: [usize; 3],
}

/// Changes one training image in place.
pub trait Transform: Send + Sync {
    fn apply(&self, image: &mut Image, rng: &mut ChaCha8Rng);
}

/// torchvision's `RandomCrop(size = the image's, padding)`: zero padding on
/// every side, then a crop at a top-left corner drawn uniformly.
pub struct RandomCrop {
    pub padding: usize,
}

impl RandomCrop {
    /// The crop whose top-left corner is (`top`, `left`) in the padded image.
    pub fn crop_at(&self, image: &mut Image, top: usize, left: usize) {
        let [c, h, w] = image.shape;
        let p = self.padding as isize;
        let src = image.pixels.to_vec();
        for ch in 0..c {
            let plane = &src[ch * h * w..(ch + 1) * h * w];
            let out = &mut image.pixels[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                let sy = y as isize + top as isize - p;
                let row = &mut out[y * w..(y + 1) * w];
                if !(0..h as isize).contains(&sy) {
                    row.fill(0);
                    continue;
                }
                let src_row = &plane[sy as usize * w..(sy as usize + 1) * w];
                for (x, v) in row.iter_mut().enumerate() {
                    let sx = x as isize + left as isize - p;
                    *v = if (0..w as isize).contains(&sx) {
                        src_row[sx as usize]
                    } else {
                        0
                    };
                }
            }
        }
    }
}

impl Transform for RandomCrop {
    fn apply(&self, image: &mut Image, rng: &mut ChaCha8Rng) {
        let top = rng.gen_range(0..=2 * self.padding);
        let left = rng.gen_range(0..=2 * self.padding);
        self.crop_at(image, top, left);
    }
}

/// torchvision's `RandomHorizontalFlip(p)`.
pub struct RandomHorizontalFlip {
    pub p: f64,
}

impl RandomHorizontalFlip {
    pub fn flip(image: &mut Image) {
        let w = image.shape[2];
        for row in image.pixels.chunks_exact_mut(w) {
            row.reverse();
        }
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, image: &mut Image, rng: &mut ChaCha8Rng) {
        if rng.gen::<f64>() < self.p {
            Self::flip(image);
        }
    }
}

/// The training-time augmentation of a run (`--augment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augment {
    /// The images as they are (the tutorial's).
    #[default]
    None,
    /// RandomCrop(padding 4) then RandomHorizontalFlip(0.5): the CIFAR recipes'.
    CropFlip,
}

impl Augment {
    pub const NAMES: &'static [&'static str] = &["none", "crop-flip"];

    pub fn transforms(self) -> Vec<Box<dyn Transform>> {
        match self {
            Augment::None => Vec::new(),
            Augment::CropFlip => vec![
                Box::new(RandomCrop { padding: 4 }),
                Box::new(RandomHorizontalFlip { p: 0.5 }),
            ],
        }
    }

    /// Whether the same sample looks different from epoch to epoch (then a
    /// teacher's outputs cannot be cached: it must see the student's view).
    pub fn is_random(self) -> bool {
        self != Augment::None
    }
}

impl std::str::FromStr for Augment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Augment::None),
            "crop-flip" => Ok(Augment::CropFlip),
            _ => Err(format!("`{s}`: use none or crop-flip")),
        }
    }
}

impl std::fmt::Display for Augment {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Augment::None => "none",
            Augment::CropFlip => "crop-flip",
        })
    }
}
