//! Mail through SES v2: the same MIME message as local mode, sent as raw content.

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};

use crate::ports::{Mailer, OutgoingMail};

/// Sends mail with SES v2.
pub struct SesMailer {
    client: Client,
}

impl SesMailer {
    /// Uses this client.
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &OutgoingMail) -> anyhow::Result<()> {
        let raw = RawMessage::builder().data(Blob::new(mail.raw.clone())).build().context("building a raw message")?;
        self.client
            .send_email()
            .from_email_address(&mail.from)
            .destination(Destination::builder().to_addresses(mail.to.as_str()).build())
            .content(EmailContent::builder().raw(raw).build())
            .send()
            .await
            .map_err(|e| {
                let code = aws_sdk_sesv2::error::ProvideErrorMetadata::code(&e).unwrap_or("no answer").to_owned();
                anyhow::anyhow!("SES did not take the message: {code}")
            })?;
        Ok(())
    }
}
