//! `hf://OWNER/REPO[@REVISION]/PATH` references to files on the Hugging Face Hub.
//!
//! Downloads go through `hf-hub` into its standard cache (`HF_HUB_CACHE`, else
//! `$HF_HOME/hub`), honouring `HF_ENDPOINT` and `HF_TOKEN`. hf-hub does not read
//! `HF_HUB_OFFLINE`, so kd does: with it (or `--offline`) only the cache is used.
use std::path::PathBuf;

use anyhow::{bail, Result};

/// A parsed `hf://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFile {
    pub owner: String,
    pub name: String,
    pub revision: Option<String>,
    pub path: String,
}

impl HubFile {
    pub fn parse(spec: &str) -> Result<Option<Self>> {
        let Some(rest) = spec.strip_prefix("hf://") else {
            return Ok(None);
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(owner), Some(repo), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("`{spec}` is not a Hub reference: write hf://OWNER/REPO[@REVISION]/PATH.safetensors");
        };
        let (name, revision) = match repo.split_once('@') {
            Some((n, r)) => (n, Some(r.to_string())),
            None => (repo, None),
        };
        if owner.is_empty() || name.is_empty() || path.is_empty() {
            bail!("`{spec}` is not a Hub reference: write hf://OWNER/REPO[@REVISION]/PATH.safetensors");
        }
        if [owner, name]
            .iter()
            .any(|s| unsafe_segment(s) || s.contains(':'))
            || path.starts_with('/')
            || path.split('/').any(unsafe_segment)
        {
            bail!("`{spec}`: a Hub reference may not contain empty, `.` or `..` path segments or an absolute path (they would lead outside the Hub cache); write hf://OWNER/REPO[@REVISION]/PATH");
        }
        if let Some(r) = &revision {
            parse_revision(r).map_err(|e| anyhow::anyhow!("`{spec}`: {e}"))?;
        }
        Ok(Some(Self {
            owner: owner.into(),
            name: name.into(),
            revision,
            path: path.into(),
        }))
    }
}

/// Whether a piece of a Hub reference could lead outside the Hub cache once
/// it becomes a path there (`..`, `.`, nothing, a Windows separator).
fn unsafe_segment(s: &str) -> bool {
    s.is_empty() || s == "." || s == ".." || s.contains('\\')
}

/// `--hub-repo`: OWNER/NAME, neither part able to lead outside the Hub cache.
pub fn parse_repo(s: &str) -> Result<String, String> {
    match s.split_once('/') {
        Some((o, n))
            if ![o, n]
                .iter()
                .any(|p| unsafe_segment(p) || p.contains([':', '/'])) =>
        {
            Ok(s.to_string())
        }
        _ => Err(format!(
            "`{s}` is not OWNER/NAME (empty, `.` and `..` parts would lead outside the Hub cache)"
        )),
    }
}

/// `--revision` and the part after `@`: a branch, tag or commit with no
/// empty, `.` or `..` segment.
pub fn parse_revision(s: &str) -> Result<String, String> {
    match s.split('/').any(unsafe_segment) {
        true => Err(format!("the revision `{s}` is empty or has `.`/`..` segments (they would lead outside the Hub cache); write a branch, tag or commit, or leave it out for main")),
        false => Ok(s.to_string()),
    }
}

pub fn offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE").as_deref(),
        Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes")
    )
}

/// A local path for `spec`: the path itself, or the cached download of an `hf://` file.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let Some(file) = HubFile::parse(spec)? else {
        return Ok(PathBuf::from(spec));
    };
    download(Kind::Model, &file)
}

/// Which kind of Hub repository a file lives in.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Model,
    Dataset,
}

/// Downloads `file` into the Hub cache (or finds it there) and returns its path.
pub fn download(kind: Kind, file: &HubFile) -> Result<PathBuf> {
    let inner =
        hf_hub::HFClient::new().map_err(|e| anyhow::anyhow!("cannot start the Hub client: {e}"))?;
    let cache = inner.cache_dir().to_path_buf();
    let client = hf_hub::HFClientSync::from_inner(inner)
        .map_err(|e| anyhow::anyhow!("cannot start the Hub client: {e}"))?;
    let offline = offline();
    let bar = DownloadBar::new(&file.path);
    let request = |filename: String, revision: Option<String>| match kind {
        Kind::Model => client
            .model(file.owner.clone(), file.name.clone())
            .download_file()
            .filename(filename)
            .maybe_revision(revision)
            .local_files_only(offline)
            .progress(bar.clone())
            .send(),
        Kind::Dataset => client
            .dataset(file.owner.clone(), file.name.clone())
            .download_file()
            .filename(filename)
            .maybe_revision(revision)
            .local_files_only(offline)
            .progress(bar.clone())
            .send(),
    };
    if !offline {
        tracing::info!(
            "fetching {} from {}/{} (Hub cache: {})",
            file.path,
            file.owner,
            file.name,
            cache.display()
        );
    }
    let result = request(file.path.clone(), file.revision.clone());
    bar.0.finish_and_clear();
    if let Ok(path) = &result {
        inside_cache(path, &cache)?;
    }
    result.map_err(|e| {
        let at = file.revision.as_deref().map(|r| format!(" at revision {r}")).unwrap_or_default();
        if offline {
            anyhow::anyhow!(
                "{} is not in the Hub cache ({}) for {}/{}{at}, and offline mode (HF_HUB_OFFLINE=1 or --offline) forbids downloading it. Run once with network access, or use a local file instead.",
                file.path, cache.display(), file.owner, file.name
            )
        } else {
            anyhow::anyhow!(
                "cannot download {} from {}/{}{at}: {e}. Check the name and your network (HF_ENDPOINT, HF_TOKEN for private repositories), or use local files instead (a path, or --data-dir for data sets), or the cache with --offline.",
                file.path, file.owner, file.name
            )
        }
    })
}

/// Refuses a file the Hub cache gives that lies outside it (a ref file
/// whose content is a path such as `../../..`: a damaged or hostile cache).
fn inside_cache(path: &std::path::Path, cache: &std::path::Path) -> Result<()> {
    let (Ok(real), Ok(root)) = (path.canonicalize(), cache.canonicalize()) else {
        return Ok(());
    };
    if !real.starts_with(&root) {
        bail!(
            "the Hub cache ({}) names {} for this file, which lies outside it: the cache is damaged. Delete the repository's folder in the cache and download it again",
            cache.display(),
            real.display()
        );
    }
    Ok(())
}

/// Bytes, rate and ETA of a download, drawn by indicatif (hidden when stderr
/// is not a terminal).
#[derive(Clone)]
struct DownloadBar(indicatif::ProgressBar);

impl DownloadBar {
    fn new(name: &str) -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}",
            )
            .expect("valid template"),
        );
        bar.set_message(format!("downloading {name}"));
        Self(bar)
    }
}

impl hf_hub::progress::ProgressHandler for DownloadBar {
    fn on_progress(&self, event: &hf_hub::progress::ProgressEvent) {
        use hf_hub::progress::{DownloadEvent, ProgressEvent};
        let ProgressEvent::Download(event) = event else {
            return;
        };
        match event {
            DownloadEvent::Start { total_bytes, .. } => self.0.set_length(*total_bytes),
            DownloadEvent::AggregateProgress {
                bytes_completed,
                total_bytes,
                ..
            } => {
                self.0.set_length(*total_bytes);
                self.0.set_position(*bytes_completed);
            }
            DownloadEvent::Progress { files } => {
                let (done, total) = files.iter().fold((0, 0), |(d, t), f| {
                    (d + f.bytes_completed, t + f.total_bytes)
                });
                self.0.set_length(total);
                self.0.set_position(done);
            }
            DownloadEvent::Complete => self.0.finish_and_clear(),
        }
    }
}
