//! `kd doctor`: what this build can do on this machine.
use anyhow::Result;

/// The compute capabilities Candle's kernels were built for, as the build saw them.
const COMPUTE_CAP: Option<&str> = option_env!("CUDA_COMPUTE_CAP");

pub fn run() -> Result<()> {
    println!("kd {}", kd_core::VERSION);
    let cuda = cfg!(feature = "cuda");
    match (cuda, COMPUTE_CAP) {
        (true, Some(cap)) => {
            println!("cuda feature:    yes (kernels for compute capability {cap})")
        }
        (true, None) => println!("cuda feature:    yes (kernels for the GPU found at build time)"),
        (false, _) => println!(
            "cuda feature:    no (build with `cargo build --release -p kd-cli --features cuda`)"
        ),
    }
    println!("devices:         {}", devices().join(", "));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rayon = std::env::var("RAYON_NUM_THREADS").ok();
    println!(
        "threads:         {threads} available{}",
        rayon
            .map(|n| format!(", RAYON_NUM_THREADS={n}"))
            .unwrap_or_default()
    );
    println!("cpu kernels:     {}", cpu_features());
    println!(
        "kd cache:        {} ($KD_CACHE)",
        kd_train::cache_dir().display()
    );
    let hf = std::env::var_os("HF_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cache/huggingface")))
        .unwrap_or_default();
    println!(
        "hub cache:       {} ($HF_HOME/hub)",
        hf.join("hub").display()
    );
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1");
    println!(
        "hub offline:     {}",
        if offline {
            "yes (HF_HUB_OFFLINE=1)"
        } else {
            "no"
        }
    );
    Ok(())
}

/// `cpu`, then every CUDA device that opens (or why none does).
fn devices() -> Vec<String> {
    let mut out = vec!["cpu".to_string()];
    if cfg!(feature = "cuda") {
        for i in 0..16 {
            match kd_core::device::DeviceSpec::Cuda(i).open() {
                Ok(_) => out.push(format!("cuda:{i}")),
                Err(e) if i == 0 => out.push(format!("no CUDA device ({e})")),
                Err(_) => break,
            }
        }
    }
    out
}

/// The instruction sets the matrix and convolution kernels pick at run time.
fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let has = |yes: bool, name: &'static str| yes.then_some(name);
        let found: Vec<&str> = [
            has(is_x86_feature_detected!("avx512f"), "AVX-512"),
            has(is_x86_feature_detected!("avx2"), "AVX2"),
            has(is_x86_feature_detected!("fma"), "FMA"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if found.is_empty() {
            "x86-64 without AVX2 (slow)".into()
        } else {
            format!("x86-64 with {}", found.join(", "))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}
