//! What replicas sharing one PostgreSQL registry coordinate through it: a feed of the changes
//! other replicas make (`LISTEN` on the channel the registry's trigger notifies), and locks
//! that hold across replicas (session-level advisory locks).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use llama_stack_core::{Error, RegistryChange, Result, StoreLock};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use tokio::sync::broadcast;

pub const CHANNEL: &str = "llama_stack_registry";

/// The change feed, started by the first subscriber and shared by the rest. `origin` is the
/// `application_name` of this process's connections: its own writes are not announced to it.
#[derive(Clone)]
pub struct Feed {
    origin: Arc<str>,
    sender: Arc<OnceLock<broadcast::Sender<RegistryChange>>>,
}

impl Feed {
    pub fn new(origin: String) -> Self {
        Feed {
            origin: origin.into(),
            sender: Default::default(),
        }
    }

    pub fn subscribe(&self, pool: &PgPool) -> broadcast::Receiver<RegistryChange> {
        let sender = self.sender.get_or_init(|| {
            let (sender, _) = broadcast::channel(1024);
            tokio::spawn(listen(pool.clone(), sender.clone(), self.origin.clone()));
            sender
        });
        sender.subscribe()
    }
}

/// Forwards notifications until every subscriber is gone. A lost connection is re-opened and
/// announced as a resync, since notifications sent meanwhile are lost.
async fn listen(pool: PgPool, sender: broadcast::Sender<RegistryChange>, origin: Arc<str>) {
    let mut listener: Option<PgListener> = None;
    loop {
        if sender.receiver_count() == 0 && listener.is_some() {
            return;
        }
        let active = match listener.as_mut() {
            Some(l) => l,
            None => match connect(&pool).await {
                Ok(l) => {
                    let _ = sender.send(RegistryChange::Resync);
                    listener.insert(l)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Cannot listen for registry changes; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        match active.try_recv().await {
            Ok(Some(notification)) => {
                let mut parts = notification.payload().splitn(3, '\t');
                if let (Some(from), Some(kind), Some(identifier)) =
                    (parts.next(), parts.next(), parts.next())
                    && from != &*origin
                {
                    let _ = sender.send(RegistryChange::Object {
                        kind: kind.to_string(),
                        identifier: identifier.to_string(),
                    });
                }
            }
            // The connection dropped; the listener reconnects on the next call.
            Ok(None) => {
                let _ = sender.send(RegistryChange::Resync);
            }
            Err(err) => {
                tracing::warn!(error = %err, "Registry change feed failed; reconnecting");
                listener = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(|e| Error::internal(format!("registry change feed: {e}")))?;
    listener
        .listen(CHANNEL)
        .await
        .map_err(|e| Error::internal(format!("registry change feed: {e}")))?;
    Ok(listener)
}

/// A session-level advisory lock on a connection of its own: a lock may be held for a whole
/// agent turn, and holding pooled connections that long would starve the pool.
struct AdvisoryLock {
    conn: Option<PgConnection>,
    key: String,
}

pub async fn lock(pool: &PgPool, key: &str) -> Result<StoreLock> {
    let options = pool.connect_options();
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(|e| Error::internal(format!("registry lock: {e}")))?;
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(&mut conn)
        .await
        .map_err(|e| Error::internal(format!("registry lock '{key}': {e}")))?;
    Ok(Box::new(AdvisoryLock {
        conn: Some(conn),
        key: key.to_string(),
    }))
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        // Unlocked and closed at once where a runtime is at hand; otherwise the connection is
        // dropped, and PostgreSQL releases a session's locks when the session ends.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
                    .bind(&key)
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            });
        }
    }
}
