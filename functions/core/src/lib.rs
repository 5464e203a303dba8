//! Datarequest: GDPR data requests for an e-mail marketing platform, compatible with the
//! Copernica REST API "data request" calls.
//!
//! All behaviour lives here: the [`domain`] types parsed at the edge, the [`ports`] the use
//! cases need, the [`http`] router shared by the Lambda functions and the local command, the
//! [`worker`] that builds and delivers exports, and the [`adapters`] behind the ports.

#![recursion_limit = "256"]

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod export;
pub mod http;
pub mod ingest;
#[cfg(feature = "local")]
pub mod local;
pub mod mail;
pub mod metrics;
pub mod ports;
pub mod sources;
pub mod worker;

pub use app::App;
