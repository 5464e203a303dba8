//! The audit log in its own DynamoDB table: key `request` (the request id) and `seq` (the time
//! in milliseconds and a random tie-breaker), so a request's log is one ordered query. Each
//! item carries its `account` (a log is read by its owner alone) and a `ttl` of the audit
//! retention, after which DynamoDB removes it.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;

use super::attributes::{Item, get_n, get_s, n, put, s};
use crate::domain::{AccountId, AuditEntry, RequestId};
use crate::ports::AuditLog;

/// The audit table.
pub struct DynamoDbAudit {
    client: Client,
    table: String,
    retention: Duration,
}

impl DynamoDbAudit {
    /// Uses this table (keys `request` and `seq`, strings), keeping entries for `retention`.
    #[must_use]
    pub fn new(client: Client, table: String, retention: Duration) -> Self {
        Self { client, table, retention }
    }
}

#[async_trait]
impl AuditLog for DynamoDbAudit {
    async fn append(&self, account: AccountId, request: RequestId, entry: &AuditEntry) -> anyhow::Result<()> {
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let keep = i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX);
        let item = Item::from([
            ("request".to_owned(), s(request.to_string())),
            ("seq".to_owned(), s(format!("{millis:015}#{:08x}", rand::random::<u32>()))),
            ("account".to_owned(), n(account)),
            ("entry".to_owned(), s(serde_json::to_string(entry)?)),
            ("ttl".to_owned(), n(entry.at.unix().saturating_add(keep))),
        ]);
        put(&self.client, &self.table, item, "an audit entry").await
    }

    async fn entries(&self, account: AccountId, request: RequestId) -> anyhow::Result<Vec<AuditEntry>> {
        let (mut entries, mut start) = (Vec::new(), None);
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#r = :r")
                .expression_attribute_names("#r", "request")
                .expression_attribute_values(":r", s(request.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .context("reading the audit log")?;
            for item in output.items() {
                if get_n::<u64>(item, "account")? == account.get() {
                    entries.push(serde_json::from_str(get_s(item, "entry")?).context("an audit entry")?);
                }
            }
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(entries),
            }
        }
    }
}
