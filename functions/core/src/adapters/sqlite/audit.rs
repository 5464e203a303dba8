//! The audit log: one row per entry, appended in order, read oldest first.

use async_trait::async_trait;
use rusqlite::params;

use super::{SqliteStore, to_i64};
use crate::domain::{AccountId, AuditEntry, RequestId, Timestamp};
use crate::ports::AuditLog;

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append(&self, account: AccountId, request: RequestId, entry: &AuditEntry) -> anyhow::Result<()> {
        let (at, text) = (entry.at.unix(), serde_json::to_string(entry)?);
        self.run(move |c| {
            c.prepare_cached("INSERT INTO audit (account, request, at, entry) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![to_i64(account.get()), to_i64(request.get()), at, text])?;
            Ok(())
        })
        .await
    }

    async fn entries(&self, account: AccountId, request: RequestId) -> anyhow::Result<Vec<AuditEntry>> {
        self.run(move |c| {
            let mut statement =
                c.prepare_cached("SELECT entry FROM audit WHERE request = ?1 AND account = ?2 ORDER BY seq")?;
            let rows = statement
                .query_map(params![to_i64(request.get()), to_i64(account.get())], |row| row.get::<_, String>(0))?;
            rows.map(|text| Ok(serde_json::from_str(&text?)?)).collect()
        })
        .await
    }

    async fn forget_before(&self, cutoff: Timestamp) -> anyhow::Result<usize> {
        self.forget_audit_before(cutoff).await
    }
}

impl SqliteStore {
    /// Deletes audit entries older than `cutoff` (the audit retention). Returns how many.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn forget_audit_before(&self, cutoff: Timestamp) -> anyhow::Result<usize> {
        self.run(move |c| Ok(c.execute("DELETE FROM audit WHERE at < ?1", [cutoff.unix()])?)).await
    }
}
