//! Accounts (with their signing profiles), hashed access tokens and hashed ingest keys.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, to_i64, to_u64};
use crate::domain::{AccountId, SigningProfile, Timestamp, TokenHash, WebhookSecret};
use crate::ports::Accounts;

#[async_trait]
impl Accounts for SqliteStore {
    async fn create(&self, token: &TokenHash, secret: &WebhookSecret) -> anyhow::Result<AccountId> {
        let (hash, secret) = (token.to_hex(), secret.expose().to_owned());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO accounts (webhook_secret, created) VALUES (?1, ?2)",
                params![secret, Timestamp::now().unix()],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute("INSERT INTO tokens (hash, account) VALUES (?1, ?2)", params![hash, id])?;
            tx.commit()?;
            Ok(AccountId::try_from(to_u64(id))?)
        })
        .await
    }

    async fn add_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        let hash = token.to_hex();
        self.run(move |c| {
            let exists: bool =
                c.query_row("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)", [to_i64(account.get())], |row| {
                    row.get(0)
                })?;
            if exists {
                c.execute(
                    "INSERT OR IGNORE INTO tokens (hash, account) VALUES (?1, ?2)",
                    params![hash, to_i64(account.get())],
                )?;
            }
            Ok(exists)
        })
        .await
    }

    async fn revoke_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        let hash = token.to_hex();
        self.run(move |c| {
            Ok(c.execute("DELETE FROM tokens WHERE hash = ?1 AND account = ?2", params![hash, to_i64(account.get())])?
                == 1)
        })
        .await
    }

    async fn delete_account(&self, account: AccountId) -> anyhow::Result<bool> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM tokens WHERE account = ?1", [to_i64(account.get())])?;
            let gone = tx.execute("DELETE FROM accounts WHERE id = ?1", [to_i64(account.get())])? == 1;
            if gone {
                tx.execute("INSERT OR IGNORE INTO erasing (account) VALUES (?1)", [to_i64(account.get())])?;
            }
            tx.commit()?;
            Ok(gone)
        })
        .await
    }

    async fn erasing(&self) -> anyhow::Result<Vec<AccountId>> {
        self.run(|c| {
            let mut rows = c.prepare("SELECT account FROM erasing ORDER BY account")?;
            let ids = rows.query_map([], |row| row.get::<_, i64>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
            ids.into_iter().map(|id| Ok(AccountId::try_from(to_u64(id))?)).collect()
        })
        .await
    }

    async fn erased(&self, account: AccountId) -> anyhow::Result<()> {
        self.run(move |c| {
            c.execute("DELETE FROM erasing WHERE account = ?1", [to_i64(account.get())])?;
            Ok(())
        })
        .await
    }

    async fn by_token(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>> {
        let hash = token.to_hex();
        self.run(move |c| {
            let id: Option<i64> = c
                .prepare_cached("SELECT account FROM tokens WHERE hash = ?1")?
                .query_row([hash], |row| row.get(0))
                .optional()?;
            id.map(|id| Ok(AccountId::try_from(to_u64(id))?)).transpose()
        })
        .await
    }

    async fn webhook_secret(&self, account: AccountId) -> anyhow::Result<Option<WebhookSecret>> {
        self.run(move |c| {
            let text: Option<String> = c
                .query_row("SELECT webhook_secret FROM accounts WHERE id = ?1", [to_i64(account.get())], |row| {
                    row.get(0)
                })
                .optional()?;
            text.map(|t| Ok(WebhookSecret::parse(&t)?)).transpose()
        })
        .await
    }

    async fn signing_profile(&self, account: AccountId) -> anyhow::Result<Option<SigningProfile>> {
        self.run(move |c| {
            let stored: Option<Option<String>> = c
                .query_row("SELECT signing FROM accounts WHERE id = ?1", [to_i64(account.get())], |row| row.get(0))
                .optional()?;
            // No profile stored: the default, as before profiles existed.
            stored.map(|p| p.map_or(Ok(SigningProfile::default()), |p| Ok(SigningProfile::parse(&p)?))).transpose()
        })
        .await
    }

    async fn set_signing_profile(&self, account: AccountId, profile: SigningProfile) -> anyhow::Result<bool> {
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE accounts SET signing = ?1 WHERE id = ?2",
                params![profile.as_str(), to_i64(account.get())],
            )? == 1)
        })
        .await
    }

    async fn add_ingest_key(&self, key: &TokenHash) -> anyhow::Result<()> {
        let hash = key.to_hex();
        self.run(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO ingest_keys (hash, created) VALUES (?1, ?2)",
                params![hash, Timestamp::now().unix()],
            )?;
            Ok(())
        })
        .await
    }

    async fn is_ingest_key(&self, key: &TokenHash) -> anyhow::Result<bool> {
        let hash = key.to_hex();
        self.run(move |c| {
            Ok(c.prepare_cached("SELECT EXISTS (SELECT 1 FROM ingest_keys WHERE hash = ?1)")?
                .query_row([hash], |row| row.get(0))?)
        })
        .await
    }

    async fn exists(&self, account: AccountId) -> anyhow::Result<bool> {
        // A deleted account's row is gone, and its id is never given out again.
        self.run(move |c| {
            Ok(c.prepare_cached("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ?1)")?
                .query_row([to_i64(account.get())], |row| row.get(0))?)
        })
        .await
    }
}
