//! The build queue in SQS: messages carry the request id only.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_sqs::Client;

use crate::domain::RequestId;
use crate::ports::BuildQueue;
use crate::worker::message_body;

/// The build queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// Uses the queue at this URL.
    #[must_use]
    pub fn new(client: Client, url: String) -> Self {
        Self { client, url }
    }

    /// Enqueues a request to be handled after `delay` (at most 15 minutes, SQS's limit).
    ///
    /// # Errors
    /// When the queue cannot be reached.
    pub async fn enqueue_after(&self, id: RequestId, delay: Duration) -> anyhow::Result<()> {
        let seconds = i32::try_from(delay.as_secs().min(900)).unwrap_or(900);
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(message_body(id))
            .delay_seconds(seconds)
            .send()
            .await
            .context("queueing a request")?;
        Ok(())
    }

    /// Makes a received message visible again after `delay` (at most 12 hours, SQS's limit),
    /// keeping its receive count, so the dead-letter queue's bound still holds.
    ///
    /// # Errors
    /// When the queue cannot be reached.
    pub async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> anyhow::Result<()> {
        let seconds = i32::try_from(delay.as_secs().min(43_200)).unwrap_or(43_200);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .context("delaying a failed message")?;
        Ok(())
    }
}

#[async_trait]
impl BuildQueue for SqsQueue {
    async fn enqueue(&self, id: RequestId) -> anyhow::Result<()> {
        self.enqueue_after(id, Duration::ZERO).await
    }
}
