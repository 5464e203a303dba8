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
    /// Where the data lives: the local data dir, or (for `account` and `import`) the AWS tables
    /// and bucket named by the DATAREQUEST_* variables, as `template.yaml` sets them.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Local)]
    backend: Backend,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    Local,
    Aws,
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
    /// Print the OpenAPI 3.1 document of the API.
    Openapi,
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
    if cli.backend == Backend::Aws {
        return aws::run(cli.command).await;
    }
    match cli.command {
        Command::Serve { listen, data_dir, demo } => serve(listen, &data_dir, demo).await,
        Command::Account { command: AccountCommand::Create { data_dir } } => {
            let local = Local::open(&data_dir, &env_lookup, None)?;
            print_account(&*local.app.accounts).await
        }
        Command::Openapi => {
            println!("{:#}", datarequest::http::openapi::document());
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file, data_dir } => {
            let local = Local::open(&data_dir, &env_lookup, None)?;
            import(&file, &*local.app.subjects).await
        }
    }
}

/// Creates an account and prints it as JSON.
async fn print_account(accounts: &dyn datarequest::ports::Accounts) -> anyhow::Result<ExitCode> {
    let account = datarequest::app::create_account(accounts).await?;
    let json = serde_json::json!({
        "account": account.account.get(),
        "token": account.token.expose(),
        "webhook_secret": account.webhook_secret.expose(),
    });
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "aws")]
mod aws {
    //! `--backend aws`: the operator's tools against a deployed stack.
    use std::process::ExitCode;

    use datarequest::adapters::aws::{Clients, DynamoDbAccounts, DynamoDbSubjects, Resources};

    use super::{AccountCommand, Command, env_lookup, import, print_account};

    pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
        let resources = Resources::from_lookup(&env_lookup)?;
        let clients = Clients::from_env().await;
        match command {
            Command::Account { command: AccountCommand::Create { .. } } => {
                print_account(&DynamoDbAccounts::new(clients.dynamodb, resources.accounts_table)).await
            }
            Command::Import { file, .. } => {
                let subjects = DynamoDbSubjects::new(
                    clients.dynamodb,
                    resources.subjects_table,
                    clients.s3,
                    resources.exports_bucket,
                );
                import(&file, &subjects).await
            }
            Command::Serve { .. } | Command::Openapi => {
                anyhow::bail!("serve and openapi run locally; on AWS the Lambda functions serve")
            }
        }
    }
}

#[cfg(not(feature = "aws"))]
mod aws {
    use std::process::ExitCode;

    pub async fn run(_: super::Command) -> anyhow::Result<ExitCode> {
        anyhow::bail!("this build has no AWS support: build it with `--features aws`")
    }
}

async fn import(file: &Path, subjects: &dyn datarequest::ports::SubjectData) -> anyhow::Result<ExitCode> {
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |done: u64, total: u64| {
        if terminal && total > 0 {
            eprint!("\rimporting {}: {:>3}%", file.display(), done * 100 / total);
            let _ = std::io::stderr().flush();
        }
    };
    let result = import_file(subjects, file, &mut progress).await;
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
