//! The demo domain (customer support) and the `ballast demo` workload.

pub mod kb;
pub mod run;
pub mod tools;
pub mod workload;
