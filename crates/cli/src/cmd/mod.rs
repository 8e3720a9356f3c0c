//! One module per command.

pub mod backup;
pub mod controller;
pub mod dashboard;
pub mod demo;
pub mod faults;
pub mod fleet_sim;
pub mod kwok;
pub mod migrate;
pub mod plan;
pub mod resync;
pub mod rollout;
pub mod rotate_keys;
pub mod serve;
pub mod status;
