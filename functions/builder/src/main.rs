//! Lambda function `builder`: SQS batch of data requests → build each export → deliver it,
//! reporting failed messages only. A build that cannot finish before the invocation's deadline
//! stops at a checkpoint and queues its own continuation. Also subscribed to the dead-letter queue, whose messages
//! mark their requests failed.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use datarequest::compose;
use datarequest::config::DEAD_LETTER_QUEUE_ARN;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (app, queue) = compose::aws_from_env().await?;
    let dead_letters = std::env::var(DEAD_LETTER_QUEUE_ARN).ok().filter(|arn| !arn.is_empty());
    let (app, queue, dead_letters) = (&app, &queue, dead_letters.as_deref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.context.deadline);
        Ok::<SqsBatchResponse, Error>(
            datarequest::inbound::sqs_build::handle_batch(app, queue, event.payload, dead_letters, Some(deadline))
                .await,
        )
    }))
    .await
}
