//! Datarequest: GDPR data requests for an e-mail marketing platform, compatible with the
//! Copernica REST API "data request" calls.
//!
//! All behaviour lives here: the [`domain`] types parsed at the edge, the use cases of [`app`]
//! and the [`ports`] they drive, the doors of [`inbound`] that call them (the HTTP router
//! shared by the Lambda functions and the local command, the queue consumers), the outbound
//! [`adapters`] behind the ports, and the one composition root, [`compose`].

#![recursion_limit = "256"]

pub mod adapters;
pub mod app;
pub mod compose;
pub mod config;
pub mod domain;
pub mod export;
pub mod inbound;
pub mod metrics;
pub mod ports;

pub use app::App;
