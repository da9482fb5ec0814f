use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use kd_core::candle::{Device, Tensor, D};
use kd_core::weights::{self, ModelInfo};
use kd_core::{Mode, Model};

use crate::cli::PredictArgs;
use crate::outputs::Files;

pub fn run(args: &PredictArgs) -> Result<()> {
    let is_tensor_file = args.input.len() == 1
        && args.input[0]
            .extension()
            .is_some_and(|e| e == "safetensors");
    if is_tensor_file && args.out.is_none() {
        bail!("--out FILE.safetensors is needed to write the logits of a tensor input");
    }
    if !is_tensor_file && (args.out.is_some() || args.taps) {
        bail!("--out and --taps work with one .safetensors tensor input; image inputs print their top classes instead. Drop --out/--taps, or pass the images as a tensor file");
    }
    let mut files = Files::new(args.overwrite);
    let model_spec = args.model.to_string_lossy();
    if !model_spec.starts_with("hf://") {
        files.input("--model", &args.model);
    }
    for input in &args.input {
        files.input("--input", input);
    }
    if let Some(out) = &args.out {
        files.output("--out", out);
    }
    files.check()?;
    let device = crate::models::device(args.model_args.device)?;
    let model_path = crate::hub::resolve(&model_spec)?;
    let file = kd_core::weights::read(&model_path)?;
    let (model, info) =
        crate::models::load_model(&file, &args.model_args, None, None, &device, "--arch")?;
    match &args.out {
        Some(out) if is_tensor_file => {
            predict_tensors(&model, &args.input[0], out, args.taps, &device)
        }
        _ => predict_images(&model, &info, &args.input, args.top as usize, &device),
    }
}

fn predict_tensors(
    model: &Model,
    input: &Path,
    out: &Path,
    taps: bool,
    device: &Device,
) -> Result<()> {
    let file = weights::read(input)?;
    let Some(images) = file.tensors.get("images") else {
        bail!("{} holds no tensor named `images` (it has: {}); write the batch as `images`, N x C x H x W float32, already normalised",
            input.display(), file.tensors.keys().cloned().collect::<Vec<_>>().join(", "));
    };
    if !images.dtype().is_float() {
        bail!("{}: `images` is {:?}, but kd takes float images already normalised (as the model was trained on). Convert them, e.g. (x / 255 - mean) / std in float32", input.display(), images.dtype());
    }
    let want = model.config.input_shape;
    if images.rank() != 4 || images.dims()[1..] != want {
        bail!(
            "{}: `images` has shape {:?}, but the model takes N x {} x {} x {}: resize the images or use a model for this input",
            input.display(),
            images.dims(),
            want[0],
            want[1],
            want[2]
        );
    }
    let images = images
        .to_dtype(kd_core::candle::DType::F32)?
        .to_device(device)?;
    let outputs = model.forward(&images, Mode::Eval)?;
    let mut tensors = vec![("logits".to_string(), outputs.logits)];
    if taps {
        tensors.extend(outputs.taps);
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    weights::save_values(out, &tensors, meta)?;
    println!(
        "wrote {} ({})",
        out.display(),
        tensors
            .iter()
            .map(|(n, t)| format!("{n} {:?}", t.dims()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn predict_images(
    model: &Model,
    info: &ModelInfo,
    inputs: &[std::path::PathBuf],
    top: usize,
    device: &Device,
) -> Result<()> {
    let [c, h, w] = model.config.input_shape;
    let norm = info.normalization.clone().context(
        "the model file records no normalisation (it was not written by kd): pass a tensor file of normalised `images` instead",
    )?;
    if norm.mean.len() != c || norm.std.len() != c {
        bail!(
            "the model file's normalisation has {} means and {} standard deviations, but the model takes {c} channels: the file's kd.normalization metadata is damaged; pass a tensor file of normalised `images` instead",
            norm.mean.len(),
            norm.std.len()
        );
    }
    let classes = info.classes.clone().unwrap_or_else(|| {
        (0..model.config.num_classes)
            .map(|i| i.to_string())
            .collect()
    });
    for path in inputs {
        let pixels = read_png(path, c, h, w)?;
        let plane = h * w;
        let data: Vec<f32> = pixels
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let (m, s) = norm.channel(i / plane);
                (b as f32 / 255.0 - m) / s
            })
            .collect();
        let x = Tensor::from_vec(data, (1, c, h, w), device)?;
        let logits = model.forward(&x, Mode::Eval)?.logits;
        let probs = kd_core::candle_nn::ops::softmax(&logits, D::Minus1)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        let mut ranked: Vec<(usize, f32)> = probs.into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!("{}:", path.display());
        for (k, p) in ranked.into_iter().take(top) {
            println!(
                "  {:>6.2}%  {}",
                p * 100.0,
                crate::report::printable(classes.get(k).map(String::as_str).unwrap_or("?"))
            );
        }
    }
    Ok(())
}

/// Decodes a PNG into C x H x W bytes: grey and colour converted to the
/// model's channels, resized to its input by nearest neighbour.
fn read_png(path: &Path, c: usize, h: usize, w: usize) -> Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{} is not a PNG image", path.display()))?;
    let (iw, ih) = (reader.info().width, reader.info().height);
    let size = reader.output_buffer_size();
    // Images are shrunk to the model's input: a decoded picture over 1 GB is
    // a damaged or hostile file, not a photograph.
    if size > 1 << 30 {
        bail!(
            "{} is a {iw}x{ih} image: decoding it would take {}; kd reads images up to 1 GB decoded. Resize it first",
            path.display(),
            kd_core::limits::human(size as u128)
        );
    }
    kd_core::limits::check_fits(
        format_args!("decoding {}", path.display()),
        Some(size as u128),
    )?;
    let mut buf = vec![0; size];
    let frame = reader
        .next_frame(&mut buf)
        .with_context(|| format!("{} is a damaged PNG image", path.display()))?;
    let (sw, sh) = (frame.width as usize, frame.height as usize);
    let src_c = frame.color_type.samples();
    let mut out = vec![0u8; c * h * w];
    for y in 0..h {
        for x in 0..w {
            let (sy, sx) = (y * sh / h, x * sw / w);
            let px = &buf[(sy * sw + sx) * src_c..(sy * sw + sx) * src_c + src_c];
            let grey = |p: &[u8]| {
                if p.len() >= 3 {
                    ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000) as u8
                } else {
                    p[0]
                }
            };
            for ch in 0..c {
                out[(ch * h + y) * w + x] = match (c, src_c) {
                    (1, _) => grey(px),
                    (_, 1 | 2) => px[0],
                    _ => px[ch.min(2)],
                };
            }
        }
    }
    Ok(out)
}
