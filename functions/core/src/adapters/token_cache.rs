//! A short-lived in-memory cache in front of any [`Accounts`] store for token lookups, the one
//! store read that every API call makes before its real work.
//!
//! A found token is cached for `ttl` (`DATAREQUEST_TOKEN_CACHE_SECS`: 5 s on AWS, 1 s in local
//! mode): a token revoked in another process (or by the operator's command) keeps working for
//! reads in a running process (or warm Lambda instance) for at most that long; one revoked
//! through this process stops at once. [`Accounts::by_token_uncached`] (what a new data request
//! is checked with) never reads the cache, so a revoked token submits nothing. An unknown token
//! is remembered for a few seconds ([`MISS_TTL`], or `ttl` when shorter), so a flood of wrong
//! tokens costs the store a read each only now and then; a new token is random, so no miss can
//! hide it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::domain::{AccountId, SigningProfile, TokenHash, WebhookSecret};
use crate::ports::Accounts;

/// The most entries kept; when full, expired entries go, and if none has expired, all do.
const CAPACITY: usize = 10_000;
/// How long an unknown token is remembered as unknown.
pub const MISS_TTL: Duration = Duration::from_secs(5);

/// [`Accounts`] with cached token lookups.
pub struct TokenCache {
    inner: Arc<dyn Accounts>,
    ttl: Duration,
    entries: Mutex<HashMap<TokenHash, (Option<AccountId>, Instant)>>,
}

impl TokenCache {
    /// Caches the token lookups of `inner` for `ttl`; a zero `ttl` caches nothing.
    #[must_use]
    pub fn new(inner: Arc<dyn Accounts>, ttl: Duration) -> Self {
        Self { inner, ttl, entries: Mutex::default() }
    }

    fn forget(&self, matches: impl Fn(&TokenHash, Option<AccountId>) -> bool) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|token, (account, _)| !matches(token, *account));
    }

    fn remember(&self, token: &TokenHash, found: Option<AccountId>, now: Instant) {
        let ttl = if found.is_some() { self.ttl } else { MISS_TTL.min(self.ttl) };
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(*token, (found, now + ttl));
    }
}

#[async_trait]
impl Accounts for TokenCache {
    async fn create(&self, token: &TokenHash, secret: &WebhookSecret) -> anyhow::Result<AccountId> {
        self.inner.create(token, secret).await
    }

    async fn add_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        self.forget(|t, _| t == token);
        self.inner.add_token(account, token).await
    }

    async fn by_token(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>> {
        let now = Instant::now();
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((account, until)) = entries.get(token)
                && now < *until
            {
                return Ok(*account);
            }
        }
        let found = self.inner.by_token(token).await?;
        self.remember(token, found, now);
        Ok(found)
    }

    async fn by_token_uncached(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>> {
        let now = Instant::now();
        let found = self.inner.by_token_uncached(token).await?;
        // What the store says now is the freshest answer: the reads after it get it too.
        self.remember(token, found, now);
        Ok(found)
    }

    async fn revoke_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        self.forget(|t, _| t == token);
        self.inner.revoke_token(account, token).await
    }

    async fn delete_account(&self, account: AccountId) -> anyhow::Result<bool> {
        self.forget(|_, a| a == Some(account));
        self.inner.delete_account(account).await
    }

    async fn erasing(&self) -> anyhow::Result<Vec<AccountId>> {
        self.inner.erasing().await
    }

    async fn erased(&self, account: AccountId) -> anyhow::Result<()> {
        self.inner.erased(account).await
    }

    async fn add_ingest_key(&self, key: &TokenHash) -> anyhow::Result<()> {
        self.inner.add_ingest_key(key).await
    }

    async fn is_ingest_key(&self, key: &TokenHash) -> anyhow::Result<bool> {
        self.inner.is_ingest_key(key).await
    }

    async fn webhook_secret(&self, account: AccountId) -> anyhow::Result<Option<WebhookSecret>> {
        self.inner.webhook_secret(account).await
    }

    async fn signing_profile(&self, account: AccountId) -> anyhow::Result<Option<SigningProfile>> {
        self.inner.signing_profile(account).await
    }

    async fn set_signing_profile(&self, account: AccountId, profile: SigningProfile) -> anyhow::Result<bool> {
        self.inner.set_signing_profile(account, profile).await
    }

    async fn exists(&self, account: AccountId) -> anyhow::Result<bool> {
        self.inner.exists(account).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::adapters::memory::MemoryAccounts;
    use crate::domain::AccessToken;

    /// Counts the lookups that reach the store.
    #[derive(Default)]
    struct Counting {
        store: MemoryAccounts,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl Accounts for Counting {
        async fn create(&self, token: &TokenHash, secret: &WebhookSecret) -> anyhow::Result<AccountId> {
            self.store.create(token, secret).await
        }
        async fn add_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
            self.store.add_token(account, token).await
        }
        async fn by_token(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.store.by_token(token).await
        }
        async fn revoke_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
            self.store.revoke_token(account, token).await
        }
        async fn delete_account(&self, account: AccountId) -> anyhow::Result<bool> {
            self.store.delete_account(account).await
        }
        async fn erasing(&self) -> anyhow::Result<Vec<AccountId>> {
            self.store.erasing().await
        }
        async fn erased(&self, account: AccountId) -> anyhow::Result<()> {
            self.store.erased(account).await
        }
        async fn webhook_secret(&self, account: AccountId) -> anyhow::Result<Option<WebhookSecret>> {
            self.store.webhook_secret(account).await
        }
        async fn signing_profile(&self, account: AccountId) -> anyhow::Result<Option<SigningProfile>> {
            self.store.signing_profile(account).await
        }
        async fn set_signing_profile(&self, account: AccountId, profile: SigningProfile) -> anyhow::Result<bool> {
            self.store.set_signing_profile(account, profile).await
        }
        async fn add_ingest_key(&self, key: &TokenHash) -> anyhow::Result<()> {
            self.store.add_ingest_key(key).await
        }
        async fn is_ingest_key(&self, key: &TokenHash) -> anyhow::Result<bool> {
            self.store.is_ingest_key(key).await
        }
        async fn exists(&self, account: AccountId) -> anyhow::Result<bool> {
            self.store.exists(account).await
        }
    }

    fn cache(ttl: Duration) -> (Arc<Counting>, TokenCache) {
        let store = Arc::new(Counting::default());
        (store.clone(), TokenCache::new(store, ttl))
    }

    #[tokio::test]
    async fn a_found_token_is_looked_up_in_the_store_once_per_ttl() -> anyhow::Result<()> {
        let (store, cache) = cache(Duration::from_secs(60));
        let token = AccessToken::generate().hash();
        let account = cache.create(&token, &WebhookSecret::generate()).await?;
        for _ in 0..3 {
            assert_eq!(cache.by_token(&token).await?, Some(account));
        }
        assert_eq!(store.lookups.load(Ordering::SeqCst), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_flood_of_one_unknown_token_reaches_the_store_once() -> anyhow::Result<()> {
        let (store, cache) = cache(Duration::from_secs(60));
        let unknown = AccessToken::generate().hash();
        for _ in 0..100 {
            assert_eq!(cache.by_token(&unknown).await?, None);
        }
        assert_eq!(store.lookups.load(Ordering::SeqCst), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_token_revoked_or_an_account_deleted_through_the_cache_stops_at_once() -> anyhow::Result<()> {
        let (_, cache) = cache(Duration::from_secs(60));
        let (first, second) = (AccessToken::generate().hash(), AccessToken::generate().hash());
        let account = cache.create(&first, &WebhookSecret::generate()).await?;
        assert!(cache.add_token(account, &second).await?);
        assert_eq!(cache.by_token(&first).await?, Some(account));
        assert_eq!(cache.by_token(&second).await?, Some(account));
        assert!(cache.revoke_token(account, &first).await?);
        assert_eq!(cache.by_token(&first).await?, None);
        assert_eq!(cache.by_token(&second).await?, Some(account), "the other token still works");
        assert!(cache.delete_account(account).await?);
        assert_eq!(cache.by_token(&second).await?, None);
        assert!(!cache.add_token(account, &first).await?, "a deleted account takes no token");
        Ok(())
    }

    #[tokio::test]
    async fn a_token_added_through_the_cache_works_at_once_even_after_a_miss() -> anyhow::Result<()> {
        let (store, cache) = cache(Duration::from_secs(60));
        let first = AccessToken::generate().hash();
        let account = cache.create(&first, &WebhookSecret::generate()).await?;
        let second = AccessToken::generate().hash();
        assert_eq!(cache.by_token(&second).await?, None);
        assert!(cache.add_token(account, &second).await?);
        assert_eq!(cache.by_token(&second).await?, Some(account));
        assert_eq!(store.lookups.load(Ordering::SeqCst), 2);
        Ok(())
    }

    #[tokio::test]
    async fn an_uncached_lookup_reads_the_store_and_sees_a_revocation_made_elsewhere() -> anyhow::Result<()> {
        let (store, cache) = cache(Duration::from_secs(60));
        let token = AccessToken::generate().hash();
        let account = cache.create(&token, &WebhookSecret::generate()).await?;
        assert_eq!(cache.by_token(&token).await?, Some(account));
        // Revoked behind the cache's back, as another process does.
        assert!(store.store.revoke_token(account, &token).await?);
        assert_eq!(cache.by_token(&token).await?, Some(account), "a read may trust the cache");
        assert_eq!(cache.by_token_uncached(&token).await?, None, "an uncached lookup never does");
        assert_eq!(cache.by_token(&token).await?, None, "and the cache learns from it");
        assert_eq!(store.lookups.load(Ordering::SeqCst), 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_zero_ttl_caches_nothing() -> anyhow::Result<()> {
        let (store, cache) = cache(Duration::ZERO);
        let token = AccessToken::generate().hash();
        cache.create(&token, &WebhookSecret::generate()).await?;
        cache.by_token(&token).await?;
        cache.by_token(&token).await?;
        assert_eq!(store.lookups.load(Ordering::SeqCst), 2);
        Ok(())
    }
}
