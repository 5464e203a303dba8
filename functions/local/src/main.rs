//! The `datarequest` command: the whole service in one process on embedded storage, and the
//! operator's tools (accounts, signing keys, imports, erasures, ingest keys).

mod account;
mod aws;
mod cli;
mod demo;
mod erase;
mod import;
mod ingest_key;
mod openapi;
mod serve;
mod signing_key;
mod sources;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    cli::Cli::parse().run().await.unwrap_or_else(|error| {
        eprintln!("datarequest: {error:#}");
        ExitCode::FAILURE
    })
}
