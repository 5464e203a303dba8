//! Lambda function `ingest`: subject data through two doors of one function, `POST /ingest`
//! from API Gateway and SES event records from the ingest queue (see
//! [`datarequest::inbound::lambda`]).

use datarequest::compose;
use datarequest::inbound::lambda::IngestFunction;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (app, _) = compose::aws_from_env().await?;
    let function = &IngestFunction::new(app);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| function.handle(event))).await
}
