//! Outbound adapters: the ports implemented in memory (fakes for tests), on embedded storage
//! (local mode), on the platform's own databases ([`sources`]) and, behind the `aws` feature,
//! on AWS services. Nothing here imports a use case or a door.

#[cfg(feature = "aws")]
pub mod aws;
pub mod memory;
pub mod sources;
pub mod token_cache;
pub mod webhook;

#[cfg(feature = "local")]
pub mod folder;
#[cfg(feature = "local")]
pub mod key_file;
#[cfg(feature = "local")]
pub mod outbox;
#[cfg(feature = "local")]
pub mod sqlite;
