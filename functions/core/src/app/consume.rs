//! Consuming the build queue, the same in both worlds: a received message is handled
//! ([`App::handle_message_until`]) and settled on the [`QueueConsumer`] it came from, whether
//! that is SQS (the builder function) or local mode's queue (its workers).

use std::time::{Duration, Instant};

use super::App;
use super::QueueOutcome;
use crate::domain::RetryPolicy;
use crate::ports::{QueueConsumer, QueueMessage};

/// How a received message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// Settled: acknowledged, or handed on as a fresh message.
    Settled,
    /// Failed: it shows again after the retry policy's delay (an SQS batch lists it as failed).
    Failed,
}

impl App {
    /// Handles a received build queue message and settles it on `consumer`: a handled message
    /// is acknowledged, a request to go on later is handed on as a fresh message, and a failure
    /// shows again after [`RetryPolicy::after_error`] for its receive count.
    pub async fn consume(
        &self,
        consumer: &dyn QueueConsumer,
        message: &QueueMessage,
        stop_at: Option<Instant>,
    ) -> Consumed {
        let result = self.handle_message_until(message.request, message.receives, stop_at).await;
        settle(consumer, message, result).await
    }
}

/// Settles a message on its queue by how its handling ended.
pub async fn settle(
    consumer: &dyn QueueConsumer,
    message: &QueueMessage,
    handled: anyhow::Result<QueueOutcome>,
) -> Consumed {
    let settled = match handled {
        Ok(QueueOutcome::Done) => consumer.acknowledge(message).await,
        Ok(QueueOutcome::RetryAfter(delay)) => consumer.enqueue_after(message, delay).await,
        Ok(QueueOutcome::Continue) => consumer.enqueue_after(message, Duration::ZERO).await,
        Err(error) => {
            tracing::error!(request_id = %message.request, receives = message.receives, error = format!("{error:#}"), "build failed; will retry");
            return retry(consumer, message).await;
        }
    };
    match settled {
        Ok(()) => Consumed::Settled,
        Err(error) => {
            tracing::error!(request_id = %message.request, error = format!("{error:#}"), "settling the queue message failed");
            retry(consumer, message).await
        }
    }
}

async fn retry(consumer: &dyn QueueConsumer, message: &QueueMessage) -> Consumed {
    let delay = RetryPolicy::after_error(message.receives);
    if let Err(error) = consumer.retry_after(message, delay).await {
        tracing::warn!(request_id = %message.request, error = format!("{error:#}"), "could not delay the failed message");
    }
    Consumed::Failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryQueue, Settled};
    use crate::domain::RequestId;

    fn message(receives: u32) -> QueueMessage {
        let request = RequestId::try_from(42).unwrap_or_else(|_| unreachable!());
        QueueMessage { request, receives, handle: "h".into() }
    }

    #[tokio::test]
    async fn each_outcome_is_settled_its_own_way() {
        let queue = MemoryQueue::default();
        let id = message(1).request;
        let minute = Duration::from_secs(60);
        for handled in [
            Ok(QueueOutcome::Done),
            Ok(QueueOutcome::RetryAfter(minute)),
            Ok(QueueOutcome::Continue),
            Err(anyhow::anyhow!("down")),
        ] {
            settle(&queue, &message(3), handled).await;
        }
        assert_eq!(
            queue.settled(),
            vec![
                (id, Settled::Acknowledged),
                (id, Settled::EnqueuedAfter(minute)),
                (id, Settled::EnqueuedAfter(Duration::ZERO)),
                (id, Settled::RetryAfter(RetryPolicy::after_error(3))),
            ]
        );
        assert_eq!(queue.drain(), vec![id, id], "the two handed on went as fresh messages");
    }

    #[tokio::test]
    async fn a_message_that_cannot_be_settled_counts_as_failed() {
        let queue = MemoryQueue::default();
        queue.fail(true);
        assert_eq!(settle(&queue, &message(1), Ok(QueueOutcome::Done)).await, Consumed::Failed);
        queue.fail(false);
        assert_eq!(settle(&queue, &message(1), Ok(QueueOutcome::Done)).await, Consumed::Settled);
    }
}
