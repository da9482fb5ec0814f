//! Link-time registries: plugin crates `inventory::submit!` these structs and
//! kd finds them by name. Iteration order is unspecified, so every listing
//! here is sorted.
use candle_nn::VarBuilder;

use crate::loss::{DistillLoss, MethodContext, Params};
use crate::network::{ArchConfig, Network};
use crate::{Error, Result};

/// One hyper-parameter a method takes.
#[derive(Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub default: f64,
    pub help: &'static str,
    /// Values <= 0 are rejected.
    pub positive: bool,
}

impl ParamSpec {
    /// A hyper-parameter that must be greater than 0.
    pub const fn positive(name: &'static str, default: f64, help: &'static str) -> Self {
        Self {
            name,
            default,
            help,
            positive: true,
        }
    }

    /// A hyper-parameter that may take any finite value.
    pub const fn any(name: &'static str, default: f64, help: &'static str) -> Self {
        Self {
            name,
            default,
            help,
            positive: false,
        }
    }
}

/// Makes a method's loss from its context.
pub type BuildLoss = fn(&MethodContext) -> Result<Box<dyn DistillLoss>>;

/// A method: a name, its hyper-parameters, the teacher taps it reads and how
/// to build its loss. Each fact is stated here once: a method needs a teacher
/// exactly when it has a loss, and its loss sees exactly the teacher taps
/// listed (see [`DistillLoss`]).
pub struct MethodPlugin {
    pub name: &'static str,
    pub summary: &'static str,
    pub params: &'static [ParamSpec],
    /// Teacher taps the loss reads besides the logits; also what a teacher cache holds.
    pub taps: &'static [&'static str],
    /// `None`: plain supervised training (cross-entropy, no teacher).
    pub build: Option<BuildLoss>,
    /// Reference fixtures (safetensors bytes, usually `include_bytes!`) that
    /// `kd verify` holds the loss to; see [`crate::verify`].
    pub fixtures: &'static [&'static [u8]],
}

impl MethodPlugin {
    /// Its hyper-parameters: `given` checked against the declared specs
    /// (unknown names and out-of-range values refused), defaults filled in.
    pub fn resolve_params(&self, given: &Params) -> Result<Params> {
        let (specs, method) = (self.params, self.name);
        let mut out: Params = specs
            .iter()
            .map(|p| (p.name.to_string(), p.default))
            .collect();
        for (name, value) in given {
            let Some(spec) = specs.iter().find(|p| p.name == name) else {
                let known: Vec<_> = specs.iter().map(|p| p.name).collect();
                return Err(Error::config(format!(
                    "method `{method}` has no hyper-parameter `{name}`; it takes: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if !value.is_finite() || (spec.positive && *value <= 0.0) {
                return Err(Error::config(format!(
                    "hyper-parameter `{name}` = {value} is out of range: it must be a finite number{} ({})",
                    if spec.positive { " greater than 0" } else { "" },
                    spec.help
                )));
            }
            out.insert(name.clone(), *value);
        }
        Ok(out)
    }

    /// Whether the method distils from a teacher (it has a loss).
    pub fn needs_teacher(&self) -> bool {
        self.build.is_some()
    }
}

/// Taps by name with the shape of one sample's tensor.
pub type TapShapes = Vec<(&'static str, Vec<usize>)>;

/// A network architecture; variable paths follow PyTorch's module paths.
pub struct ArchPlugin {
    pub name: &'static str,
    pub summary: &'static str,
    pub build: fn(&ArchConfig, VarBuilder) -> Result<Box<dyn Network>>,
    /// The taps its forward pass hands out besides the logits: name and shape of
    /// one sample's tensor for an input shape. `kd list` shows them, and a method
    /// that reads a tap an architecture lacks is refused before training.
    pub taps: fn(&ArchConfig) -> TapShapes,
}

impl ArchPlugin {
    /// Refuses `method` when it reads a tap this architecture does not provide.
    pub fn check_taps(&self, method: &MethodPlugin, config: &ArchConfig) -> Result<()> {
        let taps = (self.taps)(config);
        match method.taps.iter().find(|t| !taps.iter().any(|(n, _)| n == *t)) {
            None => Ok(()),
            Some(tap) => Err(Error::config(format!(
                "method `{}` reads the tap `{tap}`, which architecture `{}` does not provide (its taps: {})",
                method.name,
                self.name,
                if taps.is_empty() {
                    "none, only logits".to_string()
                } else {
                    taps.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                }
            ))),
        }
    }
}

/// One run of a recipe.
#[derive(Debug)]
pub struct RecipeRun {
    /// The phase name in reports (`teacher`, `ce`, `kd`, ...).
    pub name: &'static str,
    /// Trains the recipe's teacher architecture when true, else its student.
    pub trains_teacher: bool,
    pub method: &'static str,
    pub params: &'static [(&'static str, f64)],
    pub ce_weight: f64,
    pub distill_weight: f64,
    /// Train on the first N training images only (the teacher may see more,
    /// as a pretrained teacher has); `None`: all of them.
    pub train_subset: Option<usize>,
    /// Train for this many times the run's epochs (a student that sees fewer
    /// images takes more passes over them); 1 for most runs.
    pub epoch_scale: usize,
}

/// A teacher and a student a recipe can run (`kd reproduce --pair
/// TEACHER-STUDENT`), with what was published for them.
#[derive(Debug)]
pub struct RecipePair {
    pub teacher: &'static str,
    pub student: &'static str,
    /// This pair's hyper-parameters over the recipe's: (phase, name, value).
    pub params: &'static [(&'static str, &'static str, f64)],
    /// Published test accuracies (%) by phase, from the sources the recipe names.
    pub published: &'static [(&'static str, f64)],
    /// The learning rate of the student phases, where the sources give the
    /// student its own (`kd reproduce --student-lr` overrides it, `--lr` drops it).
    pub student_lr: Option<f64>,
}

impl RecipePair {
    /// A pair with nothing published and no hyper-parameters of its own.
    pub const fn new(teacher: &'static str, student: &'static str) -> Self {
        Self {
            teacher,
            student,
            params: &[],
            published: &[],
            student_lr: None,
        }
    }

    /// `TEACHER-STUDENT`, as `--pair` takes it.
    pub fn name(&self) -> String {
        format!("{}-{}", self.teacher, self.student)
    }
}

/// A named sequence of runs that `kd reproduce` executes.
pub struct RecipePlugin {
    pub name: &'static str,
    pub summary: &'static str,
    /// The teacher-student pairs it runs; the first unless `--pair` names another.
    pub pairs: &'static [RecipePair],
    /// The runs in order; a function, so that a recipe can follow the
    /// registry (one run per registered method, say).
    pub runs: fn() -> Vec<RecipeRun>,
    /// What `kd reproduce` runs without `--recipe` (one recipe says so).
    pub default: bool,
    /// The settings the recipe runs with unless flags or a config file say
    /// otherwise: TOML whose keys are `kd reproduce`'s long flags with
    /// underscores (`optimizer = "sgd"`, `epochs = 240`, `dataset = "cifar100"`).
    pub settings: &'static str,
}

impl RecipePlugin {
    /// The pair `name` names (`TEACHER-STUDENT`), or the first.
    pub fn pair(&self, name: Option<&str>) -> Result<&'static RecipePair> {
        let Some(name) = name else {
            return self.pairs.first().ok_or_else(|| {
                Error::config(format!(
                    "recipe `{}` has no teacher-student pair",
                    self.name
                ))
            });
        };
        let names: Vec<String> = self.pairs.iter().map(RecipePair::name).collect();
        match self.pairs.iter().find(|p| p.name() == name) {
            Some(p) => Ok(p),
            None => {
                let known: Vec<&str> = names.iter().map(String::as_str).collect();
                Err(unknown(
                    &format!("pair of recipe `{}`", self.name),
                    name,
                    &known,
                ))
            }
        }
    }
}

inventory::collect!(MethodPlugin);
inventory::collect!(ArchPlugin);
inventory::collect!(RecipePlugin);
inventory::collect!(DatasetPlugin);

/// Where a data set's files are on the Hugging Face Hub: two parquet files
/// of PNG-encoded images with integer labels. The binary that links kd-core
/// does the fetching (kd-cli through hf-hub).
#[derive(Debug, Clone, Copy)]
pub struct HubSource {
    /// OWNER/NAME of the data set repository.
    pub repo: &'static str,
    pub train: &'static str,
    pub test: &'static str,
    pub image_column: &'static str,
    pub label_column: &'static str,
}

/// Reads a data set's files in a folder.
pub type ReadDir = fn(&std::path::Path) -> Result<crate::data::Splits>;
/// A data set of image files of any size and kind (a folder of images).
#[derive(Clone, Copy)]
pub struct ImageFiles {
    /// Decodes the folder's images as the user's options say.
    pub read: fn(&std::path::Path, &crate::data::ImageOptions) -> Result<crate::data::Splits>,
    /// The files `read` reads: kd keeps the decoded splits in its cache
    /// under a hash of their names, sizes and contents.
    pub files: fn(&std::path::Path) -> Result<Vec<std::path::PathBuf>>,
}

/// Makes a data set in memory, at an image shape the user may choose.
pub type Generate = fn(Option<[usize; 3]>) -> Result<crate::data::Splits>;

/// A data set: what it holds and every way it can be had, tried in this
/// order: generated in memory; a folder the user names (`read_dir`); a
/// folder where a package installs it (`local`); the Hub (`hub`).
pub struct DatasetPlugin {
    pub name: &'static str,
    pub summary: &'static str,
    /// Channels, height, width of one image (a generated set may take
    /// another; zeros: known only once read, as a folder of images).
    pub shape: [usize; 3],
    pub classes: &'static [&'static str],
    /// Per-channel mean and std; `None`: the training split's own statistics.
    pub normalization: Option<fn() -> crate::data::Normalization>,
    /// Reads the data set's files in a folder.
    pub read_dir: Option<ReadDir>,
    /// Reads a folder of image files instead (`--image-size`,
    /// `--skip-bad-images`; decoded once into kd's cache).
    pub images: Option<ImageFiles>,
    /// Folders searched, in order, when the user names none.
    pub local: &'static [&'static str],
    pub hub: Option<HubSource>,
    /// Makes the data in memory, at an image shape the user may choose.
    pub generate: Option<Generate>,
    /// The data set used when none is named (one registration sets it).
    pub default: bool,
    /// The training transforms when `--augment` names none.
    pub augment: crate::data::transform::Augment,
    /// What `--dataset auto` falls back to when the default data set is neither
    /// on this machine nor downloadable: a set compiled into the binary (one
    /// registration sets it).
    pub offline_fallback: bool,
}

pub fn datasets() -> Vec<&'static DatasetPlugin> {
    let mut v: Vec<_> = inventory::iter::<DatasetPlugin>.into_iter().collect();
    v.sort_by_key(|d| d.name);
    v
}

pub fn dataset(name: &str) -> Result<&'static DatasetPlugin> {
    find("data set", name, datasets(), |x| x.name)
}

/// The data set marked as the default.
pub fn default_dataset() -> Result<&'static DatasetPlugin> {
    let all = datasets();
    let names: Vec<_> = all.iter().map(|d| d.name).collect();
    all.into_iter().find(|d| d.default).ok_or_else(|| {
        Error::config(format!(
            "no data set is marked as the default; name one ({})",
            names.join(", ")
        ))
    })
}

pub fn methods() -> Vec<&'static MethodPlugin> {
    let mut v: Vec<_> = inventory::iter::<MethodPlugin>.into_iter().collect();
    v.sort_by_key(|m| m.name);
    v
}

pub fn archs() -> Vec<&'static ArchPlugin> {
    let mut v: Vec<_> = inventory::iter::<ArchPlugin>.into_iter().collect();
    v.sort_by_key(|m| m.name);
    v
}

pub fn recipes() -> Vec<&'static RecipePlugin> {
    let mut v: Vec<_> = inventory::iter::<RecipePlugin>.into_iter().collect();
    v.sort_by_key(|m| m.name);
    v
}

pub fn method(name: &str) -> Result<&'static MethodPlugin> {
    find("method", name, methods(), |m| m.name)
}

/// The registration called `name` among `all`, or an error naming the nearest.
pub(crate) fn find<T>(
    kind: &str,
    name: &str,
    all: Vec<&'static T>,
    name_of: fn(&T) -> &'static str,
) -> Result<&'static T> {
    let names: Vec<_> = all.iter().map(|t| name_of(t)).collect();
    all.into_iter()
        .find(|t| name_of(t) == name)
        .ok_or_else(|| unknown(kind, name, &names))
}

/// Plain supervised training: the registered method without a loss. What a
/// run without `--method` uses, whatever that method is called.
pub fn supervised() -> Result<&'static MethodPlugin> {
    methods().into_iter().find(|m| m.build.is_none()).ok_or_else(|| {
        Error::config("no method for plain supervised training (one without a loss) is linked in; a binary must `use kd_plugins as _;`")
    })
}

/// The recipe marked as the default, for `kd reproduce` without `--recipe`.
pub fn default_recipe() -> Result<&'static RecipePlugin> {
    let all = recipes();
    let names: Vec<_> = all.iter().map(|r| r.name).collect();
    all.into_iter().find(|r| r.default).ok_or_else(|| {
        Error::config(format!(
            "no recipe is marked as the default; name one ({})",
            names.join(", ")
        ))
    })
}

pub fn arch(name: &str) -> Result<&'static ArchPlugin> {
    find("architecture", name, archs(), |x| x.name)
}

pub fn recipe(name: &str) -> Result<&'static RecipePlugin> {
    find("recipe", name, recipes(), |x| x.name)
}

/// "unknown method `kdd`; did you mean `kd`? Known: ce, cosine, ..."
pub fn unknown(kind: &str, name: &str, known: &[&str]) -> Error {
    let nearest = known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), *k))
        .min()
        .filter(|(d, k)| *d <= (k.len().max(name.len()) / 2).max(2));
    let hint = match nearest {
        Some((_, k)) => format!(" Did you mean `{k}`?"),
        None => String::new(),
    };
    let known = if known.is_empty() {
        "none are linked in (a binary must `use kd_plugins as _;`)".to_string()
    } else {
        known.join(", ")
    };
    Error::Unknown {
        kind: kind.to_string(),
        name: name.to_string(),
        message: format!("unknown {kind} `{name}`.{hint} Known: {known}."),
    }
}
