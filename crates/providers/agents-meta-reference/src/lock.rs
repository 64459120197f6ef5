//! The lock a turn holds on its session from before it reads the history until it is stored.
//!
//! The store's lock ([`RegistryStore::lock`]) serialises turns across every replica sharing
//! the metadata store. On PostgreSQL it is an advisory lock that keeps a pooled connection for
//! as long as it is held *or waited for*, so the turns of one session waiting on this replica
//! first queue on a mutex here: at most one of them waits in the database.
//!
//! The lock must be taken in the turn's own task, never in a request handler: a handler is
//! dropped when its client goes away, and a lock request abandoned half-way must not be able
//! to leave a connection holding the lock.

use std::collections::HashMap;
use std::sync::Arc;

use llama_stack_core::{RegistryStore, Result, StoreLock};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Per-session mutexes of this process.
#[derive(Default)]
pub(crate) struct LocalLocks(std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>);

/// Held for a whole turn. The store's lock goes first (fields drop in order), so a turn of
/// another replica may start while the next one here is still queued.
pub(crate) struct SessionLock {
    _store: StoreLock,
    _local: OwnedMutexGuard<()>,
}

/// The lock's name in the store: one per session, apart from every other user of the store.
pub(crate) fn key(agent_id: &str, session_id: &str) -> String {
    format!("agents:turns:{agent_id}:{session_id}")
}

impl LocalLocks {
    pub(crate) async fn lock(
        &self,
        store: &dyn RegistryStore,
        agent_id: &str,
        session_id: &str,
    ) -> Result<SessionLock> {
        let key = key(agent_id, session_id);
        let mutex = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // Sessions nobody holds or waits for are forgotten, so the map stays small.
            if map.len() > 256 {
                map.retain(|_, m| Arc::strong_count(m) > 1);
            }
            map.entry(key.clone()).or_default().clone()
        };
        let local = mutex.lock_owned().await;
        let store = store.lock(&key).await?;
        Ok(SessionLock {
            _store: store,
            _local: local,
        })
    }
}
