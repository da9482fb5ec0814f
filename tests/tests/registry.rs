//! A crate outside kd-plugins that links it finds everything through the registries alone.
use kd_core::registry;
use kd_plugins as _;

#[test]
fn linking_kd_plugins_registers_all_methods_architectures_and_recipes() {
    let methods: Vec<_> = registry::methods().iter().map(|m| m.name).collect();
    assert_eq!(
        methods,
        ["at", "ce", "cosine", "dist", "dkd", "fitnets", "kd", "ls_kd", "pkt", "rkd", "sp"]
    );
    let archs: Vec<_> = registry::archs().iter().map(|a| a.name).collect();
    assert_eq!(archs, ["deep_nn", "light_nn"]);
    let recipe = registry::recipe("tutorial").unwrap();
    let runs: Vec<_> = (recipe.runs)().iter().map(|r| r.name).collect();
    assert_eq!(runs, ["teacher", "ce", "kd", "cosine", "fitnets"]);
    assert_eq!(
        registry::method("kd").unwrap().params[0].name,
        "temperature"
    );
    assert_eq!(registry::method("kd").unwrap().params[0].default, 2.0);
}
