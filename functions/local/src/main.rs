//! The `datarequest` command: the whole service in one process on embedded storage, and the
//! operator's tools (accounts, imports).

mod demo;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use datarequest::import::{ImportError, import_file};
use datarequest::local::{self, Local};
use tracing_subscriber::EnvFilter;

/// GDPR data requests, Copernica compatible, on embedded storage.
#[derive(Parser)]
#[command(name = "datarequest", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run the builder in one process.
    Serve {
        /// Address to listen on.
        #[arg(long, env = local::LISTEN, default_value = local::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Folder of the database, exports and outbox.
        #[arg(long, env = local::DATA_DIR, default_value = local::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Seed a demo account and subjects when the data dir is empty, and print a token and
        /// commands to try.
        #[arg(long)]
        demo: bool,
    },
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Load subject data from an NDJSON file (one record a line).
    Import {
        /// The file.
        file: PathBuf,
        /// Folder of the database.
        #[arg(long, env = local::DATA_DIR, default_value = local::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints its id, access token and webhook secret as JSON.
    Create {
        /// Folder of the database.
        #[arg(long, env = local::DATA_DIR, default_value = local::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("datarequest: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { listen, data_dir, demo } => serve(listen, &data_dir, demo).await,
        Command::Account { command: AccountCommand::Create { data_dir } } => {
            let local = Local::open(&data_dir, &env_lookup, Some(format!("http://{}", local::DEFAULT_LISTEN)))?;
            let account = local.app.create_account().await?;
            let json = serde_json::json!({
                "account": account.account.get(),
                "token": account.token.expose(),
                "webhook_secret": account.webhook_secret.expose(),
            });
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file, data_dir } => import(&file, &data_dir).await,
    }
}

async fn import(file: &Path, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let local = Local::open(data_dir, &env_lookup, Some(format!("http://{}", local::DEFAULT_LISTEN)))?;
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |done: u64, total: u64| {
        if terminal && total > 0 {
            eprint!("\rimporting {}: {:>3}%", file.display(), done * 100 / total);
            let _ = std::io::stderr().flush();
        }
    };
    let result = import_file(&*local.app.subjects, file, &mut progress).await;
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

async fn serve(listen: SocketAddr, data_dir: &Path, demo: bool) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    let local = Local::open(data_dir, &env_lookup, Some(format!("http://{address}")))?;
    let workers = match datarequest::config::optional(&env_lookup, local::WORKERS) {
        None => 2,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .context("DATAREQUEST_WORKERS: must be a number from 1 to 64")?,
    };
    if demo {
        demo::seed_and_print(&local, data_dir).await?;
    }
    println!("Datarequest listening on http://{address}");
    let _ = std::io::stdout().flush();
    local.serve(listener, workers, shutdown()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
