//! Accounts and hashed access tokens in DynamoDB, keyed by `pk`: `ACCOUNT#<id>` holds the
//! webhook secret, the signing profile (`signing`; absent: Standard Webhooks) and the set of its
//! token hashes (`tokens`, so an account is deleted with its tokens without a scan),
//! `TOKEN#<sha256 hex>` the account of a token, `INGEST#<sha256 hex>` an ingest key, `COUNTER`
//! the last id, and `ERASING` the set of deleted accounts whose data is still to be erased.

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update};

use super::attributes::{Item, get_n, get_s, n, put, s};
use crate::domain::{AccountId, SigningProfile, Timestamp, TokenHash, WebhookSecret};
use crate::ports::Accounts;

/// The item holding the set of deleted accounts whose data is still to be erased.
const ERASING: &str = "ERASING";

/// The accounts table.
pub struct DynamoDbAccounts {
    client: Client,
    table: String,
}

impl DynamoDbAccounts {
    /// Uses this table (key: `pk`, a string).
    #[must_use]
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Adds an account to the set of those being erased (`ADD`) or takes it off (`DELETE`).
    async fn change_erasing(&self, action: &str, account: AccountId) -> anyhow::Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(ERASING))
            .update_expression(format!("{action} accounts :account"))
            .expression_attribute_values(":account", AttributeValue::Ns(vec![account.to_string()]))
            .send()
            .await
            .context("recording an account's erasure")?;
        Ok(())
    }

    fn put(&self, item: Item) -> anyhow::Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .context("building a put")?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// A transaction's outcome: `false` when a condition stopped it, an error for anything else.
fn cancelled_is_false<T>(
    written: Result<T, aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>>,
    what: &'static str,
) -> anyhow::Result<bool> {
    match written {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.as_service_error(), Some(TransactWriteItemsError::TransactionCanceledException(_))) => {
            Ok(false)
        }
        Err(e) => Err(anyhow::Error::new(e).context(what)),
    }
}

fn token_item(token: &TokenHash, account: AccountId) -> Item {
    Item::from([("pk".to_owned(), s(format!("TOKEN#{}", token.to_hex()))), ("account".to_owned(), n(account))])
}

#[async_trait]
impl Accounts for DynamoDbAccounts {
    async fn create(&self, token: &TokenHash, secret: &WebhookSecret) -> anyhow::Result<AccountId> {
        let counter = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s("COUNTER"))
            .update_expression("ADD last_id :one")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .context("allocating an account id")?;
        let id: u64 = get_n(&counter.attributes.unwrap_or_default(), "last_id")?;
        let account = AccountId::try_from(id)?;
        let account_item = Item::from([
            ("pk".to_owned(), s(format!("ACCOUNT#{account}"))),
            ("webhook_secret".to_owned(), s(secret.expose())),
            ("created".to_owned(), n(Timestamp::now().unix())),
            ("tokens".to_owned(), AttributeValue::Ss(vec![token.to_hex()])),
        ]);
        self.client
            .transact_write_items()
            .transact_items(self.put(account_item)?)
            .transact_items(self.put(token_item(token, account))?)
            .send()
            .await
            .context("storing an account")?;
        Ok(account)
    }

    async fn add_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        // The token and its place in the account's set, only while the account exists.
        let listed = Update::builder()
            .table_name(&self.table)
            .key("pk", s(format!("ACCOUNT#{account}")))
            .update_expression("ADD tokens :token")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":token", AttributeValue::Ss(vec![token.to_hex()]))
            .build()
            .context("building an update")?;
        let stored = Put::builder()
            .table_name(&self.table)
            .set_item(Some(token_item(token, account)))
            .build()
            .context("building a put")?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(listed).build())
            .transact_items(TransactWriteItem::builder().put(stored).build())
            .send()
            .await;
        cancelled_is_false(written, "storing a token")
    }

    async fn revoke_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        let gone = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(format!("TOKEN#{}", token.to_hex())))
            .condition_expression("account = :account")
            .expression_attribute_values(":account", n(account))
            .build()
            .context("building a delete")?;
        let unlisted = Update::builder()
            .table_name(&self.table)
            .key("pk", s(format!("ACCOUNT#{account}")))
            .update_expression("DELETE tokens :token")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":token", AttributeValue::Ss(vec![token.to_hex()]))
            .build()
            .context("building an update")?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(gone).build())
            .transact_items(TransactWriteItem::builder().update(unlisted).build())
            .send()
            .await;
        cancelled_is_false(written, "revoking a token")
    }

    async fn delete_account(&self, account: AccountId) -> anyhow::Result<bool> {
        let key = format!("ACCOUNT#{account}");
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&key))
            .consistent_read(true)
            .send()
            .await
            .context("reading an account")?;
        let Some(item) = output.item else { return Ok(false) };
        // The erasure is recorded first: an account half-deleted by a failure is still erased.
        self.change_erasing("ADD", account).await?;
        let tokens = item.get("tokens").and_then(|v| v.as_ss().ok()).cloned().unwrap_or_default();
        // Tokens first: an account left half-deleted by a failure still takes the command again.
        for hash in tokens {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(format!("TOKEN#{hash}")))
                .send()
                .await
                .context("revoking a token")?;
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(key))
            .send()
            .await
            .context("deleting an account")?;
        Ok(true)
    }

    async fn erasing(&self) -> anyhow::Result<Vec<AccountId>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(ERASING))
            .consistent_read(true)
            .send()
            .await
            .context("reading the accounts being erased")?;
        let ids = output.item.as_ref().and_then(|item| item.get("accounts")).and_then(|v| v.as_ns().ok());
        ids.into_iter().flatten().map(|id| Ok(AccountId::try_from(id.parse::<u64>()?)?)).collect()
    }

    async fn erased(&self, account: AccountId) -> anyhow::Result<()> {
        self.change_erasing("DELETE", account).await
    }

    async fn by_token(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("TOKEN#{}", token.to_hex())))
            .send()
            .await
            .context("looking up a token")?;
        output.item.map(|item| Ok(AccountId::try_from(get_n::<u64>(&item, "account")?)?)).transpose()
    }

    async fn webhook_secret(&self, account: AccountId) -> anyhow::Result<Option<WebhookSecret>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("ACCOUNT#{account}")))
            .send()
            .await
            .context("reading an account")?;
        output.item.map(|item| Ok(WebhookSecret::parse(get_s(&item, "webhook_secret")?)?)).transpose()
    }

    async fn signing_profile(&self, account: AccountId) -> anyhow::Result<Option<SigningProfile>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("ACCOUNT#{account}")))
            .projection_expression("pk, signing")
            .send()
            .await
            .context("reading an account")?;
        output
            .item
            .map(|item| match item.get("signing").and_then(|v| v.as_s().ok()) {
                Some(name) => Ok(SigningProfile::parse(name)?),
                None => Ok(SigningProfile::default()),
            })
            .transpose()
    }

    async fn set_signing_profile(&self, account: AccountId, profile: SigningProfile) -> anyhow::Result<bool> {
        let written = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("ACCOUNT#{account}")))
            .update_expression("SET signing = :profile")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":profile", s(profile.as_str()))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(anyhow::Error::new(e).context("setting an account's signing profile")),
        }
    }

    async fn add_ingest_key(&self, key: &TokenHash) -> anyhow::Result<()> {
        let item = Item::from([
            ("pk".to_owned(), s(format!("INGEST#{}", key.to_hex()))),
            ("created".to_owned(), n(Timestamp::now().unix())),
        ]);
        put(&self.client, &self.table, item, "an ingest key").await
    }

    async fn is_ingest_key(&self, key: &TokenHash) -> anyhow::Result<bool> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("INGEST#{}", key.to_hex())))
            .send()
            .await
            .context("looking up an ingest key")?;
        Ok(output.item.is_some())
    }

    async fn exists(&self, account: AccountId) -> anyhow::Result<bool> {
        // A deleted account's item is gone, and its id is never given out again.
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("ACCOUNT#{account}")))
            .projection_expression("pk")
            .consistent_read(true)
            .send()
            .await
            .context("reading an account")?;
        Ok(output.item.is_some())
    }
}
