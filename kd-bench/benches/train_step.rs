//! Train steps, teacher forward, each method's loss, each conv layer of the
//! tutorial's networks and batch assembly, at the tutorial's batch of 128
//! CIFAR-10-shaped images. `cargo bench -p kd-bench`.
use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion};
use kd_bench::*;
use kd_core::candle::{DType, Device, Module, Var};
use kd_core::candle_nn::{VarBuilder, VarMap};
use kd_core::loss::{MethodContext, Params, Step};
use kd_core::{registry, Teacher};

fn steps(c: &mut Criterion) {
    kd_core::malloc::keep_freed_memory();
    let data = cifar_shaped_data();
    let b = batch(&data);
    let mut g = c.benchmark_group("step");
    g.sample_size(10);
    for arch in ["deep_nn", "light_nn"] {
        let m = model(arch);
        let mut opt = adam(&m);
        g.bench_function(format!("{arch} train step"), |bench| {
            bench.iter(|| train_step(&m, &mut opt, &b))
        });
    }
    let teacher = model("deep_nn");
    g.bench_function("deep_nn forward (eval)", |bench| {
        bench.iter(|| eval_forward(&teacher, &b.images))
    });
    g.bench_function("batch assembly", |bench| bench.iter(|| batch(&data)));
    g.finish();
}

fn losses(c: &mut Criterion) {
    kd_core::malloc::keep_freed_memory();
    let data = cifar_shaped_data();
    let b = batch(&data);
    let (student, teacher) = (model("light_nn"), model("deep_nn"));
    let t_out = teacher.outputs(&b).unwrap();
    let s_out = student.forward(&b.images, kd_core::Mode::Eval).unwrap();
    let mut g = c.benchmark_group("loss forward+backward");
    g.sample_size(20);
    for plugin in registry::methods()
        .into_iter()
        .filter(|m| m.needs_teacher())
    {
        let name = plugin.name;
        let params: Params = plugin.resolve_params(&Params::new()).unwrap();
        let adapters = VarMap::new();
        let ctx = MethodContext {
            params: &params,
            vb: VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu),
            student: &s_out,
            teacher: &t_out,
        };
        let loss = plugin.build.unwrap()(&ctx).unwrap();
        // The student's outputs as leaves, so backward stops at them.
        let leaf = |t: &kd_core::candle::Tensor| Var::from_tensor(t).unwrap().as_tensor().clone();
        let s = kd_core::Outputs {
            logits: leaf(&s_out.logits),
            taps: s_out
                .taps
                .iter()
                .map(|(k, v)| (k.clone(), leaf(v)))
                .collect::<BTreeMap<_, _>>(),
        };
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let step = Step::new(&s, &t_out, &b.labels);
                loss.loss(&step).unwrap().backward().unwrap()
            })
        });
    }
    g.finish();
}

/// Each conv layer shape with its ReLU, forward and forward+backward (the
/// input gradient only where the network needs one).
fn convs(c: &mut Criterion) {
    kd_core::malloc::keep_freed_memory();
    let mut g = c.benchmark_group("conv");
    g.sample_size(10);
    for conv in TUTORIAL_CONVS {
        let (layer, x) = (conv.layer(), conv.input());
        g.bench_function(format!("{} forward", conv.key()), |bench| {
            bench.iter(|| layer.forward(&x).unwrap())
        });
        g.bench_function(format!("{} forward+backward", conv.key()), |bench| {
            bench.iter(|| {
                layer
                    .forward(&x)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, steps, losses, convs);
criterion_main!(benches);
