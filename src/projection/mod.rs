//! Read models built from the log. Each stores the offset it has applied per partition, so it
//! catches up incrementally and can be rebuilt from offset 0 with the same result.

pub mod slo;
pub mod turn_index;
