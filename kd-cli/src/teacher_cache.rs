//! `--teacher-cache`: where a frozen teacher's outputs are kept between epochs
//! (and between runs), and what the run log says about it.
use anyhow::Result;
use kd_core::candle::Device;
use kd_core::{Model, Teacher};
use kd_train::cache::{cache_key, CachedTeacher, Placement};
use kd_train::data::Splits;
use serde::{Deserialize, Serialize};

/// Where the teacher's outputs are kept: `--teacher-cache`, and the
/// `teacher_cache` key of a settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Reuse a file on disk if there is one, else memory up to 512 MB and disk above.
    #[default]
    Auto,
    /// Run the teacher every batch.
    Off,
    /// Compute the outputs once and keep them in memory.
    Memory,
    /// Keep them memory-mapped in kd's cache folder ($KD_CACHE), for later runs too.
    Disk,
}

/// The cache mode a run uses: `mode`, unless a random transform shows the
/// student a new view of each image every epoch, which the teacher must see too.
pub fn mode_for(mode: CacheMode, augment: kd_train::data::transform::Augment) -> CacheMode {
    if augment.is_random() && mode != CacheMode::Off {
        tracing::info!("teacher cache off: with --augment {augment} the teacher runs on each batch, to see the student's view of it");
        return CacheMode::Off;
    }
    mode
}

/// `auto` keeps outputs up to this size in memory, larger ones on disk.
const AUTO_MEMORY_LIMIT: usize = 512 << 20;

/// The teacher's outputs over the training set for `epochs` epochs of
/// distillation: `off` none; `memory` computed now and kept in memory;
/// `disk` kept in a memory-mapped file under kd's cache folder, reused by
/// any later run with the same teacher, data and taps; `auto` reuses such a
/// file when there is one, else picks memory or disk by size.
pub fn build(
    mode: CacheMode,
    teacher: &Model,
    teacher_sha256: &str,
    taps: &[&str],
    data: &Splits,
    device: &Device,
    epochs: usize,
) -> Result<Option<CachedTeacher>> {
    // A newly computed cache: logged as such and returned.
    let fresh = |cache: Result<CachedTeacher>| -> Result<Option<CachedTeacher>> {
        let cache = cache?;
        report(&cache, data.train.len(), epochs, false);
        Ok(Some(cache))
    };
    let stop = Some(&crate::STOP);
    let memory = || {
        Ok(CachedTeacher::build(
            teacher,
            &data.train,
            taps,
            device,
            stop,
        )?)
    };
    match mode {
        CacheMode::Off => return Ok(None),
        // Nothing on disk is read or written: no key to compute.
        CacheMode::Memory => return fresh(memory()),
        CacheMode::Auto | CacheMode::Disk => {}
    }
    let key = cache_key(teacher_sha256, &data.train, taps)?;
    let path = kd_train::cache_dir()
        .join("teacher-outputs")
        .join(format!("{}.safetensors", &key[..32]));
    if let Some(dir) = path.parent() {
        kd_core::weights::remove_orphans(dir);
    }
    if path.exists() {
        match CachedTeacher::open(&path, &key, data.train.len(), taps, device) {
            Ok(cache) => {
                report(&cache, data.train.len(), epochs, true);
                return Ok(Some(cache));
            }
            Err(e) => {
                // Not reusable (damaged, or from an older kd): replaced below,
                // or removed when the outputs are kept in memory this time.
                tracing::warn!("teacher cache not reused ({e:#}); computing it again");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if mode == CacheMode::Auto
        && CachedTeacher::estimate_bytes(teacher, &data.train, taps, device)? <= AUTO_MEMORY_LIMIT
    {
        return fresh(memory());
    }
    let built = std::fs::create_dir_all(path.parent().unwrap_or(&path))
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            Ok(CachedTeacher::build_on_disk(
                teacher,
                &data.train,
                taps,
                device,
                stop,
                &path,
                &key,
            )?)
        });
    match built {
        Ok(cache) => fresh(Ok(cache)),
        Err(e) if e.downcast_ref::<kd_core::Error>().is_some_and(|e| matches!(e, kd_core::Error::Interrupted(_))) => Err(e),
        Err(e) if mode == CacheMode::Auto => {
            tracing::warn!("teacher cache kept in memory instead of on disk: {e:#}");
            fresh(memory())
        }
        Err(e) => Err(e.context(format!(
            "cannot write the teacher cache {}: set KD_CACHE to a writable folder, or use --teacher-cache memory",
            path.display()
        ))),
    }
}

/// What serves the teacher's outputs: the cache when there is one, else the
/// teacher itself.
pub fn serving<'a>(
    cache: Option<&'a CachedTeacher>,
    teacher: Option<&'a Model>,
) -> Option<&'a dyn Teacher> {
    match (cache, teacher) {
        (Some(c), _) => Some(c),
        (None, Some(t)) => Some(t),
        (None, None) => None,
    }
}

/// One log line: where the outputs are, what they cost and what they save.
fn report(cache: &CachedTeacher, images: usize, epochs: usize, reused: bool) {
    let place = match &cache.placement {
        Placement::Memory => "in memory".to_string(),
        Placement::Disk(p) => format!("memory-mapped from {}", p.display()),
    };
    // Building took about one epoch of teacher forward passes; each epoch
    // served from the cache skips one.
    let saved = cache.build_seconds * epochs.saturating_sub(usize::from(!reused)) as f64;
    let how = if reused {
        format!(
            "reused from an earlier run (computing them took {:.1} s)",
            cache.build_seconds
        )
    } else {
        format!("computed once in {:.1} s", cache.build_seconds)
    };
    tracing::info!(
        "teacher cache: {images} training images' outputs ({} MB, {place}) {how}; {epochs} epoch(s) skip the teacher's forward pass, saving about {saved:.1} s",
        cache.bytes() >> 20,
    );
}
