//! Local mail: a folder of `<request id>.eml` files, or an SMTP server when one is configured.

use std::path::PathBuf;

use anyhow::Context;
use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::domain::RequestId;
use crate::ports::{Mailer, OutgoingMail};

/// Writes each mail to `<dir>/<request id>.eml`, atomically.
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    /// Uses (and creates) this folder.
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir })
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: &OutgoingMail) -> anyhow::Result<()> {
        let target = self.dir.join(format!("{}.eml", mail.request));
        let temporary = self.dir.join(format!(".{}.eml.part", mail.request));
        tokio::fs::write(&temporary, &mail.raw).await.context("writing to the outbox")?;
        tokio::fs::rename(&temporary, &target).await.context("writing to the outbox")?;
        Ok(())
    }

    async fn forget(&self, request: RequestId) -> anyhow::Result<()> {
        for name in [format!("{request}.eml"), format!(".{request}.eml.part")] {
            match tokio::fs::remove_file(self.dir.join(name)).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(anyhow::Error::new(error).context("deleting a mail from the outbox"));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Sends mail through an SMTP server given as a URL (`smtp://host:25`, `smtps://user:pass@host`,
/// `smtp://host:587?tls=required`).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpMailer {
    /// A mailer for this server URL.
    ///
    /// # Errors
    /// When the URL is not a valid SMTP URL.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).context("not a valid SMTP URL")?.build();
        Ok(Self { transport })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &OutgoingMail) -> anyhow::Result<()> {
        let envelope = Envelope::new(Some(mail.from.parse()?), vec![mail.to.as_str().parse()?])?;
        self.transport.send_raw(&envelope, &mail.raw).await.map_err(|e| {
            anyhow::anyhow!(
                "the mail server did not take the message: {}",
                e.status().map_or_else(|| "no answer".to_owned(), |c| c.to_string())
            )
        })?;
        Ok(())
    }
}
