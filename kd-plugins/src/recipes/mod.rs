pub mod cifar100;
pub mod methods;
pub mod showcase;
pub mod tutorial;
