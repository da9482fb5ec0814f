//! kd-train: what runs a distillation, as a library: the data formats and
//! kd's decoded copies ([`data`]), the trainer with its public step
//! ([`train`]), checkpoints and exact resume ([`checkpoint`]), the
//! teacher-output cache ([`cache`]) and evaluation ([`eval`]). kd-core holds
//! the vocabulary these are written in; the `kd` binary, the benches and the
//! tests drive these calls.
pub mod cache;
pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod train;

/// kd's cache folder (decoded data sets, teacher outputs): `$KD_CACHE` (an
/// empty value counts as unset), else the platform cache folder + `kd`.
pub fn cache_dir() -> std::path::PathBuf {
    std::env::var_os("KD_CACHE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("kd")))
        .unwrap_or_else(|| std::path::PathBuf::from(".kd-cache"))
}
