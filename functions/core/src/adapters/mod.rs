//! Adapters: the ports implemented in memory (fakes for tests), on embedded storage (local
//! mode) and, behind the `aws` feature, on AWS services.

#[cfg(feature = "aws")]
pub mod aws;
pub mod memory;
pub mod token_cache;
pub mod webhook;

#[cfg(feature = "local")]
pub mod folder;
#[cfg(feature = "local")]
pub mod outbox;
#[cfg(feature = "local")]
pub mod sqlite;
