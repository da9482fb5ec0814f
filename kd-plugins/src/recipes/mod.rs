pub mod tutorial;
