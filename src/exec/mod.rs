//! The execution plane acts and never decides: retrieval, planning, tools, response synthesis.

pub mod catalog;
