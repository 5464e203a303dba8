//! The command line: the clap types, and the dispatch of a parsed command to its module on the
//! chosen backend. The modules it dispatches to take plain values (ids, paths, the process
//! environment's lookup) and know nothing of the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use datarequest::app::Operator;
use datarequest::compose;
use datarequest::config;
use datarequest::domain::{AccountId, EmailAddress, Erasure, KeyId, ProfileId, SigningProfile, SubprofileId};

/// GDPR data requests, Copernica compatible, on embedded storage.
#[derive(Parser)]
#[command(name = "datarequest", version, about)]
pub struct Cli {
    /// Where the data lives: the local data dir, or (for `account`, `import`, `erase`,
    /// `ingest-key` and `signing-key`) the AWS tables, bucket and secret named by the
    /// DATAREQUEST_* variables, as `template.yaml` sets them.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Local)]
    pub backend: Backend,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Local,
    Aws,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the API and run the builder in one process.
    Serve {
        /// Address to listen on.
        #[arg(long, env = config::LISTEN, default_value = config::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Folder of the database, exports and outbox.
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
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
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Erase a subject (GDPR Art. 17) with everything that belongs to it; prints what was
    /// erased as JSON.
    Erase {
        /// The account the subject belongs to.
        #[arg(long, value_parser = AccountId::parse)]
        account: AccountId,
        #[command(flatten)]
        subject: EraseSubject,
        /// Folder of the database.
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Manage the keys of `POST /ingest`.
    IngestKey {
        #[command(subcommand)]
        command: IngestKeyCommand,
    },
    /// Manage the keys that sign web deliveries on the Copernica profile.
    SigningKey {
        #[command(subcommand)]
        command: SigningKeyCommand,
    },
    /// The sources subject data is also read from (the mapping named by DATAREQUEST_SOURCES).
    Sources {
        #[command(subcommand)]
        command: SourcesCommand,
    },
}

#[derive(Subcommand)]
pub enum SourcesCommand {
    /// Connect to every source, prepare every query, and report each mistake by source, kind and
    /// section (unknown parameter, syntax, a column that cannot be converted); exits non-zero
    /// when there is one.
    Check,
}

#[derive(Subcommand)]
pub enum SigningKeyCommand {
    /// Make a 2048-bit RSA key and keep it (locally in DATAREQUEST_SIGNING_KEY_FILE, on AWS in
    /// the secret DATAREQUEST_SIGNING_SECRET_ARN names); prints its id and the TXT record to
    /// publish at that name as JSON. It signs once DATAREQUEST_SIGNING_KEYS names it.
    Create {
        /// The key's id: the DNS name where its TXT record is published.
        #[arg(long, value_parser = KeyId::parse)]
        key_id: KeyId,
        /// Folder of the database (and, unless DATAREQUEST_SIGNING_KEY_FILE says otherwise, of the key file).
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Delete a key that no longer signs (the last step of a rotation).
    Delete {
        /// The key's id.
        #[arg(long, value_parser = KeyId::parse)]
        key_id: KeyId,
        /// Folder of the database.
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

impl SigningKeyCommand {
    /// The data dir the command works on (local backend).
    pub fn data_dir(&self) -> &Path {
        match self {
            Self::Create { data_dir, .. } | Self::Delete { data_dir, .. } => data_dir,
        }
    }
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account; prints its id, access token and webhook secret as JSON.
    Create {
        /// Folder of the database.
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Add or revoke an account's access tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Set how an account's web deliveries are signed: `standard-webhooks` (the default) or
    /// `copernica` (HTTP Signatures by the service's signing key, as Copernica signs).
    Signing {
        /// The account.
        #[arg(long, value_parser = AccountId::parse)]
        account: AccountId,
        /// The signing profile.
        #[arg(value_parser = SigningProfile::parse)]
        profile: SigningProfile,
        /// Folder of the database.
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Delete an account: its tokens are refused at once, then its requests (their files and
    /// mails), idempotency keys and subject data are deleted.
    Delete {
        /// The account.
        #[arg(long, value_parser = AccountId::parse)]
        account: AccountId,
        /// Refuse the account at once and leave the erasure of its data to the server's sweep
        /// (the `sweeper` function on AWS): for a large account.
        #[arg(long)]
        background: bool,
        /// Folder of the database.
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Add a token to an account; prints it as JSON (shown once, stored only as its hash).
    Add {
        /// The account.
        #[arg(long, value_parser = AccountId::parse)]
        account: AccountId,
        /// Folder of the database.
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Revoke a token of an account. A new data request with it is refused at once; running
    /// servers stop reading with it within DATAREQUEST_TOKEN_CACHE_SECS (their token cache).
    Revoke {
        /// The account.
        #[arg(long, value_parser = AccountId::parse)]
        account: AccountId,
        /// The token.
        token: String,
        /// Folder of the database.
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

impl AccountCommand {
    /// The data dir the command works on (local backend).
    pub fn data_dir(&self) -> &Path {
        match self {
            Self::Create { data_dir }
            | Self::Delete { data_dir, .. }
            | Self::Signing { data_dir, .. }
            | Self::Token { command: TokenCommand::Add { data_dir, .. } | TokenCommand::Revoke { data_dir, .. } } => {
                data_dir
            }
        }
    }
}

#[derive(Subcommand)]
pub enum IngestKeyCommand {
    /// Create an ingest key; prints it as JSON. It is shown once and stored only as its hash.
    Create {
        /// Folder of the database.
        #[arg(long, env = config::DATA_DIR, default_value = config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

/// Who `erase` erases: exactly one of the three.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct EraseSubject {
    /// A profile, with its subprofiles and every message and event of them.
    #[arg(long, value_parser = ProfileId::parse)]
    profile: Option<ProfileId>,
    /// A subprofile, with its messages and events.
    #[arg(long, value_parser = SubprofileId::parse)]
    subprofile: Option<SubprofileId>,
    /// Every message and event sent to this address, and every profile and subprofile whose
    /// address it is (with theirs).
    #[arg(long, value_parser = EmailAddress::parse)]
    email: Option<EmailAddress>,
}

impl EraseSubject {
    /// The erasure in `account`; clap's group guarantees exactly one subject.
    pub fn erasure(self, account: AccountId) -> anyhow::Result<Erasure> {
        match (self.profile, self.subprofile, self.email) {
            (Some(profile), None, None) => Ok(Erasure::Profile(account, profile)),
            (None, Some(subprofile), None) => Ok(Erasure::Subprofile(account, subprofile)),
            (None, None, Some(email)) => Ok(Erasure::Email(account, email)),
            _ => anyhow::bail!("erase needs exactly one of --profile, --subprofile or --email"),
        }
    }
}

/// The process environment, as the library's configuration lookups take it.
fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The operator's use cases on a local data dir.
fn open(data_dir: &Path) -> anyhow::Result<Operator> {
    compose::local_operator(data_dir, &env_lookup)
}

impl Cli {
    /// Runs the command; the exit code of a failure that is not an error (a bad import line).
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        // The same mapping serves both backends.
        if let Command::Sources { command: SourcesCommand::Check } = self.command {
            return crate::sources::check(&env_lookup).await;
        }
        if self.backend == Backend::Aws {
            return run_aws(self.command).await;
        }
        match self.command {
            Command::Serve { listen, data_dir, demo } => crate::serve::run(listen, &data_dir, demo, &env_lookup).await,
            Command::Account { command } => {
                let operator = open(command.data_dir())?;
                run_account(command, &operator).await
            }
            Command::Openapi => crate::openapi::print(),
            Command::Import { file, data_dir } => crate::import::run(&file, &open(&data_dir)?).await,
            Command::Erase { account, subject, data_dir } => {
                let erasure = subject.erasure(account)?;
                crate::erase::run(&erasure, &open(&data_dir)?).await
            }
            Command::IngestKey { command: IngestKeyCommand::Create { data_dir } } => {
                crate::ingest_key::create(&open(&data_dir)?).await
            }
            Command::SigningKey { command } => {
                let operator = open(command.data_dir())?;
                run_signing_key(command, &operator).await
            }
            Command::Sources { command: SourcesCommand::Check } => crate::sources::check(&env_lookup).await,
        }
    }
}

/// Runs `command` on the tables and bucket named by the DATAREQUEST_* variables (`--backend
/// aws`). Serving is the Lambda functions' job there.
async fn run_aws(command: Command) -> anyhow::Result<ExitCode> {
    let operator = crate::aws::operator(&env_lookup).await?;
    match command {
        Command::Account { command } => run_account(command, &operator).await,
        Command::IngestKey { command: IngestKeyCommand::Create { .. } } => crate::ingest_key::create(&operator).await,
        Command::Import { file, .. } => crate::import::run(&file, &operator).await,
        Command::SigningKey { command } => run_signing_key(command, &operator).await,
        Command::Erase { account, subject, .. } => {
            let erasure = subject.erasure(account)?;
            crate::erase::run(&erasure, &operator).await
        }
        Command::Serve { .. } | Command::Openapi | Command::Sources { .. } => {
            anyhow::bail!("serve and openapi run locally; on AWS the Lambda functions serve")
        }
    }
}

/// Runs an account command on an account store.
async fn run_account(command: AccountCommand, operator: &Operator) -> anyhow::Result<ExitCode> {
    match command {
        AccountCommand::Create { .. } => crate::account::create(operator).await,
        AccountCommand::Token { command: TokenCommand::Add { account, .. } } => {
            crate::account::add_token(operator, account).await
        }
        AccountCommand::Token { command: TokenCommand::Revoke { account, token, .. } } => {
            crate::account::revoke_token(operator, account, &token).await
        }
        AccountCommand::Delete { account, background, .. } => {
            crate::account::delete(operator, account, background).await
        }
        AccountCommand::Signing { account, profile, .. } => crate::account::signing(operator, account, profile).await,
    }
}

/// Runs a signing key command on a key store.
async fn run_signing_key(command: SigningKeyCommand, operator: &Operator) -> anyhow::Result<ExitCode> {
    match command {
        SigningKeyCommand::Create { key_id, .. } => crate::signing_key::create(operator, key_id).await,
        SigningKeyCommand::Delete { key_id, .. } => crate::signing_key::delete(operator, &key_id).await,
    }
}
