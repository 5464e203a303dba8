//! The build queue in SQS: messages carry the request id only.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_sqs::Client;

use crate::domain::{RequestId, build_message};
use crate::ports::{BuildQueue, QueueConsumer, QueueMessage};

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
            .message_body(build_message::body(id))
            .delay_seconds(seconds)
            .send()
            .await
            .context("queueing a request")?;
        Ok(())
    }

    /// Makes a received message visible again after `delay` (at most 12 hours, SQS's limit),
    /// keeping its receive count, so the dead-letter queue's bound still holds.
    async fn change_visibility(&self, receipt_handle: &str, delay: Duration) -> anyhow::Result<()> {
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

/// The builder's side of the queue. Lambda's event source removes a message the batch answer
/// does not list as failed, so acknowledging is nothing to do, and a request handed on goes as
/// a fresh (delayed) message, whose receive count starts again: delivery retries and
/// continuations do not use up the bound of the dead-letter queue.
#[async_trait]
impl QueueConsumer for SqsQueue {
    async fn acknowledge(&self, _: &QueueMessage) -> anyhow::Result<()> {
        Ok(())
    }

    async fn retry_after(&self, message: &QueueMessage, delay: Duration) -> anyhow::Result<()> {
        self.change_visibility(&message.handle, delay).await
    }

    async fn enqueue_after(&self, message: &QueueMessage, delay: Duration) -> anyhow::Result<()> {
        SqsQueue::enqueue_after(self, message.request, delay).await
    }
}
