use anyhow::Result;

use crate::cli::EvalArgs;
use crate::config::DataArgs;

pub fn run(args: &EvalArgs) -> Result<()> {
    let device = crate::models::device(args.model_args.device)?;
    let path = crate::hub::resolve(&args.model.to_string_lossy())?;
    // Read the model first: a bad file is reported before any data is loaded.
    let file = kd_core::weights::read(&path)?;
    // The data set defaults to the one the model was trained on.
    let info = kd_core::weights::ModelInfo::from_metadata(&path, &file.metadata)?;
    let mut data_args = DataArgs {
        dataset: args.data.dataset.clone().or(info.dataset.clone()),
        ..args.data.clone()
    };
    // A folder of images is cut to the size the model was trained at.
    let folder = data_args
        .dataset
        .as_deref()
        .and_then(|d| kd_core::registry::dataset(d).ok())
        .is_some_and(|p| p.images.is_some());
    if folder && data_args.image_size.is_none() {
        data_args.image_size = info.config.as_ref().map(|c| c.input_shape[1]);
    }
    let mut data = crate::datasets::load(&data_args)?;
    let (model, info) = crate::models::load_model(
        &file,
        &args.model_args,
        Some(data.test.shape),
        Some(data.test.num_classes()),
        &device,
        "--arch",
    )?;
    if model.config.input_shape != data.test.shape {
        anyhow::bail!(
            "{} takes images of {:?} but `{}` has {:?}: evaluate on the data set it was trained for (--dataset NAME; for a generated one, --synthetic-shape {})",
            args.model.display(),
            model.config.input_shape,
            data.test.name,
            data.test.shape,
            model.config.input_shape.map(|d| d.to_string()).join(",")
        );
    }
    // Evaluate with the normalisation the model was trained with, unless
    // --mean/--std say otherwise.
    if let (Some(n), None) = (info.normalization, &args.data.mean) {
        data.test.normalization = n;
    }
    let e = kd_train::eval::evaluate(&model, &data.test, kd_train::eval::EVAL_BATCH, &device)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
        return Ok(());
    }
    println!(
        "Test accuracy: {:.2}% ({} images of {})",
        e.accuracy, e.samples, data.test.name
    );
    println!("\nPer class:");
    let width = e.classes.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
    for (c, a) in e.classes.iter().zip(&e.per_class) {
        let c = crate::report::printable(c);
        match a {
            Some(a) => println!("  {c:<width$}  {a:6.2}%"),
            None => println!("  {c:<width$}     n/a (no test image)"),
        }
    }
    println!("\nConfusion matrix (rows: true class, columns: predicted):");
    let labels: Vec<String> = e
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i} {}", crate::report::printable(c)))
        .collect();
    let width = labels.iter().map(|l| l.len()).max().unwrap_or(1);
    print!("  {:<width$}", "");
    for j in 0..e.classes.len() {
        print!(" {j:>5}");
    }
    println!();
    for (i, row) in e.confusion.iter().enumerate() {
        print!("  {:<width$}", labels[i]);
        for v in row {
            print!(" {v:>5}");
        }
        println!();
    }
    Ok(())
}
