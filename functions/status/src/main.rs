//! Lambda function `status`: the GET routes of the data request API.

use datarequest::compose;
use datarequest::inbound::http::{Routes, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let (app, _) = compose::aws_from_env().await?;
    lambda_http::run(router(app, Routes::Status)).await
}
