//! `datarequest openapi`: the OpenAPI 3.1 document of the API, for clients and docs.

use std::process::ExitCode;

/// Prints the document, pretty.
pub fn print() -> anyhow::Result<ExitCode> {
    println!("{:#}", datarequest::inbound::http::openapi::document());
    Ok(ExitCode::SUCCESS)
}
