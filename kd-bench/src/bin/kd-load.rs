//! Times kd's data loading and prints images per second: a folder of images
//! (PNG and JPEG of mixed sizes, written here) decoded the first time and
//! read back from kd's decoded copy after that, and a CIFAR-100-shaped
//! parquet file of PNGs (the Hub's layout) decoded, then read back the same
//! way. Decoding runs on every core (set RAYON_NUM_THREADS to change that).
//!
//! `cargo run --release -p kd-bench --bin kd-load -- [FOLDER_IMAGES] [PARQUET_ROWS]`
//! (defaults 20000 and 50000).
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use kd_train::data::{self, decoded, ImageOptions};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map_or(default, |a| a.parse().expect("a whole number"))
    };
    let (folder_images, parquet_rows) = (arg(1, 20_000), arg(2, 50_000));
    let dir = tempfile::tempdir().expect("a temporary folder");
    println!("threads {}", rayon::current_num_threads());
    folder(&dir.path().join("folder"), folder_images);
    parquet_file(&dir.path().join("cifar100.parquet"), parquet_rows);
}

fn rate(what: &str, images: usize, started: Instant) {
    let s = started.elapsed().as_secs_f64();
    println!(
        "{what:<40} {images:>6} images {s:>7.2} s {:>9.0} images/s",
        images as f64 / s
    );
}

/// Image `i`: a gradient whose size and kind vary with `i`.
fn image(i: usize) -> image::DynamicImage {
    let (w, h) = (40 + (i * 7 % 41) as u32, 40 + (i * 13 % 37) as u32);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 5 + i as u32) as u8, (y * 3) as u8, (i % 251) as u8])
    });
    image::DynamicImage::ImageRgb8(img)
}

fn folder(dir: &Path, n: usize) {
    (0..n).into_par_iter().for_each(|i| {
        let split = if i % 5 == 0 { "val" } else { "train" };
        let class = dir.join(split).join(format!("class{}", i / 5 % 10));
        std::fs::create_dir_all(&class).expect("writable temp folder");
        let ext = if i % 2 == 0 { "png" } else { "jpg" };
        image(i)
            .save(class.join(format!("{i:06}.{ext}")))
            .expect("an image writes");
    });
    let options = ImageOptions::default();
    let started = Instant::now();
    let splits = data::load_image_folder(dir, &options).expect("the folder reads");
    rate("folder: first decode", n, started);
    let files = data::image_folder_files(dir).expect("the folder lists");
    let key = decoded::key(dir, &files, &format!("{options:?}")).expect("the files hash");
    let copy = dir
        .with_extension("safetensors")
        .with_file_name(format!("{key}.safetensors"));
    decoded::write_splits(&copy, &splits).expect("the copy writes");
    let started = Instant::now();
    let files = data::image_folder_files(dir).expect("the folder lists");
    let again = decoded::key(dir, &files, &format!("{options:?}")).expect("the files hash");
    let back = decoded::read_splits(&copy).expect("the copy reads");
    rate("folder: kd's decoded copy (hash + read)", n, started);
    assert_eq!(
        (again, back.train.images.len()),
        (key, splits.train.images.len())
    );
}

fn parquet_file(path: &Path, rows: usize) {
    let pngs: Vec<Vec<u8>> = (0..rows).into_par_iter().map(png32).collect();
    write_parquet(path, &pngs);
    let started = Instant::now();
    let d = data::read_parquet_images(path, "img", "fine_label", [3, 32, 32], |_, _| {})
        .expect("the parquet file reads");
    rate("cifar100 parquet: first decode", rows, started);
    let copy = path.with_extension("safetensors");
    decoded::write(&copy, &d, &d, None).expect("the copy writes");
    let started = Instant::now();
    let (back, _, _) = decoded::read(&copy).expect("the copy reads");
    rate("cifar100 parquet: kd's decoded copy", rows, started);
    assert_eq!(back.images, d.images);
}

/// A 32x32 RGB PNG, as CIFAR-100's Hub files hold them.
fn png32(i: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 32, 32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let pixels: Vec<u8> = (0..32 * 32 * 3)
        .map(|p| ((p * 7 + i * 3) % 256) as u8)
        .collect();
    let mut w = enc.write_header().expect("a PNG header");
    w.write_image_data(&pixels).expect("PNG data");
    drop(w);
    out
}

/// The Hub's layout: `img` {bytes, path} and `fine_label`.
fn write_parquet(path: &Path, pngs: &[Vec<u8>]) {
    let schema = "message schema { optional group img { optional binary bytes; optional binary path (UTF8); } optional int64 fine_label; }";
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).expect("schema"));
    let props = Arc::new(WriterProperties::builder().build());
    let file = std::fs::File::create(path).expect("writable temp folder");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("a parquet writer");
    let mut rg = writer.next_row_group().expect("a row group");
    let n = pngs.len();
    let values: Vec<ByteArray> = pngs.iter().map(|b| ByteArray::from(b.clone())).collect();
    let mut col = rg.next_column().expect("img.bytes").expect("img.bytes");
    col.typed::<ByteArrayType>()
        .write_batch(&values, Some(&vec![2; n]), None)
        .expect("bytes write");
    col.close().expect("column closes");
    let mut col = rg.next_column().expect("img.path").expect("img.path");
    col.typed::<ByteArrayType>()
        .write_batch(&[], Some(&vec![1; n]), None)
        .expect("paths write");
    col.close().expect("column closes");
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 100).collect();
    let mut col = rg.next_column().expect("fine_label").expect("fine_label");
    col.typed::<Int64Type>()
        .write_batch(&labels, Some(&vec![1; n]), None)
        .expect("labels write");
    col.close().expect("column closes");
    rg.close().expect("row group closes");
    writer.close().expect("file closes");
}
