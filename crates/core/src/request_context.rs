//! Request-scoped data that travels from a transport to the providers without widening every
//! provider method: the per-request provider data of `X-LlamaStack-Provider-Data` (§1.0), a
//! JSON object of secrets such as `{"together_api_key": "..."}`.
//!
//! A transport runs each request inside [`with_provider_data`]; a provider reads a key with
//! [`provider_data_string`] while it handles the call. A task-local fits because a provider reads
//! its secrets before it answers (when it sends its upstream request), which happens inside the
//! request's task; a stream polled later no longer needs them.

use std::future::Future;
use std::sync::Arc;

/// The parsed `X-LlamaStack-Provider-Data` object of one request.
#[derive(Clone, Default)]
pub struct ProviderData(Arc<serde_json::Map<String, serde_json::Value>>);

impl ProviderData {
    pub fn new(map: serde_json::Map<String, serde_json::Value>) -> Self {
        ProviderData(Arc::new(map))
    }

    /// Reads the header value: a JSON object. Anything else is ignored, as upstream does, so a
    /// client sending `{}` or garbage is served with the configured credentials.
    pub fn from_header(value: &[u8]) -> Option<Self> {
        match serde_json::from_slice::<serde_json::Value>(value) {
            Ok(serde_json::Value::Object(map)) => Some(ProviderData::new(map)),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }

    /// A copy with `key` set to `value`, for a call that adds request-scoped data of its own
    /// (an MCP server's headers given in a request body).
    pub fn with(&self, key: &str, value: serde_json::Value) -> Self {
        let mut map = (*self.0).clone();
        map.insert(key.to_string(), value);
        ProviderData::new(map)
    }

    /// The keys present, for messages (values are secrets and never shown).
    pub fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

// Values are secrets: Debug shows the keys only.
impl std::fmt::Debug for ProviderData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderData")
            .field("keys", &self.keys())
            .finish()
    }
}

tokio::task_local! {
    static PROVIDER_DATA: ProviderData;
}

/// Runs `future` with `data` as the request's provider data.
pub async fn with_provider_data<F: Future>(data: ProviderData, future: F) -> F::Output {
    PROVIDER_DATA.scope(data, future).await
}

/// The current request's provider data (empty outside a request).
pub fn current_provider_data() -> ProviderData {
    PROVIDER_DATA
        .try_with(|data| data.clone())
        .unwrap_or_default()
}

/// A non-empty string value of the current request's provider data, if the request sent one.
pub fn provider_data_string(key: &str) -> Option<String> {
    PROVIDER_DATA
        .try_with(|data| {
            data.get(key)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .ok()
        .flatten()
}

/// A value of the current request's provider data (any JSON), if the request sent one.
pub fn provider_data_value(key: &str) -> Option<serde_json::Value> {
    PROVIDER_DATA
        .try_with(|data| data.get(key).cloned())
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_are_visible_inside_the_scope_only() {
        let data = ProviderData::from_header(br#"{"together_api_key": "k1", "n": 3}"#).unwrap();
        let inside = with_provider_data(data, async {
            (
                provider_data_string("together_api_key"),
                provider_data_string("n"),
                provider_data_value("n"),
            )
        })
        .await;
        assert_eq!(
            inside,
            (Some("k1".to_string()), None, Some(serde_json::json!(3)))
        );
        assert_eq!(provider_data_value("n"), None);
        assert_eq!(provider_data_string("together_api_key"), None);
    }

    #[test]
    fn non_objects_are_ignored_and_debug_hides_values() {
        assert!(ProviderData::from_header(b"not json").is_none());
        assert!(ProviderData::from_header(b"[1]").is_none());
        let data = ProviderData::from_header(br#"{"openai_api_key": "sk-secret"}"#).unwrap();
        let shown = format!("{data:?}");
        assert!(shown.contains("openai_api_key") && !shown.contains("sk-secret"));
    }
}
