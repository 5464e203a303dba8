//! Lambda function `sweeper`, run every 5 minutes by an EventBridge schedule: queues again the
//! requests stuck before their build (a queue message lost between the intake's store and its
//! send, or a builder that died), and deletes the exports whose time is up, marking their
//! requests expired (otherwise that happens only when someone asks for them).

use datarequest::compose;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (app, _) = compose::aws_from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let requeued = app.requeue_stuck().await?;
        let expired = app.sweep_expired().await?;
        let erased_accounts = app.erase_deleted_accounts().await?;
        lambda_runtime::tracing::info!(requeued, expired, erased_accounts, "sweep done");
        Ok::<Value, Error>(json!({"requeued": requeued, "expired": expired, "erased_accounts": erased_accounts}))
    }))
    .await
}
