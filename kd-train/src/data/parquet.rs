//! Hugging Face Hub data sets: parquet files whose image column is a struct
//! with the PNG file's `bytes`, and an integer label column.
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use rayon::prelude::*;

use kd_core::{Error, Result};

/// Decoded images (N x C x H x W bytes) and labels of one parquet file.
pub struct Decoded {
    pub images: Vec<u8>,
    pub labels: Vec<u32>,
}

/// Reads `path`, decoding the PNG in column `image_column` of every row (on
/// every core) and checking that it is `shape` (C, H, W). A bad row is
/// named by index; `on_row` hears of the rows decoded so far.
pub fn read_parquet_images(
    path: &Path,
    image_column: &str,
    label_column: &str,
    shape: [usize; 3],
    mut on_row: impl FnMut(usize, usize),
) -> Result<Decoded> {
    let bad = |m: String| Error::bad_file(path, m);
    kd_core::weights::regular_file(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| {
        bad(format!(
            "not a readable parquet file ({e}); download it again"
        ))
    })?;
    let rows = reader.metadata().file_metadata().num_rows().max(0) as usize;
    let (mut pngs, mut labels) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for (i, row) in reader.into_iter().enumerate() {
        let row = row.map_err(|e| bad(format!("row {i} cannot be read ({e})")))?;
        let (mut png_bytes, mut label) = (None, None);
        for (name, field) in row.get_column_iter() {
            if name == image_column {
                png_bytes = match field {
                    Field::Group(g) => g
                        .get_column_iter()
                        .find(|(n, _)| n.as_str() == "bytes")
                        .and_then(|(_, f)| match f {
                            Field::Bytes(b) => Some(b.data().to_vec()),
                            _ => None,
                        }),
                    Field::Bytes(b) => Some(b.data().to_vec()),
                    _ => None,
                };
            } else if name == label_column {
                label = match field {
                    Field::Long(v) => Some(*v),
                    Field::Int(v) => Some(*v as i64),
                    Field::Short(v) => Some(*v as i64),
                    Field::Byte(v) => Some(*v as i64),
                    _ => None,
                };
            }
        }
        let png_bytes = png_bytes.ok_or_else(|| {
            bad(format!("row {i} has no image bytes in column `{image_column}` (a struct with `bytes`, as the Hub stores images)"))
        })?;
        let label = label.ok_or_else(|| {
            bad(format!(
                "row {i} has no integer label in column `{label_column}`"
            ))
        })?;
        if label < 0 {
            return Err(bad(format!("row {i} has label {label}")));
        }
        pngs.push(png_bytes);
        labels.push(label as u32);
    }
    if labels.is_empty() {
        return Err(bad("holds no rows".into()));
    }
    let per_image: usize = shape.iter().product();
    let mut images = vec![0u8; pngs.len() * per_image];
    // Chunks of rows, each decoded in parallel, so progress can be shown.
    let chunk = 4096;
    for (c, (out, pngs)) in images
        .chunks_mut(chunk * per_image)
        .zip(pngs.chunks(chunk))
        .enumerate()
    {
        out.par_chunks_mut(per_image)
            .zip(pngs)
            .enumerate()
            .try_for_each(|(j, (out, png))| {
                decode_png(png, shape, out).map_err(|m| bad(format!("row {}: {m}", c * chunk + j)))
            })?;
        on_row((c * chunk + pngs.len()).min(labels.len()), labels.len());
    }
    Ok(Decoded { images, labels })
}

/// Writes the planes (C x H x W) of a PNG of exactly `shape` into `out`.
fn decode_png(
    bytes: &[u8],
    [c, h, w]: [usize; 3],
    out: &mut [u8],
) -> std::result::Result<(), String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("the image is not a valid PNG ({e})"))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("the PNG is damaged ({e})"))?;
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    let samples = frame.color_type.samples();
    // Grey images may carry alpha; colour images may too. Use the colour channels only.
    let channels = if samples >= 3 { 3 } else { 1 };
    if (fw, fh) != (w, h) || channels != c {
        return Err(format!(
            "the image is {fw}x{fh} with {channels} channel(s), expected {w}x{h} with {c}"
        ));
    }
    for (ch, plane) in out.chunks_exact_mut(h * w).enumerate() {
        for (p, v) in plane.iter_mut().enumerate() {
            *v = buf[p * samples + ch];
        }
    }
    Ok(())
}
