//! Leases on background jobs (file batches here, background responses in the responses
//! provider) kept in the job's own record, so that replicas sharing one metadata store run
//! each job once and take over the jobs of a replica that died.
//!
//! The replica running a job writes `"lease": {"holder", "expires_at_ms"}` into its record and
//! renews it while the job runs; every replica scans for unfinished jobs whose lease expired
//! and claims them under `RegistryStore::lock`, re-reading the record inside the lock, so two
//! replicas never both claim one lease. Every other write of a leased record takes the same
//! lock, so a renewal never brings back a state another writer replaced. Expiry compares the
//! replicas' wall clocks: they must agree to well under the lease.

use std::sync::Arc;
use std::time::Duration;

use llama_stack_core::{RegistryStore, Result};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// How long a lease lasts without renewal, unless `LLAMA_STACK_LEASE_SECONDS` says otherwise.
pub const LEASE_SECONDS: f64 = 15.0;
pub const LEASE_ENV: &str = "LLAMA_STACK_LEASE_SECONDS";

/// The lease length. Renewals and scans come three times per lease, so one missed renewal
/// loses nothing and a dead replica's jobs wait at most a lease and a third.
pub fn lease_duration() -> Duration {
    let seconds = std::env::var(LEASE_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(LEASE_SECONDS);
    Duration::from_secs_f64(seconds)
}

pub fn heartbeat_interval() -> Duration {
    lease_duration() / 3
}

pub fn scan_interval() -> Duration {
    lease_duration() / 3
}

/// A new holder id: one per service, so one per process in a server.
pub fn new_holder() -> String {
    format!("holder_{}", uuid::Uuid::new_v4().simple())
}

/// The holder of this process's file batches.
pub(crate) fn process_holder() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(new_holder)
}

/// The lock a job's record is written under.
pub fn lock_key(kind: &str, id: &str) -> String {
    format!("lease:{kind}:{id}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn holder_of(record: &Value) -> Option<&str> {
    record["lease"]["holder"].as_str()
}

/// True when nobody holds the job: no lease (a record from before leases), or one run out.
pub fn is_expired(record: &Value) -> bool {
    record["lease"]["expires_at_ms"]
        .as_i64()
        .is_none_or(|at| at <= now_ms())
}

/// Gives `record` to `holder` for one lease from now.
pub fn set_lease(record: &mut Value, holder: &str) {
    if let Value::Object(map) = record {
        let expires = now_ms() + lease_duration().as_millis() as i64;
        map.insert(
            "lease".into(),
            json!({"holder": holder, "expires_at_ms": expires}),
        );
    }
}

pub fn clear_lease(record: &mut Value) {
    if let Value::Object(map) = record {
        map.remove("lease");
    }
}

/// Rewrites one record under its lock: `change` sees the record as stored now and answers
/// what to write, or `None` to leave it. Answers what was written.
pub async fn update(
    store: &dyn RegistryStore,
    kind: &str,
    id: &str,
    change: impl FnOnce(Option<Value>) -> Option<Value>,
) -> Result<Option<Value>> {
    let _lock = store.lock(&lock_key(kind, id)).await?;
    let current = store.get(kind, id).await?;
    match change(current) {
        Some(value) => {
            store.put(kind, id, &value).await?;
            Ok(Some(value))
        }
        None => Ok(None),
    }
}

/// Takes the job for `holder` if it is still unfinished and nobody holds it; answers the
/// claimed record.
pub async fn claim(
    store: &dyn RegistryStore,
    kind: &str,
    id: &str,
    holder: &str,
    unfinished: impl Fn(&Value) -> bool,
) -> Result<Option<Value>> {
    update(store, kind, id, |current| {
        let mut record = current.filter(|r| unfinished(r) && is_expired(r))?;
        set_lease(&mut record, holder);
        Some(record)
    })
    .await
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// The job finished or its record went: nothing to hold.
    Ended,
    /// Another holder claimed it (this one's lease ran out): this one must stop working on it.
    Taken,
}

/// Extends `holder`'s lease.
pub async fn renew(
    store: &dyn RegistryStore,
    kind: &str,
    id: &str,
    holder: &str,
    unfinished: impl Fn(&Value) -> bool,
) -> Result<Renewal> {
    let mut outcome = Renewal::Ended;
    update(store, kind, id, |current| {
        let mut record = current.filter(|r| unfinished(r))?;
        if holder_of(&record).is_some_and(|h| h != holder) {
            outcome = Renewal::Taken;
            return None;
        }
        outcome = Renewal::Renewed;
        set_lease(&mut record, holder);
        Some(record)
    })
    .await?;
    Ok(outcome)
}

/// Runs `work` while `holder` holds the lease of job `kind::id`: renews the lease meanwhile,
/// and stops `work` when another holder took the job over (answering `None`).
pub async fn while_held<T>(
    store: Arc<dyn RegistryStore>,
    kind: &'static str,
    id: &str,
    holder: &str,
    unfinished: fn(&Value) -> bool,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let (lost, taken) = oneshot::channel::<()>();
    let heartbeat = Heartbeat::start(
        store,
        kind,
        id.to_string(),
        holder.to_string(),
        unfinished,
        move || {
            let _ = lost.send(());
        },
    );
    // A heartbeat that ends without a takeover drops its sender: that branch is then off.
    let outcome = tokio::select! {
        output = work => Some(output),
        Ok(()) = taken => None,
    };
    heartbeat.stop().await;
    outcome
}

/// Renews a lease until stopped or dropped.
pub struct Heartbeat {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Heartbeat {
    /// Renews `holder`'s lease on the job every [`heartbeat_interval`]; calls `lost` once when
    /// another holder took the job over.
    pub fn start(
        store: Arc<dyn RegistryStore>,
        kind: &'static str,
        id: String,
        holder: String,
        unfinished: fn(&Value) -> bool,
        lost: impl FnOnce() + Send + 'static,
    ) -> Heartbeat {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(heartbeat_interval()) => {}
                }
                match renew(store.as_ref(), kind, &id, &holder, unfinished).await {
                    Ok(Renewal::Renewed) => {}
                    Ok(Renewal::Ended) => return,
                    Ok(Renewal::Taken) => {
                        tracing::warn!(kind, id = %id, "Lease lost: another replica took the job over");
                        lost();
                        return;
                    }
                    // The next beat tries again; the lease outlasts two failures.
                    Err(e) => tracing::warn!(kind, id = %id, error = %e, "Cannot renew a lease"),
                }
            }
        });
        Heartbeat {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops renewing, and waits for a renewal under way, so that a write after this one is
    /// never followed by a renewal of the old state.
    pub async fn stop(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        // Dropping the sender ends the loop at its next sleep; a renewal under way finishes.
        self.stop.take();
    }
}
