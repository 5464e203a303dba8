//! The doors into the use cases: each parses what arrives into domain types, calls the
//! [`crate::app`] and renders its answer. The HTTP router serves both worlds; the SQS consumers
//! and the Lambda adapter are the AWS doors; the local loops and the
//! local server's accept loop are local mode's.

pub mod http;
#[cfg(feature = "aws")]
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "local")]
pub mod server;
#[cfg(feature = "aws")]
pub mod sqs_build;
#[cfg(feature = "aws")]
pub mod sqs_ingest;
