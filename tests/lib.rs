//! Test tooling shared by the black-box tests and the benchmarks. Setup failures panic: this
//! code only ever runs inside tests and benchmarks.
#![allow(clippy::expect_used, clippy::panic)]

pub mod events;
pub mod faults;
pub mod receiver;
pub mod runtime;
pub mod throttle;
