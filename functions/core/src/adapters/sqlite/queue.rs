//! The durable build queue of local mode: a table of request ids with a visibility time, like
//! an SQS queue (at-least-once, hidden while received, visible again after a delay).

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, now_millis, to_i64, to_u64};
use crate::domain::RequestId;
use crate::ports::{BuildQueue, QueueConsumer, QueueMessage, RequestStore};

impl SqliteStore {
    /// Takes the next visible queue message, hiding it for `visibility`.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn receive(&self, visibility: Duration) -> anyhow::Result<Option<QueueMessage>> {
        let hide = i64::try_from(visibility.as_millis()).unwrap_or(i64::MAX);
        self.run(move |c| {
            let now = now_millis();
            let row = c
                .query_row(
                    "UPDATE queue SET visible_at = ?1 + ?2, receives = receives + 1
                     WHERE request = (SELECT request FROM queue WHERE visible_at <= ?1 ORDER BY visible_at, request LIMIT 1)
                     RETURNING request, receives",
                    params![now, hide],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                )
                .optional()?;
            row.map(|(id, receives)| {
                Ok(QueueMessage {
                    request: RequestId::try_from(to_u64(id))?,
                    receives: u32::try_from(receives).unwrap_or(u32::MAX),
                    handle: String::new(),
                })
            })
            .transpose()
        })
        .await
    }

    /// At start: the previous process is gone, so messages it held are visible again, the
    /// builds and deliveries it held are free to take at once (not after their lease or claim
    /// runs out), and requests that lost their message (a crash between store and queue) get one.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn recover(&self) -> anyhow::Result<usize> {
        let unfinished = RequestStore::unfinished(self).await?;
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_millis();
            tx.execute("UPDATE queue SET visible_at = ?1 WHERE visible_at > ?1 AND receives > 0", [now])?;
            tx.execute("UPDATE requests SET build_lease_until = NULL WHERE state = 'building'", [])?;
            tx.execute(
                "UPDATE requests SET delivery_claimed_until = NULL WHERE state = 'built' AND delivery_status = 'sending'",
                [],
            )?;
            let mut requeued = 0;
            for id in &unfinished {
                requeued += tx.execute(
                    "INSERT OR IGNORE INTO queue (request, visible_at, receives) VALUES (?1, ?2, 0)",
                    params![to_i64(id.get()), now],
                )?;
            }
            tx.commit()?;
            Ok(requeued)
        })
        .await
    }

    /// Milliseconds until the next message becomes visible, if any is queued.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn next_visible_in(&self) -> anyhow::Result<Option<Duration>> {
        self.run(|c| {
            let next: Option<i64> = c.query_row("SELECT MIN(visible_at) FROM queue", [], |row| row.get(0))?;
            Ok(next.map(|at| Duration::from_millis(to_u64(at - now_millis()))))
        })
        .await
    }

    /// Resolves when something was enqueued (or a retry scheduled).
    pub async fn queued(&self) {
        self.queued.notified().await;
    }
}

#[async_trait]
impl BuildQueue for SqliteStore {
    async fn enqueue(&self, id: RequestId) -> anyhow::Result<()> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO queue (request, visible_at, receives) VALUES (?1, ?2, 0)
                 ON CONFLICT (request) DO UPDATE SET visible_at = MIN(visible_at, excluded.visible_at)",
                params![to_i64(id.get()), now_millis()],
            )?;
            Ok(())
        })
        .await?;
        self.queued.notify_waiters();
        Ok(())
    }
}

/// Local mode's consumer side: a message is the queue's row of its request.
#[async_trait]
impl QueueConsumer for SqliteStore {
    async fn acknowledge(&self, message: &QueueMessage) -> anyhow::Result<()> {
        let id = to_i64(message.request.get());
        self.run(move |c| Ok(c.execute("DELETE FROM queue WHERE request = ?1", [id]).map(drop)?)).await
    }

    async fn retry_after(&self, message: &QueueMessage, delay: Duration) -> anyhow::Result<()> {
        self.show_after(message.request, delay, false).await
    }

    async fn enqueue_after(&self, message: &QueueMessage, delay: Duration) -> anyhow::Result<()> {
        self.show_after(message.request, delay, true).await
    }
}

impl SqliteStore {
    /// Makes a request's message visible again after `delay`; `fresh` starts its receive count
    /// again, as a new message would.
    async fn show_after(&self, id: RequestId, delay: Duration, fresh: bool) -> anyhow::Result<()> {
        let at = now_millis().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        self.run(move |c| {
            let sql = if fresh {
                "UPDATE queue SET visible_at = ?2, receives = 0 WHERE request = ?1"
            } else {
                "UPDATE queue SET visible_at = ?2 WHERE request = ?1"
            };
            Ok(c.execute(sql, params![to_i64(id.get()), at]).map(drop)?)
        })
        .await?;
        self.queued.notify_waiters();
        Ok(())
    }
}
