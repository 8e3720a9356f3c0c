//! One module per command.

pub mod bench;
mod bench_watch;
pub mod controller;
pub mod fleet_sim;
pub mod migrate;
pub mod serve;
