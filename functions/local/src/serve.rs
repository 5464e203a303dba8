//! `datarequest serve`: the API, the build workers and the expiry sweeper in one process, until
//! SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use datarequest::compose;
use datarequest::config;

/// Listens on `listen` (port 0 picks a free one; the line `Datarequest listening on URL` on
/// stdout says which) and serves until a signal, configured by the variables of `lookup`.
pub async fn run(
    listen: SocketAddr,
    data_dir: &Path,
    demo: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ExitCode> {
    // A broken mapping would fail every build that reads it: refuse to start instead.
    if let Some(refused) = crate::sources::check_before_serving(lookup).await? {
        return Ok(refused);
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    let local = compose::local(data_dir, lookup, Some(format!("http://{address}")))?;
    let workers = match datarequest::config::optional(lookup, config::WORKERS) {
        None => 2,
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .context("DATAREQUEST_WORKERS: must be a number from 1 to 64")?,
    };
    let limits = config::ServerLimits::from_lookup(lookup)?;
    if demo {
        crate::demo::seed_and_print(&local, data_dir).await?;
    }
    println!("Datarequest listening on http://{address}");
    let _ = std::io::stdout().flush();
    datarequest::inbound::local::serve(local, listener, &limits, workers, shutdown()).await?;
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
