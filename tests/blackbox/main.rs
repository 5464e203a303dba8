//! Black-box tests: the real `datarequest` binary on a temp data dir and a free port.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod accounts;
mod audit;
#[cfg(feature = "emulator")]
mod aws;
mod bad_input;
mod cancel;
mod commands;
mod databases;
mod delivery;
mod erasure;
mod faults;
mod floods;
mod helpers;
mod html_report;
mod ingest;
mod ingest_kills;
mod lifecycle;
mod mysql;
mod nothing_held;
mod postgres;
mod signing;
mod subjects_model;
mod subjects_property;
mod tenancy;
