//! Data requests in DynamoDB, one item per request keyed by `id`. A conditional update reads
//! the item, checks the guard and writes it back on the condition that its `version` did not
//! change in between (optimistic concurrency), retrying when another writer came first. The
//! `ttl` attribute lets DynamoDB remove requests long after their export expired.

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::attributes::{Item, get_n, get_s, n, opt_n, opt_s, put_opt_n, put_opt_s, s, scan_prefixed};
use crate::domain::{
    AccountId, DataRequest, Delivery, Report, RequestId, State, Subject, Timestamp, Transition, WebPolicy,
};
use crate::ports::{KeyClaim, RequestStore};

/// How long a request's record outlives its export (or its creation, without one).
const KEEP_RECORD: i64 = 30 * 86_400;

/// The requests table.
pub struct DynamoDbRequests {
    client: Client,
    table: String,
}

impl DynamoDbRequests {
    /// Uses this table (key: `id`, a string).
    #[must_use]
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    async fn read(&self, id: RequestId) -> anyhow::Result<Option<(DataRequest, u64)>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .context("reading a request")?;
        output.item.map(|item| Ok((from_item(&item)?, get_n(&item, "version")?))).transpose()
    }

    /// Writes the item if the stored version is `expected` (`None`: if there is none).
    async fn write(&self, request: &DataRequest, expected: Option<u64>) -> anyhow::Result<bool> {
        let version = expected.map_or(1, |v| v + 1);
        let mut put = self.client.put_item().table_name(&self.table).set_item(Some(to_item(request, version)));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(id)"),
            Some(v) => put.condition_expression("version = :v").expression_attribute_values(":v", n(v)),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {
                Ok(false)
            }
            Err(e) => Err(anyhow::Error::new(e).context("writing a request")),
        }
    }

    async fn scan_ids(
        &self,
        filter: &str,
        values: &[(&str, AttributeValue)],
        limit: usize,
    ) -> anyhow::Result<Vec<RequestId>> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression(filter)
                .consistent_read(true)
                .expression_attribute_names("#state", "state")
                .set_exclusive_start_key(start);
            for (name, value) in values {
                scan = scan.expression_attribute_values(*name, value.clone());
            }
            let page = scan.send().await.context("scanning requests")?;
            for item in page.items() {
                ids.push(RequestId::parse(get_s(item, "id")?)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() || ids.len() >= limit {
                ids.sort();
                ids.truncate(limit);
                return Ok(ids);
            }
        }
    }
}

fn to_item(r: &DataRequest, version: u64) -> Item {
    let mut item = Item::new();
    item.insert("id".into(), s(r.id.to_string()));
    item.insert("account".into(), n(r.account));
    item.insert("subject_kind".into(), s(r.subject.kind().as_str()));
    item.insert("subject".into(), s(r.subject.value()));
    put_opt_s(&mut item, "report", r.report.as_ref().map(ToString::to_string).as_deref());
    item.insert("state".into(), s(r.state.as_str()));
    put_opt_s(&mut item, "reason", r.reason.as_deref());
    item.insert("available".into(), n(r.available));
    item.insert("created".into(), n(r.created.unix()));
    put_opt_n(&mut item, "completed", r.completed.map(Timestamp::unix));
    put_opt_n(&mut item, "expires", r.expires.map(Timestamp::unix));
    item.insert("delivery_status".into(), s(r.delivery.status.as_str()));
    item.insert("delivery_attempts".into(), n(r.delivery.attempts));
    put_opt_s(&mut item, "delivery_method", r.delivery.method.as_deref());
    put_opt_s(&mut item, "delivery_error", r.delivery.error.as_deref());
    put_opt_n(&mut item, "delivery_claimed_until", r.delivery.claimed_until.map(Timestamp::unix));
    put_opt_n(&mut item, "build_lease_until", r.lease_until.map(Timestamp::unix));
    put_opt_s(&mut item, "build_checkpoint", r.checkpoint.as_deref());
    if !r.records.is_empty() {
        item.insert("records".into(), s(serde_json::to_string(&r.records).unwrap_or_default()));
    }
    item.insert("version".into(), n(version));
    item.insert("ttl".into(), n(r.expires.unwrap_or(r.created).unix().saturating_add(KEEP_RECORD)));
    item
}

fn from_item(item: &Item) -> anyhow::Result<DataRequest> {
    Ok(DataRequest {
        id: RequestId::parse(get_s(item, "id")?)?,
        account: AccountId::try_from(get_n::<u64>(item, "account")?)?,
        subject: Subject::from_parts(get_s(item, "subject_kind")?, get_s(item, "subject")?)?,
        // Checked at intake; the web delivery checks the address again when it connects.
        report: opt_s(item, "report").map(|r| Report::parse(r, WebPolicy::AllowPrivate)).transpose()?,
        state: get_s(item, "state")?.parse()?,
        reason: opt_s(item, "reason").map(str::to_owned),
        available: get_n(item, "available")?,
        created: Timestamp::from_unix(get_n(item, "created")?),
        completed: opt_n(item, "completed")?.map(Timestamp::from_unix),
        expires: opt_n(item, "expires")?.map(Timestamp::from_unix),
        delivery: Delivery {
            status: get_s(item, "delivery_status")?.parse()?,
            attempts: get_n(item, "delivery_attempts")?,
            method: opt_s(item, "delivery_method").map(str::to_owned),
            error: opt_s(item, "delivery_error").map(str::to_owned),
            claimed_until: opt_n(item, "delivery_claimed_until")?.map(Timestamp::from_unix),
        },
        lease_until: opt_n(item, "build_lease_until")?.map(Timestamp::from_unix),
        checkpoint: opt_s(item, "build_checkpoint").map(str::to_owned),
        // JSON `[["section", count], …]`, once built.
        records: opt_s(item, "records").map(serde_json::from_str).transpose()?.unwrap_or_default(),
    })
}

#[async_trait]
impl RequestStore for DynamoDbRequests {
    async fn claim_key(
        &self,
        account: AccountId,
        key_hash: &str,
        claim: &KeyClaim,
        now: Timestamp,
    ) -> anyhow::Result<Option<KeyClaim>> {
        // The key lives beside the requests: `id` = `IDEM#<account>#<hash>`, gone by TTL.
        let id = format!("IDEM#{account}#{key_hash}");
        for _ in 0..5 {
            let item = Item::from([
                ("id".to_owned(), s(&id)),
                ("request".to_owned(), s(claim.request.to_string())),
                ("fingerprint".to_owned(), s(&claim.fingerprint)),
                ("expires".to_owned(), n(claim.expires.unix())),
                ("ttl".to_owned(), n(claim.expires.unix())),
            ]);
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(id) OR expires <= :now")
                .expression_attribute_values(":now", n(now.unix()))
                .send()
                .await;
            match put {
                Ok(_) => return Ok(None),
                Err(error)
                    if matches!(error.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => {}
                Err(error) => return Err(anyhow::Error::new(error).context("storing an idempotency key")),
            }
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("id", s(&id))
                .consistent_read(true)
                .send()
                .await
                .context("reading an idempotency key")?;
            // Gone in between (expired and removed): try to store ours again.
            if let Some(item) = output.item {
                return Ok(Some(KeyClaim {
                    request: get_s(&item, "request")?.parse::<u64>()?.try_into()?,
                    fingerprint: get_s(&item, "fingerprint")?.to_owned(),
                    expires: Timestamp::from_unix(get_n(&item, "expires")?),
                }));
            }
        }
        anyhow::bail!("an idempotency key kept changing")
    }

    async fn insert(&self, request: &DataRequest) -> anyhow::Result<bool> {
        self.write(request, None).await
    }

    async fn get(&self, id: RequestId) -> anyhow::Result<Option<DataRequest>> {
        Ok(self.read(id).await?.map(|(request, _)| request))
    }

    async fn update(&self, id: RequestId, transition: &Transition) -> anyhow::Result<bool> {
        for _ in 0..10 {
            let Some((mut request, version)) = self.read(id).await? else { return Ok(false) };
            if !transition.apply(&mut request) {
                return Ok(false);
            }
            if self.write(&request, Some(version)).await? {
                return Ok(true);
            }
        }
        anyhow::bail!("request {id} kept changing under a conditional update")
    }

    async fn expiring(&self, now: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>> {
        let values = [(":built", s("built")), (":delivered", s("delivered")), (":now", n(now.unix()))];
        self.scan_ids("#state IN (:built, :delivered) AND expires <= :now", &values, limit).await
    }

    async fn stuck(&self, before: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>> {
        let values = [
            (":accepted", s(State::Accepted.as_str())),
            (":building", s(State::Building.as_str())),
            (":before", n(before.unix())),
        ];
        let filter = "#state IN (:accepted, :building) AND ((attribute_exists(build_lease_until) AND build_lease_until <= :before) \
                      OR (attribute_not_exists(build_lease_until) AND created <= :before))";
        self.scan_ids(filter, &values, limit).await
    }

    async fn unfinished(&self) -> anyhow::Result<Vec<RequestId>> {
        let values = [
            (":accepted", s(State::Accepted.as_str())),
            (":building", s(State::Building.as_str())),
            (":built", s(State::Built.as_str())),
            (":pending", s("pending")),
            (":sending", s("sending")),
        ];
        let filter =
            "#state IN (:accepted, :building) OR (#state = :built AND delivery_status IN (:pending, :sending))";
        self.scan_ids(filter, &values, usize::MAX).await
    }

    async fn requests_of(&self, account: AccountId) -> anyhow::Result<Vec<DataRequest>> {
        let values = [(":account", n(account.get()))];
        let ids = self.scan_ids("account = :account AND attribute_exists(#state)", &values, usize::MAX).await?;
        let mut requests = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((request, _)) = self.read(id).await? {
                requests.push(request);
            }
        }
        Ok(requests)
    }

    async fn forget_account(&self, account: AccountId) -> anyhow::Result<()> {
        let values = [(":account", n(account.get()))];
        let mut keys: Vec<String> = self
            .scan_ids("account = :account AND attribute_exists(#state)", &values, usize::MAX)
            .await?
            .into_iter()
            .map(|id| id.to_string())
            .collect();
        // The account's idempotency keys live beside its requests, named by the account.
        let prefix = format!("IDEM#{account}#");
        scan_prefixed(&self.client, &self.table, "id", &prefix, |items| {
            for item in items {
                keys.push(get_s(item, "id")?.to_owned());
            }
            Ok(())
        })
        .await?;
        for key in keys {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("id", s(key))
                .send()
                .await
                .context("deleting a request of a deleted account")?;
        }
        Ok(())
    }
}
