//! CIFAR-100, binary version: `train.bin` (50,000 records) and `test.bin`
//! (10,000), each record a coarse label byte, a fine label byte and 3072
//! pixel bytes (1024 red, 1024 green, 1024 blue).
use std::path::Path;

use crate::data::{read_file, Dataset, Normalization, Splits};
use kd_core::{Error, Result};

/// The 100 fine classes, in label order.
pub const FINE_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// The 20 superclasses, in label order.
pub const COARSE_CLASSES: [&str; 20] = [
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
];

const RECORD: usize = 2 + 3 * 32 * 32;

/// The mean and std the distillation field uses for CIFAR-100.
pub fn cifar100_normalization() -> Normalization {
    Normalization {
        mean: vec![0.5071, 0.4867, 0.4408],
        std: vec![0.2675, 0.2565, 0.2761],
    }
}

/// Which of a record's two labels a data set reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    Fine,
    Coarse,
}

impl Labels {
    fn classes(self) -> &'static [&'static str] {
        match self {
            Labels::Fine => &FINE_CLASSES,
            Labels::Coarse => &COARSE_CLASSES,
        }
    }
}

/// Loads `dir` (or `dir/cifar-100-binary`, as the archive unpacks) as the
/// data set `name`, with the `labels` asked for.
pub fn load_cifar100_dir(dir: &Path, name: &str, labels: Labels) -> Result<Splits> {
    let dir = if !dir.join("test.bin").exists() && dir.join("cifar-100-binary").is_dir() {
        dir.join("cifar-100-binary")
    } else {
        dir.to_path_buf()
    };
    let missing: Vec<&str> = ["train.bin", "test.bin"]
        .into_iter()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(Error::config(format!(
            "{} is not a CIFAR-100 (binary version) folder: missing {}. Expected train.bin and test.bin (the cifar-100-binary archive).",
            dir.display(),
            missing.join(", ")
        )));
    }
    let classes: Vec<String> = labels.classes().iter().map(|s| s.to_string()).collect();
    let split = |file: &str| -> Result<Dataset> {
        let (images, found) = read_records(&dir.join(file), labels)?;
        Dataset::new(
            name,
            images,
            found,
            [3, 32, 32],
            classes.clone(),
            cifar100_normalization(),
        )
    };
    Ok(Splits {
        train: split("train.bin")?,
        test: split("test.bin")?,
    })
}

fn read_records(path: &Path, which: Labels) -> Result<(Vec<u8>, Vec<u32>)> {
    let bytes = read_file(path)?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(Error::bad_file(
            path,
            format!(
                "{} bytes is not a whole number of CIFAR-100 records ({RECORD} bytes each: coarse label, fine label, 3072 pixels): the file is truncated or not CIFAR-100 binary; download it again",
                bytes.len()
            ),
        ));
    }
    let (mut images, mut labels) = (Vec::with_capacity(bytes.len()), Vec::new());
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        let (coarse, fine) = (rec[0] as usize, rec[1] as usize);
        if coarse >= COARSE_CLASSES.len() || fine >= FINE_CLASSES.len() {
            return Err(Error::bad_file(
                path,
                format!("record {i} has labels coarse {coarse}, fine {fine}, outside 0..19 and 0..99: not a CIFAR-100 file"),
            ));
        }
        labels.push(match which {
            Labels::Fine => fine,
            Labels::Coarse => coarse,
        } as u32);
        images.extend_from_slice(&rec[2..]);
    }
    Ok((images, labels))
}
