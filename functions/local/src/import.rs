//! `datarequest import FILE`: subject data from an NDJSON file, all or nothing, with progress
//! on a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use datarequest::app::Operator;
use datarequest::app::ingest::ImportError;

/// Loads the file and prints the summary as JSON; a bad line is reported with its number and
/// loads nothing (exit code 1).
pub async fn run(file: &Path, operator: &Operator) -> anyhow::Result<ExitCode> {
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |done: u64, total: u64| {
        if terminal && total > 0 {
            eprint!("\rimporting {}: {:>3}%", file.display(), done * 100 / total);
            let _ = std::io::stderr().flush();
        }
    };
    let result = operator.import(file, &mut progress).await;
    if terminal {
        eprintln!();
    }
    match result {
        Ok(summary) => {
            println!("{}", serde_json::json!({"loaded": summary}));
            Ok(ExitCode::SUCCESS)
        }
        Err(ImportError::BadLine { line, reason }) => {
            eprintln!("datarequest: {}: line {line}: {reason}; nothing was loaded", file.display());
            Ok(ExitCode::FAILURE)
        }
        Err(ImportError::Unexpected(error)) => Err(error),
    }
}
