//! The builder function's work: a batch of SQS messages, each a request to build and deliver.
//! Failures are reported per message, so one bad message does not fail the batch. Messages
//! from the dead-letter queue mark their request failed: the queue gave up on it.

use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

use crate::adapters::aws::SqsQueue;
use crate::app::App;
use crate::domain::RetryPolicy;
use crate::worker::{self, Outcome};

/// Why the queue gave up, as the status shows it.
const GAVE_UP: &str = "the export could not be built";

/// How often SQS has handed the message out, this time included.
fn receive_count(message: &SqsMessage) -> u32 {
    message.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1)
}

async fn handle_message(
    app: &App,
    queue: &SqsQueue,
    message: &SqsMessage,
    dead_letters: Option<&str>,
    stop_at: Option<Instant>,
) -> anyhow::Result<()> {
    let from_dead_letters = dead_letters.is_some_and(|arn| message.event_source_arn.as_deref() == Some(arn));
    let body = message.body.as_deref().unwrap_or_default();
    let id = match worker::parse_message(body) {
        Ok(id) => id,
        // A poisoned message in the dead-letter queue has nothing to mark; retrying won't help.
        Err(_) if from_dead_letters => {
            tracing::warn!("dropping an unreadable dead letter");
            return Ok(());
        }
        Err(e) => anyhow::bail!("unreadable build message: {e}"),
    };
    if from_dead_letters {
        return worker::give_up(app, id, GAVE_UP).await;
    }
    match worker::handle_until(app, id, receive_count(message), stop_at).await? {
        Outcome::Done => Ok(()),
        // A fresh delayed message, so delivery retries do not use up the receive count.
        Outcome::RetryAfter(delay) => queue.enqueue_after(id, delay).await,
        // The continuation: a fresh message, which has not failed.
        Outcome::Continue => queue.enqueue_after(id, std::time::Duration::ZERO).await,
    }
}

/// When a run that must be over by `deadline` stops building and hands on: a quarter of the
/// time left is kept back, at least 2 and at most 30 seconds, to finish the record being
/// written, take a checkpoint and queue the continuation. An invocation of 20 seconds builds
/// for 15; one of 300 for 270.
#[must_use]
pub fn stop_at(deadline: SystemTime) -> Instant {
    let left = deadline.duration_since(SystemTime::now()).unwrap_or_default();
    let margin = (left / 4).clamp(Duration::from_secs(2), Duration::from_secs(30));
    Instant::now() + left.saturating_sub(margin)
}

/// Handles a batch; the response lists the messages to deliver again, each made visible again
/// after the retry policy's delay for its receive count. A build still running near
/// `deadline` (the invocation's) stops at a checkpoint and goes on in a continuation message.
pub async fn handle_batch(
    app: &App,
    queue: &SqsQueue,
    event: SqsEvent,
    dead_letters: Option<&str>,
    deadline: Option<SystemTime>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let stop_at = deadline.map(stop_at);
    for message in &event.records {
        if let Err(error) = handle_message(app, queue, message, dead_letters, stop_at).await {
            let id = message.message_id.clone().unwrap_or_default();
            tracing::error!(message_id = %id, error = format!("{error:#}"), "build message failed");
            if let Some(handle) = message.receipt_handle.as_deref() {
                let delay = RetryPolicy::after_error(receive_count(message));
                if let Err(error) = queue.retry_after(handle, delay).await {
                    tracing::warn!(error = format!("{error:#}"), "could not delay the failed message");
                }
            }
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}
