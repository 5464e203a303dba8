//! The builder function's work: a batch of SQS messages, each a request to build and deliver.
//! Failures are reported per message, so one bad message does not fail the batch. Messages
//! from the dead-letter queue mark their request failed: the queue gave up on it.

use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

use crate::adapters::aws::SqsQueue;
use crate::app::{App, Consumed};
use crate::domain::build_message;
use crate::ports::QueueMessage;

/// Why the queue gave up, as the status shows it.
const GAVE_UP: &str = "the export could not be built";

/// How often SQS has handed the message out, this time included.
fn receive_count(message: &SqsMessage) -> u32 {
    message.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1)
}

/// Handles one message; `false` when it failed (the batch answer lists it).
async fn handle_message(
    app: &App,
    queue: &SqsQueue,
    message: &SqsMessage,
    dead_letters: Option<&str>,
    stop_at: Option<Instant>,
) -> bool {
    let from_dead_letters = dead_letters.is_some_and(|arn| message.event_source_arn.as_deref() == Some(arn));
    let body = message.body.as_deref().unwrap_or_default();
    let request = match build_message::parse(body) {
        Ok(id) => id,
        // A poisoned message in the dead-letter queue has nothing to mark; retrying won't help.
        Err(_) if from_dead_letters => {
            tracing::warn!("dropping an unreadable dead letter");
            return true;
        }
        Err(_) => {
            tracing::error!(message_id = message.message_id.as_deref().unwrap_or_default(), "unreadable build message");
            return false;
        }
    };
    if from_dead_letters {
        return match app.give_up(request, GAVE_UP).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(request_id = %request, error = format!("{error:#}"), "marking a dead letter failed");
                false
            }
        };
    }
    let handle = message.receipt_handle.clone().unwrap_or_default();
    let received = QueueMessage { request, receives: receive_count(message), handle };
    app.consume(queue, &received, stop_at).await == Consumed::Settled
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
        if !handle_message(app, queue, message, dead_letters, stop_at).await {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}
