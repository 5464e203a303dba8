//! Data requests in the `requests` table; a conditional update is one immediate transaction.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{SqliteStore, to_i64, to_u64};
use crate::domain::{AccountId, DataRequest, Delivery, Report, RequestId, Subject, Timestamp, Transition, WebPolicy};
use crate::ports::{KeyClaim, RequestStore};

const REQUEST_COLUMNS: &str = "id, account, subject_kind, subject, report, state, reason, available, created, completed, \
     expires, delivery_status, delivery_attempts, delivery_method, delivery_error, delivery_claimed_until, build_lease_until, build_checkpoint, records";

fn request_from_row(row: &Row<'_>) -> anyhow::Result<DataRequest> {
    let kind: String = row.get(2)?;
    let subject: String = row.get(3)?;
    let report: Option<String> = row.get(4)?;
    let state: String = row.get(5)?;
    let status: String = row.get(11)?;
    Ok(DataRequest {
        id: RequestId::try_from(to_u64(row.get(0)?))?,
        account: AccountId::try_from(to_u64(row.get(1)?))?,
        subject: Subject::from_parts(&kind, &subject)?,
        // The address was checked at intake; the web delivery checks it again when it connects.
        report: report.map(|r| Report::parse(&r, WebPolicy::AllowPrivate)).transpose()?,
        state: state.parse()?,
        reason: row.get(6)?,
        available: to_u64(row.get(7)?),
        created: Timestamp::from_unix(row.get(8)?),
        completed: row.get::<_, Option<i64>>(9)?.map(Timestamp::from_unix),
        expires: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_unix),
        delivery: Delivery {
            status: status.parse()?,
            attempts: u32::try_from(row.get::<_, i64>(12)?).unwrap_or(0),
            method: row.get(13)?,
            error: row.get(14)?,
            claimed_until: row.get::<_, Option<i64>>(15)?.map(Timestamp::from_unix),
        },
        lease_until: row.get::<_, Option<i64>>(16)?.map(Timestamp::from_unix),
        checkpoint: row.get(17)?,
        records: records_from(row.get(18)?)?,
    })
}

/// The record counts of a request as stored: JSON `[["section", count], …]`, or nothing.
fn records_from(text: Option<String>) -> anyhow::Result<Vec<(String, u64)>> {
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?.unwrap_or_default())
}

fn records_text(records: &[(String, u64)]) -> Option<String> {
    (!records.is_empty()).then(|| serde_json::to_string(records).unwrap_or_default())
}

fn write_request(c: &Connection, r: &DataRequest, insert: bool) -> rusqlite::Result<usize> {
    let verb = if insert { "INSERT OR IGNORE" } else { "REPLACE" };
    c.execute(
        &format!("{verb} INTO requests ({REQUEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"),
        params![
            to_i64(r.id.get()),
            to_i64(r.account.get()),
            r.subject.kind().as_str(),
            r.subject.value(),
            r.report.as_ref().map(ToString::to_string),
            r.state.as_str(),
            r.reason,
            to_i64(r.available),
            r.created.unix(),
            r.completed.map(Timestamp::unix),
            r.expires.map(Timestamp::unix),
            r.delivery.status.as_str(),
            i64::from(r.delivery.attempts),
            r.delivery.method,
            r.delivery.error,
            r.delivery.claimed_until.map(Timestamp::unix),
            r.lease_until.map(Timestamp::unix),
            r.checkpoint,
            records_text(&r.records),
        ],
    )
}

fn read_request(c: &Connection, id: RequestId) -> anyhow::Result<Option<DataRequest>> {
    let mut statement = c.prepare_cached(&format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"))?;
    let mut rows = statement.query([to_i64(id.get())])?;
    rows.next()?.map(request_from_row).transpose()
}

fn ids(c: &Connection, sql: &str, params: impl rusqlite::Params) -> anyhow::Result<Vec<RequestId>> {
    let mut statement = c.prepare(sql)?;
    let found = statement.query_map(params, |row| row.get::<_, i64>(0))?;
    found.map(|id| Ok(RequestId::try_from(to_u64(id?))?)).collect()
}

#[async_trait]
impl RequestStore for SqliteStore {
    async fn claim_key(
        &self,
        account: AccountId,
        key_hash: &str,
        claim: &KeyClaim,
        now: Timestamp,
    ) -> anyhow::Result<Option<KeyClaim>> {
        let (key, claim) = (key_hash.to_owned(), claim.clone());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored = tx
                .query_row(
                    "SELECT request, fingerprint, expires FROM idempotency WHERE account = ?1 AND key = ?2",
                    params![to_i64(account.get()), key],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?)),
                )
                .optional()?;
            if let Some((request, fingerprint, expires)) = stored
                && expires > now.unix()
            {
                let request = RequestId::try_from(to_u64(request))?;
                return Ok(Some(KeyClaim { request, fingerprint, expires: Timestamp::from_unix(expires) }));
            }
            tx.execute(
                "REPLACE INTO idempotency (account, key, request, fingerprint, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    to_i64(account.get()),
                    key,
                    to_i64(claim.request.get()),
                    claim.fingerprint,
                    claim.expires.unix()
                ],
            )?;
            tx.execute("DELETE FROM idempotency WHERE expires <= ?1", [now.unix()])?;
            tx.commit()?;
            Ok(None)
        })
        .await
    }

    async fn insert(&self, request: &DataRequest) -> anyhow::Result<bool> {
        let request = request.clone();
        self.run(move |c| Ok(write_request(c, &request, true)? == 1)).await
    }

    async fn get(&self, id: RequestId) -> anyhow::Result<Option<DataRequest>> {
        self.run(move |c| read_request(c, id)).await
    }

    async fn update(&self, id: RequestId, transition: &Transition) -> anyhow::Result<bool> {
        let transition = transition.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut request) = read_request(&tx, id)? else { return Ok(false) };
            if !transition.apply(&mut request) {
                return Ok(false);
            }
            write_request(&tx, &request, false)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn expiring(&self, now: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            ids(
                c,
                "SELECT id FROM requests WHERE state IN ('built', 'delivered') AND expires <= ?1 ORDER BY expires LIMIT ?2",
                params![now.unix(), limit],
            )
        })
        .await
    }

    async fn stuck(&self, before: Timestamp, limit: usize) -> anyhow::Result<Vec<RequestId>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |c| {
            ids(
                c,
                "SELECT id FROM requests WHERE state IN ('accepted', 'building')
                 AND COALESCE(build_lease_until, created) <= ?1 ORDER BY id LIMIT ?2",
                params![before.unix(), limit],
            )
        })
        .await
    }

    async fn unfinished(&self) -> anyhow::Result<Vec<RequestId>> {
        self.run(|c| {
            ids(
                c,
                "SELECT id FROM requests WHERE state IN ('accepted', 'building')
                 OR (state = 'built' AND delivery_status IN ('pending', 'sending')) ORDER BY created",
                [],
            )
        })
        .await
    }

    async fn requests_of(&self, account: AccountId) -> anyhow::Result<Vec<DataRequest>> {
        self.run(move |c| {
            let mut statement =
                c.prepare_cached(&format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE account = ?1 ORDER BY id"))?;
            let mut rows = statement.query([to_i64(account.get())])?;
            let mut requests = Vec::new();
            while let Some(row) = rows.next()? {
                requests.push(request_from_row(row)?);
            }
            Ok(requests)
        })
        .await
    }

    async fn forget_account(&self, account: AccountId) -> anyhow::Result<()> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let account = to_i64(account.get());
            tx.execute("DELETE FROM queue WHERE request IN (SELECT id FROM requests WHERE account = ?1)", [account])?;
            tx.execute("DELETE FROM requests WHERE account = ?1", [account])?;
            tx.execute("DELETE FROM idempotency WHERE account = ?1", [account])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::adapters::memory::MemoryRequests;
    use crate::domain::State;

    fn request(n: u64, state: State, created: i64, lease: Option<i64>) -> DataRequest {
        let id = RequestId::try_from(1_000_000_000 + n).unwrap_or_else(|e| panic!("{e}"));
        let account = AccountId::try_from(1_u64).unwrap_or_else(|e| panic!("{e}"));
        let subject = Subject::from_parts("email", "a@b.example").unwrap_or_else(|e| panic!("{e}"));
        let mut r = DataRequest::accepted(id, account, subject, None, Timestamp::from_unix(created));
        r.state = state;
        r.lease_until = lease.map(Timestamp::from_unix);
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// SQLite's query finds exactly the requests the domain's rule calls stuck, as the
        /// in-memory store (and DynamoDB's filter, tested against the emulator) does.
        #[test]
        fn sqlite_finds_the_stuck_requests_the_domain_rule_names(
            rows in proptest::collection::vec((0usize..4, 0i64..100, proptest::option::of(0i64..100)), 0..30),
            before in 0i64..100,
        ) {
            let states = [State::Accepted, State::Building, State::Built, State::Failed];
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let sqlite = SqliteStore::open(&dir.path().join("db.sqlite3")).unwrap_or_else(|e| panic!("{e:#}"));
            let memory = MemoryRequests::default();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|e| panic!("{e}"));
            let (found, expected) = runtime.block_on(async {
                for (n, (state, created, lease)) in rows.iter().enumerate() {
                    let r = request(n as u64, states[*state], *created, *lease);
                    assert!(sqlite.insert(&r).await.unwrap_or_else(|e| panic!("{e:#}")));
                    assert!(memory.insert(&r).await.unwrap_or_else(|e| panic!("{e:#}")));
                }
                let before = Timestamp::from_unix(before);
                (sqlite.stuck(before, 100).await.ok(), memory.stuck(before, 100).await.ok())
            });
            prop_assert_eq!(found, expected);
        }
    }
}
