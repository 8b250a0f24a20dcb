pub mod clock;
pub mod event;
pub mod ids;
pub mod log;
