//! The tutorial's architectures, distillation methods and recipe, each
//! registered with `inventory::submit!` next to its implementation.
//!
//! Nothing here is called by name from kd-core or kd-cli: a binary that says
//! `use kd_plugins as _;` links this crate, and the registries find the rest.
pub mod archs;
pub mod datasets;
pub mod methods;
pub mod recipes;
