//! A short-lived in-memory cache in front of any [`Accounts`] store for token lookups, the one
//! store read that every API call makes before its real work.
//!
//! Only found tokens are cached, so a token created a moment ago (by `datarequest account
//! create`, or in another process) is found at once. A cached entry lives for `ttl`: a token
//! deleted from the store directly keeps working in a running process (or warm Lambda
//! instance) for at most that long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::domain::{AccountId, TokenHash, WebhookSecret};
use crate::ports::Accounts;

/// The most entries kept; when full, expired entries go, and if none has expired, all do.
const CAPACITY: usize = 10_000;

/// [`Accounts`] with cached token lookups.
pub struct TokenCache {
    inner: Arc<dyn Accounts>,
    ttl: Duration,
    entries: Mutex<HashMap<TokenHash, (AccountId, Instant)>>,
}

impl TokenCache {
    /// Caches the token lookups of `inner` for `ttl`; a zero `ttl` caches nothing.
    #[must_use]
    pub fn new(inner: Arc<dyn Accounts>, ttl: Duration) -> Self {
        Self { inner, ttl, entries: Mutex::default() }
    }

    /// `inner` behind the service's cache ([`crate::config::TOKEN_CACHE_TTL`]), ready for an
    /// [`crate::App`].
    #[must_use]
    pub fn wrap(inner: impl Accounts + 'static) -> Arc<dyn Accounts> {
        Arc::new(Self::new(Arc::new(inner), crate::config::TOKEN_CACHE_TTL))
    }
}

#[async_trait]
impl Accounts for TokenCache {
    async fn create(&self, token: &TokenHash, secret: &WebhookSecret) -> anyhow::Result<AccountId> {
        self.inner.create(token, secret).await
    }

    async fn add_token(&self, account: AccountId, token: &TokenHash) -> anyhow::Result<bool> {
        self.inner.add_token(account, token).await
    }

    async fn by_token(&self, token: &TokenHash) -> anyhow::Result<Option<AccountId>> {
        let now = Instant::now();
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((account, until)) = entries.get(token)
                && now < *until
            {
                return Ok(Some(*account));
            }
        }
        let found = self.inner.by_token(token).await?;
        if let Some(account) = found
            && !self.ttl.is_zero()
        {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if entries.len() >= CAPACITY {
                entries.retain(|_, (_, until)| now < *until);
                if entries.len() >= CAPACITY {
                    entries.clear();
                }
            }
            entries.insert(*token, (account, now + self.ttl));
        }
        Ok(found)
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
        async fn webhook_secret(&self, account: AccountId) -> anyhow::Result<Option<WebhookSecret>> {
            self.store.webhook_secret(account).await
        }
        async fn add_ingest_key(&self, key: &TokenHash) -> anyhow::Result<()> {
            self.store.add_ingest_key(key).await
        }
        async fn is_ingest_key(&self, key: &TokenHash) -> anyhow::Result<bool> {
            self.store.is_ingest_key(key).await
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
    async fn an_unknown_token_is_not_cached_so_a_new_one_works_at_once() -> anyhow::Result<()> {
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
