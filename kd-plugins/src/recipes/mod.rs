pub mod methods;
pub mod tutorial;
