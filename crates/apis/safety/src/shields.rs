//! Shields (`/v1/shields`), `/v1/safety/run-shield` and `/v1/moderations`, shared by every
//! transport. The service is also the guard models' inference API ([`GuardInference`]), over
//! the inference API it was given.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_types::{
    ChatCompletionRequest, InterleavedContent, Message, Model, ModerationObject, ModerationRequest,
    RegisterShieldRequest, RunShieldRequest, RunShieldResponse, SamplingParams, Shield,
};

use llama_stack_types::openai::OpenAiMessage;

use llama_stack_core::access::{self, Action};
use llama_stack_core::{Error, ErrorKind, RegistryStore, Result, list_or_none};
use llama_stack_inference::InferenceApi;
use llama_stack_inference::openai_compat::message_to_classic;
use llama_stack_inference::ops::collect_chat;
use tokio::sync::RwLock;
use tracing::Instrument;

use crate::provider::{GuardInference, SafetyProvider};

const SHIELD_KIND: &str = "shield";

fn readable(shield: &Shield) -> bool {
    access::can_read(SHIELD_KIND, &shield.identifier, shield.owner.as_ref())
}

/// Enough for `unsafe` and all fourteen category codes.
const GUARD_MAX_TOKENS: u32 = 64;

/// What [`SafetyService::restore_shields`] did.
#[derive(Debug, Default)]
pub struct RestoredShields {
    pub restored: usize,
    /// Stored shields their provider refused, with its reason.
    pub refused: Vec<(Shield, Error)>,
}

/// The safety API as the agents' turn loop sees it.
#[async_trait]
pub trait SafetyApi: Send + Sync {
    /// A registered shield by identifier.
    async fn get_shield(&self, identifier: &str) -> Result<Shield>;
    /// Runs a registered shield over messages.
    async fn run_shield(&self, request: RunShieldRequest) -> Result<RunShieldResponse>;
}

/// The safety providers by id, the shield registry over them, and the inference API that
/// guard models run on.
pub struct SafetyService {
    providers: Vec<(String, Arc<dyn SafetyProvider>)>,
    store: Arc<dyn RegistryStore>,
    /// Registered shields by identifier; the store is the source of truth across restarts.
    shields: RwLock<BTreeMap<String, Shield>>,
    /// The inference API guard models run on, whichever provider serves them.
    inference: Arc<dyn InferenceApi>,
    /// run.yaml `safety.default_shield_id`: the shield `/v1/moderations` uses when the
    /// request names no model.
    default_shield_id: Option<String>,
}

impl SafetyService {
    pub fn new(
        providers: Vec<(String, Arc<dyn SafetyProvider>)>,
        store: Arc<dyn RegistryStore>,
        inference: Arc<dyn InferenceApi>,
        default_shield_id: Option<String>,
    ) -> Self {
        SafetyService {
            providers,
            store,
            shields: RwLock::new(BTreeMap::new()),
            inference,
            default_shield_id,
        }
    }

    fn safety_provider(&self, provider_id: &str) -> Option<Arc<dyn SafetyProvider>> {
        self.providers
            .iter()
            .find(|(id, _)| id == provider_id)
            .map(|(_, p)| p.clone())
    }

    fn safety_provider_ids(&self) -> Vec<String> {
        self.providers.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Loads the shields persisted by earlier runs. One whose provider is gone is skipped with
    /// a warning and kept in the store, so it comes back with its provider.
    pub async fn restore_shields(&self) -> Result<RestoredShields> {
        let mut outcome = RestoredShields::default();
        for value in self.store.list(SHIELD_KIND).await? {
            let shield: Shield = match serde_json::from_value(value) {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(error = %err, "Skipping unreadable shield in the registry");
                    continue;
                }
            };
            let Some(provider) = self.safety_provider(&shield.provider_id) else {
                tracing::warn!(shield = %shield.identifier, provider = %shield.provider_id,
                    "Skipping stored shield whose provider is not configured");
                continue;
            };
            if let Err(err) = provider.register_shield(&shield, self).await {
                outcome.refused.push((shield, err));
                continue;
            }
            self.shields
                .write()
                .await
                .insert(shield.identifier.clone(), shield);
            outcome.restored += 1;
        }
        Ok(outcome)
    }

    /// The shields the caller may read.
    pub async fn list_shields(&self) -> Vec<Shield> {
        self.shields
            .read()
            .await
            .values()
            .filter(|s| readable(s))
            .cloned()
            .collect()
    }

    /// A shield the caller may read; others are not found, and not listed in the error.
    pub async fn get_shield(&self, identifier: &str) -> Result<Shield> {
        let shields = self.shields.read().await;
        shields
            .get(identifier)
            .filter(|s| readable(s))
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Shield '{identifier}' not found. Registered shields: {}",
                    list_or_none(
                        shields
                            .values()
                            .filter(|s| readable(s))
                            .map(|s| &s.identifier)
                    )
                ))
            })
    }

    /// `POST /v1/shields`: registers and persists a shield. Registering the same shield again
    /// returns it unchanged; a different one under the same id is a conflict.
    pub async fn register_shield(&self, request: RegisterShieldRequest) -> Result<Shield> {
        if request.shield_id.trim().is_empty() {
            return Err(Error::invalid("shield_id must not be empty")
                .with_location(vec!["body".into(), "shield_id".into()]));
        }
        let ids = self.safety_provider_ids();
        let provider_id = match request.provider_id {
            Some(id) if ids.contains(&id) => id,
            Some(id) => {
                return Err(Error::invalid(format!(
                    "Provider '{id}' not found. Safety providers: {}",
                    list_or_none(ids.iter())
                )));
            }
            None => match ids.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(Error::invalid(
                        "No safety provider is configured; add one (e.g. inline::llama-guard) under providers.safety in run.yaml",
                    ));
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "No provider specified and multiple providers available. Please specify a provider_id. Available providers: {}",
                        ids.join(", ")
                    )));
                }
            },
        };
        access::check_create(SHIELD_KIND, &request.shield_id)?;
        let shield = Shield {
            provider_resource_id: request
                .provider_shield_id
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| request.shield_id.clone()),
            identifier: request.shield_id,
            provider_id,
            resource_type: "shield".into(),
            params: Some(request.params.unwrap_or_default()),
            owner: access::owner_for_new(),
        };
        if let Some(existing) = self.shields.read().await.get(&shield.identifier) {
            // The same shield again is the one already there, whoever registered it first, for
            // those who may see it.
            let same = Shield {
                owner: existing.owner.clone(),
                ..shield.clone()
            } == *existing;
            if same && readable(existing) {
                return Ok(existing.clone());
            }
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "Object of type 'shield' and identifier '{}' already exists. Unregister it first if you want to replace it.",
                    shield.identifier
                ),
            ));
        }
        let provider = self
            .safety_provider(&shield.provider_id)
            .ok_or_else(|| Error::internal("provider vanished during registration"))?;
        provider.register_shield(&shield, self).await?;
        self.store
            .put(
                SHIELD_KIND,
                &shield.identifier,
                &serde_json::to_value(&shield).map_err(|e| Error::internal(e.to_string()))?,
            )
            .await?;
        self.shields
            .write()
            .await
            .insert(shield.identifier.clone(), shield.clone());
        tracing::info!(shield = %shield.identifier, provider = %shield.provider_id,
            resource = %shield.provider_resource_id, "Registered shield");
        Ok(shield)
    }

    pub async fn unregister_shield(&self, identifier: &str) -> Result<()> {
        let shield = self.get_shield(identifier).await?;
        access::check(
            Action::Delete,
            SHIELD_KIND,
            &shield.identifier,
            shield.owner.as_ref(),
            || Error::not_found(format!("Shield '{identifier}' not found")),
        )?;
        self.store.delete(SHIELD_KIND, &shield.identifier).await?;
        self.shields.write().await.remove(&shield.identifier);
        tracing::info!(shield = %shield.identifier, "Unregistered shield");
        Ok(())
    }

    /// `POST /v1/safety/run-shield`.
    pub async fn run_shield(&self, request: RunShieldRequest) -> Result<RunShieldResponse> {
        let messages = parse_messages(&request.messages)?;
        let shield = self.get_shield(&request.shield_id).await?;
        let provider = self.provider_of(&shield)?;
        let params = request
            .params
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        // Its own span, so that an exported trace shows what the shield cost its request.
        let span = tracing::info_span!(
            target: "llama_stack::safety",
            "shield",
            otel.name = %format_args!("run_shield {}", shield.identifier),
            llama_stack.shield.id = %shield.identifier,
            llama_stack.shield.provider = %shield.provider_id,
            llama_stack.shield.violation = tracing::field::Empty,
        );
        let violation = provider
            .run_shield(&shield, &messages, &params, self)
            .instrument(span.clone())
            .await?;
        span.record("llama_stack.shield.violation", violation.is_some());
        Ok(RunShieldResponse { violation })
    }

    /// `POST /v1/moderations`: `model` picks the shield whose `provider_resource_id` it is;
    /// without it, run.yaml's `safety.default_shield_id` does.
    pub async fn run_moderation(&self, request: ModerationRequest) -> Result<ModerationObject> {
        let shields = self.list_shields().await;
        let resources = || list_or_none(shields.iter().map(|s| s.provider_resource_id.as_str()));
        let shield = match &request.model {
            Some(model) => {
                let matches: Vec<&Shield> = shields
                    .iter()
                    .filter(|s| &s.provider_resource_id == model)
                    .collect();
                match matches.as_slice() {
                    [one] => (*one).clone(),
                    [] => {
                        return Err(Error::invalid(format!(
                            "No shield associated with provider_resource id {model}: choose from {}",
                            resources()
                        ))
                        .with_location(vec!["body".into(), "model".into()]));
                    }
                    many => {
                        return Err(Error::invalid(format!(
                            "Multiple shields associated with provider_resource id {model}: matched shields {}",
                            many.iter()
                                .map(|s| s.identifier.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                }
            }
            None => {
                let Some(default) = &self.default_shield_id else {
                    return Err(Error::invalid(format!(
                        "No moderation model specified and no default_shield_id configured in safety config: select model from {}",
                        resources()
                    ))
                    .with_location(vec!["body".into(), "model".into()]));
                };
                shields
                    .iter()
                    .find(|s| &s.identifier == default)
                    .cloned()
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "Default moderation model not found: run.yaml names shield '{default}' in safety.default_shield_id, which is not registered. Choose from {}.",
                            resources()
                        ))
                    })?
            }
        };
        let provider = self.provider_of(&shield)?;
        let inputs = request.input.into_vec();
        let results = provider.run_moderation(&shield, &inputs, self).await?;
        Ok(ModerationObject {
            id: format!("modr-{}", uuid::Uuid::new_v4()),
            model: request.model.unwrap_or(shield.provider_resource_id),
            results,
        })
    }

    fn provider_of(&self, shield: &Shield) -> Result<Arc<dyn SafetyProvider>> {
        self.safety_provider(&shield.provider_id).ok_or_else(|| {
            Error::internal(format!(
                "shield '{}' names provider '{}', which is not configured",
                shield.identifier, shield.provider_id
            ))
        })
    }
}

#[async_trait]
impl SafetyApi for SafetyService {
    async fn get_shield(&self, identifier: &str) -> Result<Shield> {
        SafetyService::get_shield(self, identifier).await
    }

    async fn run_shield(&self, request: RunShieldRequest) -> Result<RunShieldResponse> {
        SafetyService::run_shield(self, request).await
    }
}

#[async_trait]
impl GuardInference for SafetyService {
    async fn find_model(&self, model_id: &str) -> Result<Model> {
        self.inference.get_model(model_id).await
    }

    async fn guard_chat(&self, model_id: &str, content: InterleavedContent) -> Result<String> {
        let request = ChatCompletionRequest {
            model_id: model_id.to_string(),
            messages: vec![Message::User {
                content,
                context: None,
            }],
            // A guard's verdict must not depend on sampling.
            // A verdict is a line or two; a model that does not stop must not run on.
            sampling_params: Some(SamplingParams {
                max_tokens: Some(GUARD_MAX_TOKENS),
                ..SamplingParams::default()
            }),
            tools: None,
            tool_choice: None,
            tool_prompt_format: None,
            response_format: None,
            stream: Some(false),
            logprobs: None,
            tool_config: None,
        };
        let response = collect_chat(self.inference.chat_completion(request).await?).await?;
        Ok(response.completion_message.content.as_text(""))
    }
}

/// Messages of a run-shield request: classic Llama Stack messages or OpenAI chat messages
/// (0.3+ clients), each read in whichever shape it has.
fn parse_messages(raw: &[serde_json::Value]) -> Result<Vec<Message>> {
    raw.iter()
        .enumerate()
        .map(|(i, value)| {
            let classic = match serde_json::from_value::<Message>(value.clone()) {
                Ok(m) => return Ok(m),
                Err(e) => e,
            };
            match serde_json::from_value::<OpenAiMessage>(value.clone()) {
                Ok(m) => Ok(message_to_classic(&m)),
                Err(openai) => Err(Error::invalid(format!(
                    "messages[{i}] is neither a Llama Stack message ({classic}) nor an OpenAI chat message ({openai})"
                ))
                .with_location(vec!["body".into(), "messages".into(), i.into()])),
            }
        })
        .collect()
}

/// Shields another replica sharing the metadata store registered or removed.
impl SafetyService {
    /// Brings shield `identifier` in line with the store: served when stored (handed to its
    /// provider first), dropped when it is gone.
    pub async fn reload_shield(&self, identifier: &str) -> Result<()> {
        let stored: Option<Shield> = self
            .store
            .get(SHIELD_KIND, identifier)
            .await?
            .and_then(|v| serde_json::from_value(v).ok());
        let current = self.shields.read().await.get(identifier).cloned();
        match stored {
            Some(shield) if current.as_ref() == Some(&shield) => {}
            Some(shield) => {
                let Some(provider) = self.safety_provider(&shield.provider_id) else {
                    tracing::warn!(shield = %identifier, provider = %shield.provider_id,
                        "A replica registered a shield whose provider is not configured here");
                    return Ok(());
                };
                provider.register_shield(&shield, self).await?;
                self.shields
                    .write()
                    .await
                    .insert(identifier.to_string(), shield);
                tracing::info!(shield = %identifier, "Shield registered by another replica");
            }
            None => {
                if self.shields.write().await.remove(identifier).is_some() {
                    tracing::info!(shield = %identifier, "Shield removed by another replica");
                }
            }
        }
        Ok(())
    }

    /// Every shield read again, after the change feed may have missed some.
    pub async fn reload_shields(&self) -> Result<()> {
        let mut ids: Vec<String> = self
            .store
            .list(SHIELD_KIND)
            .await?
            .iter()
            .filter_map(|v| v["identifier"].as_str().map(str::to_string))
            .collect();
        ids.extend(self.shields.read().await.keys().cloned());
        ids.sort();
        ids.dedup();
        for id in ids {
            if let Err(err) = self.reload_shield(&id).await {
                tracing::warn!(shield = %id, error = %err, "Cannot reload a shield from the registry");
            }
        }
        Ok(())
    }
}
