//! What `bench postgres` and `bench mysql` share: the private database server, the sample
//! shop's mails, and the build of a subject from a source in a child process with its rows.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::{LINE, MB, Report};

/// A database server: its superuser URL, the reading account (`user:password`), and the
/// script that started it for this run (which stops it when dropped).
pub struct Server {
    pub admin: reqwest::Url,
    pub reader: String,
    started: Option<PathBuf>,
}

/// The port of a server URL, or its kind's default (`postgres://` and `mysql://` URLs have none
/// of their own).
pub fn port_of(url: &reqwest::Url) -> u16 {
    url.port().unwrap_or(if url.scheme() == "mysql" { 3306 } else { 5432 })
}

impl Server {
    /// The server the variables `url` and `reader` name, else a private one from `script`
    /// (`infra/postgres.sh`, `infra/mariadb.sh`).
    pub fn new(root: &Path, script: &str, url: &str, reader: &str) -> anyhow::Result<Self> {
        if let (Ok(admin), Ok(reader)) = (std::env::var(url), std::env::var(reader)) {
            return Ok(Self { admin: admin.parse()?, reader, started: None });
        }
        let script = root.join(script);
        let output = Command::new(&script).arg("start").stderr(Stdio::inherit()).output()?;
        anyhow::ensure!(output.status.success(), "{} start failed", script.display());
        let text = String::from_utf8(output.stdout)?;
        let get = |key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('='))).map(str::to_owned)
        };
        Ok(Self {
            admin: get(url).context("no server URL")?.parse()?,
            reader: get(reader).context("no reader")?,
            started: Some(script),
        })
    }

    /// The reading account's URL of database `name`.
    pub fn reader_url(&self, name: &str) -> String {
        let (host, port) = (self.admin.host_str().unwrap_or("127.0.0.1"), port_of(&self.admin));
        format!("{}://{}@{host}:{port}/{name}", self.admin.scheme(), self.reader)
    }

    /// The reading account's user name.
    pub fn reader_user(&self) -> &str {
        self.reader.split(':').next().unwrap_or("datarequest")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(script) = &self.started {
            let _ = Command::new(script).arg("stop").status();
        }
    }
}

/// Message `n` of customer `id` of the sample shop: its id and about `size` bytes of
/// multipart MIME.
pub fn mail(id: u64, address: &str, n: u64, size: u64) -> (String, String) {
    let lines = usize::try_from(size / 2 / (LINE.len() as u64 + 2)).unwrap_or(1).max(1);
    let text: String = (0..lines).map(|i| format!("{LINE} {i}\r\n")).collect();
    let html: String = (0..lines).map(|i| format!("<p>{LINE} {i}</p>\r\n")).collect();
    let message = format!("c{id}-m{n:07}");
    let mime = format!(
        "From: Shop <news@shop.example>\r\nTo: {address}\r\nSubject: Mail {n}\r\nMessage-ID: <{message}@shop.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}--b--\r\n"
    );
    (message, mime)
}

/// What a source build is measured against.
pub enum Limit {
    /// A pace, in MB/s.
    Pace(f64),
    /// The time another program took to read the same data (the export's size over it is the
    /// pace).
    Seconds(f64),
}

/// Builds profile 1 of account 1 (the first account made in `dir`) from the sources `env`
/// names, in a child process, and reports its pace against `limit` (described by
/// `limit_text`) and its peak RSS.
pub fn build_and_report(
    release: &Path,
    dir: &Path,
    env: &[(String, String)],
    report: &mut Report,
    what: &str,
    (limit, limit_text): (Limit, String),
) -> anyhow::Result<()> {
    let account =
        Command::new(release.join("datarequest")).args(["account", "create", "--data-dir"]).arg(dir).output()?;
    anyhow::ensure!(account.status.success(), "account create failed");
    let built = crate::spawn_child(dir, None, env)?;
    let size = built["bytes"].as_f64().unwrap_or(0.0);
    let seconds = built["seconds"].as_f64().unwrap_or(1.0);
    let rss = built["peak_rss_kb"].as_f64().unwrap_or(0.0) / 1024.0;
    let ours = size / MB / seconds;
    let limit = match limit {
        Limit::Pace(pace) => pace,
        Limit::Seconds(taken) => size / MB / taken,
    };
    report.row(
        &format!("{what} into its export"),
        format!("{ours:.0} MB/s ({:.0} MB in {seconds:.1} s)", size / MB),
        limit_text,
        ours / limit,
        ">= 0.5 of the limit",
        ours / limit >= 0.5,
    );
    report.row(
        &format!("{what}: build peak RSS"),
        format!("{rss:.1} MB"),
        "64 MB".into(),
        rss / 64.0,
        "flat, <= 64 MB",
        rss <= 64.0,
    );
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
