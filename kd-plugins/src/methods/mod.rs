pub mod ce;
pub mod cosine;
pub mod fitnets;
pub mod kd;
