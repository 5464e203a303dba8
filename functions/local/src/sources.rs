//! `datarequest sources check`: connects to every source of the mapping, prepares every query
//! and prints each mistake, one a line, named by source, kind and section. The same check runs
//! before `serve` starts.

use std::process::ExitCode;

use datarequest::adapters::sources::{self, Sources, mapping};

/// Checks the mapping of `DATAREQUEST_SOURCES` (or `DATAREQUEST_SOURCES_TOML`); exits non-zero
/// on any mistake.
pub async fn check(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<ExitCode> {
    let Some((variable, text)) = sources::mapping_text(lookup)? else {
        anyhow::bail!("no sources: set DATAREQUEST_SOURCES to a mapping file");
    };
    let sources = match Sources::from_text(&text, lookup) {
        Ok(sources) => sources,
        Err(mistakes) => return Ok(report(&mistakes, variable)),
    };
    let mistakes = sources.check().await;
    if !mistakes.is_empty() {
        return Ok(report(&mistakes, variable));
    }
    for source in sources.sources() {
        let queries: usize = source.spec().kinds.iter().map(|k| k.all().count()).sum();
        println!("source \"{}\": connected, {queries} queries prepared", source.name());
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the mistakes and says how many; the exit code of a broken mapping.
pub fn report(mistakes: &[mapping::Mistake], variable: &str) -> ExitCode {
    for mistake in mistakes {
        println!("{mistake}");
    }
    let n = mistakes.len();
    eprintln!("datarequest: {n} mistake{} in the sources of {variable}", if n == 1 { "" } else { "s" });
    ExitCode::FAILURE
}
