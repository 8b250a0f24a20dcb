pub mod clock;
pub mod control;
pub mod event;
pub mod exec;
pub mod ids;
pub mod log;
pub mod turn;
