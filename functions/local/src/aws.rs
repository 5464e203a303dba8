//! `--backend aws`: the operator's use cases on the tables and bucket of a deployed stack
//! (accounts, imports, erasures, ingest keys). Serving is the Lambda functions' job there.

use datarequest::app::Operator;

/// The operator's use cases on the stack that the DATAREQUEST_* variables of `lookup` name.
#[cfg(feature = "aws")]
pub async fn operator(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Operator> {
    datarequest::compose::aws_operator(lookup).await
}

/// This build has no AWS adapters: no stack can be opened.
#[cfg(not(feature = "aws"))]
pub async fn operator(_: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Operator> {
    anyhow::bail!("this build has no AWS support: build it with `--features aws`")
}
