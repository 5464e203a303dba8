//! `datarequest sources check`: reads the mapping, connects to every source, runs every query
//! once and prints each mistake, the file's and the databases', in one pass, one a line, named
//! by source, kind and section. The same check runs before `serve` starts.

use std::process::ExitCode;

use datarequest::adapters::sources::{self, Sources, mapping};

/// Checks the mapping of `DATAREQUEST_SOURCES` (or `DATAREQUEST_SOURCES_TOML`); exits non-zero
/// on any mistake.
pub async fn check(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<ExitCode> {
    let Some((variable, text)) = sources::mapping_text(lookup)? else {
        anyhow::bail!("no sources: set DATAREQUEST_SOURCES to a mapping file");
    };
    let sources = match Sources::check_text(&text, lookup).await {
        Ok(sources) => sources,
        Err(mistakes) => return Ok(report(&mistakes, variable)),
    };
    for source in sources.sources() {
        let queries: usize = source.spec().kinds.iter().map(|k| k.all().count()).sum();
        println!("source \"{}\": connected, {queries} queries prepared", source.name());
    }
    Ok(ExitCode::SUCCESS)
}

/// The check `serve` runs before it starts: the mistakes of the mapping, if one is set, printed
/// as by `sources check`; `None` when there is none to report.
///
/// # Errors
/// When both mapping variables are set or the file cannot be read.
pub async fn check_before_serving(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<ExitCode>> {
    let Some((variable, text)) = sources::mapping_text(lookup)? else { return Ok(None) };
    Ok(Sources::check_text(&text, lookup).await.err().map(|mistakes| report(&mistakes, variable)))
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
