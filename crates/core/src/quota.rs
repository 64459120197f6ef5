//! Request quotas (`server.quota`): a budget of requests per client per period, counted in the
//! metadata store so that replicas sharing a database share the budget. Both transports ask
//! [`Quota::admit`] before they serve a request.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::{Error, ErrorKind, RegistryStore, Result};

/// The length of a quota window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Minute,
    Hour,
    Day,
}

impl Period {
    pub fn parse(name: &str) -> Option<Period> {
        match name {
            "minute" => Some(Period::Minute),
            "hour" => Some(Period::Hour),
            "day" => Some(Period::Day),
            _ => None,
        }
    }

    fn seconds(self) -> u64 {
        match self {
            Period::Minute => 60,
            Period::Hour => 3_600,
            Period::Day => 86_400,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
        })
    }
}

/// `server.quota`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSettings {
    pub anonymous_max_requests: u64,
    pub authenticated_max_requests: u64,
    pub period: Period,
    /// Prompt and completion tokens one authenticated principal may spend per period; `None`
    /// sets no token budget.
    pub authenticated_max_tokens: Option<u64>,
}

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaClient {
    /// An unauthenticated client, by its address.
    Anonymous(IpAddr),
    /// An authenticated principal.
    Principal(String),
}

/// Paths no quota counts: a load balancer's health and readiness checks and a metrics scraper
/// must not spend a client's budget.
pub fn exempt(path: &str) -> bool {
    matches!(
        path,
        "/v1/health" | "/v1/ready" | "/v1/version" | "/metrics"
    )
}

pub struct Quota {
    settings: QuotaSettings,
    store: Arc<dyn RegistryStore>,
}

impl Quota {
    pub fn new(settings: QuotaSettings, store: Arc<dyn RegistryStore>) -> Self {
        Quota { settings, store }
    }

    /// Counts one request of `client`; over the budget, a rate-limit error that says when the
    /// next window opens.
    pub async fn admit(&self, client: &QuotaClient) -> Result<()> {
        let now = crate::now_secs().max(0) as u64;
        self.admit_at(client, now).await
    }

    async fn admit_at(&self, client: &QuotaClient, now: u64) -> Result<()> {
        let period = self.settings.period.seconds();
        let window = (now / period).to_string();
        let (key, limit, who) = match client {
            QuotaClient::Anonymous(ip) => (
                format!("quota:anonymous:{ip}"),
                self.settings.anonymous_max_requests,
                format!("unauthenticated clients ({ip})"),
            ),
            QuotaClient::Principal(p) => (
                format!("quota:principal:{p}"),
                self.settings.authenticated_max_requests,
                format!("principal {p}"),
            ),
        };
        let count = self.store.increment(&key, &window).await?;
        if count <= limit {
            return Ok(());
        }
        let wait = period - now % period;
        Err(Error::new(
            ErrorKind::RateLimited,
            format!(
                "Quota exceeded: {limit} requests per {} for {who}; the next window opens in {wait} s",
                self.settings.period
            ),
        )
        .with_retry_after(Duration::from_secs(wait)))
    }
}

/// The quota whose token budget inference calls are judged by; set once at start-up when
/// `server.quota.authenticated_max_tokens` is configured.
static TOKEN_BUDGET: std::sync::OnceLock<Arc<Quota>> = std::sync::OnceLock::new();

/// Puts `quota`'s token budget in force for every inference call of this process.
pub fn enforce_token_budget(quota: Arc<Quota>) {
    if quota.settings.authenticated_max_tokens.is_some() {
        let _ = TOKEN_BUDGET.set(quota);
    }
}

/// Token budgets: an inference call asks [`tokens::admit`] first and reports what it used with
/// [`tokens::spend`]. Only authenticated principals have budgets; a generation started within
/// budget runs to its end, so a principal can overshoot by one answer.
pub mod tokens {
    use super::*;

    /// Who spends: the authenticated caller, when a budget is in force.
    #[derive(Clone)]
    pub struct Meter {
        quota: Arc<Quota>,
        principal: String,
    }

    /// Refuses a generation when the caller has spent its budget for this window; otherwise
    /// the meter to report usage to (`None` when no budget applies).
    pub async fn admit() -> Result<Option<Meter>> {
        let (Some(quota), Some(user)) = (TOKEN_BUDGET.get(), crate::access::current_user()) else {
            return Ok(None);
        };
        let now = crate::now_secs().max(0) as u64;
        quota.check_tokens_at(&user.principal, now).await?;
        Ok(Some(Meter {
            quota: quota.clone(),
            principal: user.principal,
        }))
    }

    impl Meter {
        /// Adds `tokens` to the principal's count, in the background: a stream's last chunk
        /// must not wait on the store.
        pub fn spend(&self, tokens: u64) {
            if tokens == 0 {
                return;
            }
            let meter = self.clone();
            tokio::spawn(async move {
                let now = crate::now_secs().max(0) as u64;
                if let Err(err) = meter
                    .quota
                    .spend_tokens_at(&meter.principal, tokens, now)
                    .await
                {
                    tracing::warn!(error = %err, "Cannot count tokens against the budget");
                }
            });
        }
    }
}

impl Quota {
    fn token_key(principal: &str) -> String {
        format!("quota:tokens:{principal}")
    }

    async fn check_tokens_at(&self, principal: &str, now: u64) -> Result<()> {
        let Some(limit) = self.settings.authenticated_max_tokens else {
            return Ok(());
        };
        let period = self.settings.period.seconds();
        let window = (now / period).to_string();
        let spent = self
            .store
            .increment_by(&Self::token_key(principal), &window, 0)
            .await?;
        if spent < limit {
            return Ok(());
        }
        let wait = period - now % period;
        Err(Error::new(
            ErrorKind::RateLimited,
            format!(
                "Token budget exceeded: {spent} of {limit} tokens per {} spent by principal {principal}; the next window opens in {wait} s",
                self.settings.period
            ),
        )
        .with_retry_after(Duration::from_secs(wait)))
    }

    async fn spend_tokens_at(&self, principal: &str, tokens: u64, now: u64) -> Result<u64> {
        let window = (now / self.settings.period.seconds()).to_string();
        self.store
            .increment_by(&Self::token_key(principal), &window, tokens)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn quota(anonymous: u64) -> Quota {
        Quota::new(
            QuotaSettings {
                anonymous_max_requests: anonymous,
                authenticated_max_requests: 5,
                period: Period::Minute,
                authenticated_max_tokens: Some(100),
            },
            Arc::new(MemoryStore::default()),
        )
    }

    #[tokio::test]
    async fn a_budget_is_per_client_and_per_window() {
        let q = quota(2);
        let a = QuotaClient::Anonymous("10.0.0.1".parse().unwrap());
        let b = QuotaClient::Anonymous("10.0.0.2".parse().unwrap());
        let t = 600;
        assert!(q.admit_at(&a, t).await.is_ok());
        assert!(q.admit_at(&a, t + 1).await.is_ok());
        let over = q.admit_at(&a, t + 2).await.unwrap_err();
        assert_eq!(over.kind(), ErrorKind::RateLimited);
        assert_eq!(over.retry_after(), Some(Duration::from_secs(58)));
        // Another client is not throttled by the first.
        assert!(q.admit_at(&b, t + 2).await.is_ok());
        // The next minute starts afresh.
        assert!(q.admit_at(&a, t + 60).await.is_ok());
        let principal = QuotaClient::Principal("alice".into());
        for _ in 0..5 {
            assert!(q.admit_at(&principal, t).await.is_ok());
        }
        assert!(q.admit_at(&principal, t).await.is_err());
    }

    #[tokio::test]
    async fn a_token_budget_is_spent_per_principal_and_window() {
        let q = quota(2);
        let t = 600;
        assert!(q.check_tokens_at("alice", t).await.is_ok());
        assert_eq!(q.spend_tokens_at("alice", 60, t).await.unwrap(), 60);
        assert!(q.check_tokens_at("alice", t).await.is_ok());
        assert_eq!(q.spend_tokens_at("alice", 45, t).await.unwrap(), 105);
        let over = q.check_tokens_at("alice", t + 1).await.unwrap_err();
        assert_eq!(over.kind(), ErrorKind::RateLimited);
        assert!(
            over.message().contains("105 of 100 tokens"),
            "{}",
            over.message()
        );
        assert!(q.check_tokens_at("bob", t).await.is_ok());
        assert!(q.check_tokens_at("alice", t + 60).await.is_ok());
    }
}
