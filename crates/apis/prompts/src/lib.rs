//! Prompts (`/v1/prompts`): prompt templates with `{{ variable }}` placeholders, each change a
//! new version, one version the default. A prompt and all its versions are one record in the
//! metadata store, so a change is written whole or not at all.

use std::sync::{Arc, OnceLock};

use llama_stack_core::access::{self, Action, User};
use llama_stack_core::{Error, RegistryStore, Result};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

const KIND: &str = "prompt";

/// One version, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub prompt: Option<String>,
    pub version: u32,
    pub prompt_id: String,
    pub variables: Vec<String>,
    pub is_default: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PromptRecord {
    /// Every version, oldest first; `is_default` is kept in `default`, not in the versions.
    versions: Vec<Prompt>,
    default: u32,
    /// The authenticated caller that created it; `None` while auth is off.
    #[serde(default)]
    owner: Option<User>,
}

impl PromptRecord {
    fn shown(&self, version: &Prompt) -> Prompt {
        Prompt {
            is_default: version.version == self.default,
            ..version.clone()
        }
    }
}

/// The prompts service: records in the metadata store, writes serialised in this process.
pub struct PromptsService {
    store: Arc<dyn RegistryStore>,
    writes: Mutex<()>,
}

fn body_error(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), field.into()])
}

fn placeholders(text: &str) -> Vec<String> {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    let pattern =
        PATTERN.get_or_init(|| Regex::new(r"\{\{\s*(\w+)\s*\}\}").expect("a valid pattern"));
    let mut names: Vec<String> = pattern
        .captures_iter(text)
        .map(|c| c[1].to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `prompt` and `variables` of a create or update body, checked: every placeholder declared.
fn text_and_variables(body: &Map<String, Value>) -> Result<(String, Vec<String>)> {
    let prompt = match body.get("prompt") {
        Some(Value::String(p)) if !p.trim().is_empty() => p.clone(),
        _ => {
            return Err(body_error(
                "prompt",
                "prompt is required: the template text",
            ));
        }
    };
    let variables: Vec<String> = match body.get("variables") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    body_error("variables", format!("variables must be names, got {v}"))
                })
            })
            .collect::<Result<_>>()?,
        Some(other) => {
            return Err(body_error(
                "variables",
                format!("variables must be a list of names, got {other}"),
            ));
        }
    };
    let undeclared: Vec<String> = placeholders(&prompt)
        .into_iter()
        .filter(|p| !variables.contains(p))
        .collect();
    if !undeclared.is_empty() {
        return Err(body_error(
            "variables",
            format!(
                "the prompt uses undeclared variables: {}; list them in variables",
                undeclared.join(", ")
            ),
        ));
    }
    Ok((prompt, variables))
}

fn version_field(body: &Map<String, Value>, field: &str) -> Result<u32> {
    body.get(field)
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .filter(|v| *v >= 1)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            body_error(
                field,
                format!("{field} is required: a version number from 1"),
            )
        })
}

fn not_found(id: &str, version: Option<u32>) -> Error {
    let which = version.map_or_else(|| "default".to_string(), |v| v.to_string());
    Error::not_found(format!(
        "Prompt {id}:{which} not found. Use 'client.prompts.list()' to list available Prompts."
    ))
}

impl PromptsService {
    pub fn new(store: Arc<dyn RegistryStore>) -> Self {
        PromptsService {
            store,
            writes: Mutex::new(()),
        }
    }

    /// A prompt the caller may do `action` to; one they may not read is not found.
    async fn record(&self, id: &str, action: Action) -> Result<PromptRecord> {
        let record: PromptRecord = self
            .store
            .get(KIND, id)
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| not_found(id, None))?;
        access::check(action, KIND, id, record.owner.as_ref(), || {
            not_found(id, None)
        })?;
        Ok(record)
    }

    async fn save(&self, id: &str, record: &PromptRecord) -> Result<()> {
        let value = serde_json::to_value(record).map_err(|e| Error::internal(e.to_string()))?;
        self.store.put(KIND, id, &value).await
    }

    /// `POST /v1/prompts`.
    pub async fn create_prompt(&self, body: Map<String, Value>) -> Result<Prompt> {
        let (prompt, variables) = text_and_variables(&body)?;
        let prompt_id = llama_stack_core::hex_id("pmpt");
        access::check_create(KIND, &prompt_id)?;
        let version = Prompt {
            prompt: Some(prompt),
            version: 1,
            prompt_id,
            variables,
            is_default: true,
        };
        let record = PromptRecord {
            versions: vec![version.clone()],
            default: 1,
            owner: access::owner_for_new(),
        };
        self.save(&version.prompt_id, &record).await?;
        Ok(version)
    }

    /// `GET /v1/prompts/{id}`: the default version, or `version`.
    pub async fn get_prompt(&self, id: &str, version: Option<u32>) -> Result<Prompt> {
        let record = self.record(id, Action::Read).await?;
        let wanted = version.unwrap_or(record.default);
        record
            .versions
            .iter()
            .find(|v| v.version == wanted)
            .map(|v| record.shown(v))
            .ok_or_else(|| not_found(id, version))
    }

    /// `GET /v1/prompts`: the default version of each prompt.
    pub async fn list_prompts(&self) -> Result<Value> {
        let data: Vec<Prompt> = self
            .store
            .list(KIND)
            .await?
            .into_iter()
            .filter_map(|v| serde_json::from_value::<PromptRecord>(v).ok())
            .filter(|r| {
                r.versions
                    .first()
                    .is_some_and(|v| access::can_read(KIND, &v.prompt_id, r.owner.as_ref()))
            })
            .filter_map(|r| {
                r.versions
                    .iter()
                    .find(|v| v.version == r.default)
                    .map(|v| r.shown(v))
            })
            .collect();
        Ok(json!({"data": data}))
    }

    /// `GET /v1/prompts/{id}/versions`.
    pub async fn list_prompt_versions(&self, id: &str) -> Result<Value> {
        let record = self.record(id, Action::Read).await?;
        let data: Vec<Prompt> = record.versions.iter().map(|v| record.shown(v)).collect();
        Ok(json!({"data": data}))
    }

    /// `PUT /v1/prompts/{id}`: a new version after `version`, which must be the latest.
    pub async fn update_prompt(&self, id: &str, body: Map<String, Value>) -> Result<Prompt> {
        let (prompt, variables) = text_and_variables(&body)?;
        let current = version_field(&body, "version")?;
        let set_as_default = body
            .get("set_as_default")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let _guard = self.writes.lock().await;
        let mut record = self.record(id, Action::Update).await?;
        let latest = record.versions.iter().map(|v| v.version).max().unwrap_or(0);
        if current != latest {
            return Err(body_error(
                "version",
                format!(
                    "version {current} is not the latest version of prompt {id}; update from version {latest}"
                ),
            ));
        }
        let version = Prompt {
            prompt: Some(prompt),
            version: latest + 1,
            prompt_id: id.to_string(),
            variables,
            is_default: false,
        };
        record.versions.push(version.clone());
        if set_as_default {
            record.default = version.version;
        }
        self.save(id, &record).await?;
        Ok(record.shown(&version))
    }

    /// `PUT /v1/prompts/{id}/set-default-version`.
    pub async fn set_default_version(&self, id: &str, body: Map<String, Value>) -> Result<Prompt> {
        let wanted = version_field(&body, "version")?;
        let _guard = self.writes.lock().await;
        let mut record = self.record(id, Action::Update).await?;
        let Some(version) = record
            .versions
            .iter()
            .find(|v| v.version == wanted)
            .cloned()
        else {
            return Err(not_found(id, Some(wanted)));
        };
        record.default = wanted;
        self.save(id, &record).await?;
        Ok(record.shown(&version))
    }

    /// `DELETE /v1/prompts/{id}`, with every version.
    pub async fn delete_prompt(&self, id: &str) -> Result<()> {
        let _guard = self.writes.lock().await;
        self.record(id, Action::Delete).await?;
        if !self.store.delete(KIND, id).await? {
            return Err(not_found(id, None));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::MemoryStore;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn versions_defaults_and_placeholders() {
        let svc = PromptsService::new(Arc::new(MemoryStore::default()));
        let err = svc
            .create_prompt(body(json!({"prompt": "Hi {{ name }}"})))
            .await
            .unwrap_err();
        assert!(err.message().contains("name"), "{}", err.message());
        let p = svc
            .create_prompt(body(
                json!({"prompt": "Hi {{ name }}", "variables": ["name"]}),
            ))
            .await
            .unwrap();
        assert!(p.prompt_id.starts_with("pmpt_") && p.prompt_id.len() == 53);
        let v2 = svc
            .update_prompt(
                &p.prompt_id,
                body(json!({"prompt": "Hello {{name}}", "version": 1,
                "variables": ["name"], "set_as_default": false})),
            )
            .await
            .unwrap();
        assert_eq!((v2.version, v2.is_default), (2, false));
        assert_eq!(svc.get_prompt(&p.prompt_id, None).await.unwrap().version, 1);
        let stale = svc
            .update_prompt(&p.prompt_id, body(json!({"prompt": "x", "version": 1})))
            .await
            .unwrap_err();
        assert!(stale.message().contains("latest"), "{}", stale.message());
        svc.set_default_version(&p.prompt_id, body(json!({"version": 2})))
            .await
            .unwrap();
        assert_eq!(svc.get_prompt(&p.prompt_id, None).await.unwrap().version, 2);
        assert!(svc.get_prompt(&p.prompt_id, Some(9)).await.is_err());
        let versions = svc.list_prompt_versions(&p.prompt_id).await.unwrap();
        assert_eq!(versions["data"].as_array().unwrap().len(), 2);
        assert_eq!(svc.list_prompts().await.unwrap()["data"][0]["version"], 2);
        svc.delete_prompt(&p.prompt_id).await.unwrap();
        assert!(svc.get_prompt(&p.prompt_id, None).await.is_err());
    }

    #[tokio::test]
    async fn a_users_prompt_is_hidden_from_others() {
        use llama_stack_core::ErrorKind;
        use llama_stack_core::access::Caller;
        let user = |name: &str| Caller::User(User::new(name));
        let store = Arc::new(MemoryStore::default());
        let svc = PromptsService::new(store.clone());
        // Records written before owners were users have `"owner": null`.
        store
            .put(
                KIND,
                "pmpt_old",
                &json!({"versions": [{"prompt": "Hi", "version": 1, "prompt_id": "pmpt_old",
                    "variables": [], "is_default": true}], "default": 1, "owner": null}),
            )
            .await
            .unwrap();
        let p = access::with_caller(
            user("alice"),
            svc.create_prompt(body(json!({"prompt": "Hi"}))),
        )
        .await
        .unwrap();
        let id = p.prompt_id.as_str();
        let update = || body(json!({"prompt": "Hello", "version": 1}));
        access::with_caller(user("bob"), async {
            let listed = svc.list_prompts().await.unwrap();
            assert_eq!(listed["data"].as_array().unwrap().len(), 1);
            assert_eq!(listed["data"][0]["prompt_id"], "pmpt_old");
            let hidden = svc.get_prompt(id, None).await.unwrap_err();
            let missing = svc.get_prompt("pmpt_none", None).await.unwrap_err();
            assert_eq!(hidden.kind(), ErrorKind::NotFound);
            assert_eq!(hidden.message().replace(id, "pmpt_none"), missing.message());
            for err in [
                svc.list_prompt_versions(id).await.unwrap_err(),
                svc.update_prompt(id, update()).await.unwrap_err(),
                svc.set_default_version(id, body(json!({"version": 1})))
                    .await
                    .unwrap_err(),
                svc.delete_prompt(id).await.unwrap_err(),
            ] {
                assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.message());
            }
            // An unowned prompt is everyone's.
            svc.update_prompt("pmpt_old", update()).await.unwrap();
        })
        .await;
        access::with_caller(user("alice"), async {
            assert_eq!(
                svc.list_prompts().await.unwrap()["data"]
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
            assert_eq!(svc.update_prompt(id, update()).await.unwrap().version, 2);
            svc.set_default_version(id, body(json!({"version": 1})))
                .await
                .unwrap();
            assert_eq!(svc.get_prompt(id, None).await.unwrap().version, 1);
            svc.delete_prompt(id).await.unwrap();
        })
        .await;
        assert!(svc.get_prompt(id, None).await.is_err());
    }
}
