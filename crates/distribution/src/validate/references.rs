//! Providers, resources and the references between them.

use std::collections::BTreeMap;

use llama_stack_core::Api;
use llama_stack_types::{ModelType, RegisterModelRequest};
use serde_json::{Map, Value};

use super::{Checker, Status, child, is_disabled, scalar_text};
use crate::env::join_key;
use crate::schema::lenient::describe;
use crate::schema::{ModelInput, ProviderEntry, ShieldInput};
use crate::{PlannedModel, PlannedProvider};

/// Upstream provider types of APIs this build serves with other providers; entries naming them
/// are skipped with a notice rather than refused, so upstream run.yaml files still load.
const UPSTREAM_NOT_BUILT: &[&str] = &[
    "remote::bing-search",
    "inline::code-interpreter",
    "remote::qdrant",
    "inline::qdrant",
    "remote::chromadb",
    "inline::chromadb",
    "remote::weaviate",
    "remote::milvus",
    "inline::milvus",
    "remote::s3",
];

/// Upstream safety provider types this build does not have. Upstream names inference providers
/// the same way, and those stay errors for inference.
const UPSTREAM_SAFETY_NOT_BUILT: &[&str] =
    &["remote::bedrock", "remote::nvidia", "remote::sambanova"];

impl Checker<'_> {
    pub(super) fn providers(
        &mut self,
        value: Option<&Value>,
    ) -> (BTreeMap<Api, Vec<ProviderEntry>>, Vec<PlannedProvider>) {
        let mut entries: BTreeMap<Api, Vec<ProviderEntry>> = BTreeMap::new();
        let mut planned = Vec::new();
        let by_api = match value {
            None | Some(Value::Null) => return (entries, planned),
            Some(Value::Object(map)) => map,
            Some(other) => {
                self.problem(
                    "providers",
                    format!(
                        "must be a mapping from API name to a list of providers, not {}",
                        describe(other)
                    ),
                );
                return (entries, planned);
            }
        };
        for (api_name, list) in by_api {
            let api_path = join_key("providers", api_name);
            let api = match api_name.parse::<Api>() {
                Ok(api) => api,
                Err(message) => {
                    self.problem(api_path, message);
                    continue;
                }
            };
            for (i, entry) in self.list(&api_path, Some(list)).iter().enumerate() {
                let path = format!("{api_path}[{i}]");
                if let Some((entry, plan)) = self.provider(api, &path, entry) {
                    entries.entry(api).or_default().push(entry);
                    planned.extend(plan);
                }
            }
        }
        (entries, planned)
    }

    /// One provider entry: `None` when it is disabled or broken.
    fn provider(
        &mut self,
        api: Api,
        path: &str,
        value: &Value,
    ) -> Option<(ProviderEntry, Option<PlannedProvider>)> {
        let Value::Object(map) = value else {
            self.problem(
                path,
                "must be a mapping with provider_id, provider_type and config",
            );
            return None;
        };
        if let Some(id) = map.get("provider_id").filter(|v| is_disabled(v)) {
            let provider_type = map.get("provider_type").and_then(scalar_text);
            self.disabled.push(format!(
                "{path}: provider `{}` is disabled because its provider_id is {}",
                provider_type.as_deref().unwrap_or("(no type)"),
                if id.is_null() {
                    "empty"
                } else {
                    "`__disabled__`"
                }
            ));
            let ids = self.disabled_ids.entry(api).or_default();
            ids.extend(scalar_text(id).filter(|s| !s.is_empty()));
            return None;
        }
        let raw_id = map.get("provider_id").and_then(scalar_text);
        let entry = self.parse::<ProviderEntry>(path, value);
        if let Some(id) = &raw_id {
            let ids = self.provider_ids.entry(api).or_default();
            if let Some((first, _)) = ids.get(id) {
                let message =
                    format!("duplicate provider_id `{id}` for {api}; {first} already uses it");
                self.problem(child(path, "provider_id"), message);
                return None;
            }
            ids.insert(id.clone(), (path.to_string(), Status::Broken));
        }
        let entry = entry?;
        let status = match self.registry.get_for(api, &entry.provider_type) {
            Some(spec) if spec.api == api => {
                let issues = (spec.validate)(&entry.config);
                if !issues.is_empty() {
                    self.issues(&child(path, "config"), issues);
                    return None;
                }
                if entry.module.is_some() {
                    self.notices.push(format!(
                        "{path}.module: external provider modules are not supported; `{}` is built in and the module is ignored",
                        spec.provider_type
                    ));
                }
                Some(PlannedProvider {
                    path: path.to_string(),
                    api,
                    provider_id: entry.provider_id.clone(),
                    provider_type: spec.provider_type,
                    config: entry.config.clone(),
                })
            }
            Some(spec) => {
                let message = format!(
                    "`{}` is a provider of the {} API, not of {api}",
                    entry.provider_type, spec.api
                );
                self.problem(child(path, "provider_type"), message);
                return None;
            }
            None => {
                let known = self.registry.known_types(api);
                if known.is_empty()
                    || UPSTREAM_NOT_BUILT.contains(&entry.provider_type.as_str())
                    || (api == Api::Safety
                        && UPSTREAM_SAFETY_NOT_BUILT.contains(&entry.provider_type.as_str()))
                {
                    self.notices.push(format!(
                        "{path}: provider `{}` ({}) is not implemented yet: this build does not have it, so the entry is skipped",
                        entry.provider_id, entry.provider_type
                    ));
                    None
                } else {
                    let message = format!(
                        "unknown provider_type `{}` for {api}; known types: {}",
                        entry.provider_type,
                        known.join(", ")
                    );
                    self.problem(child(path, "provider_type"), message);
                    return None;
                }
            }
        };
        let state = if status.is_some() {
            Status::Buildable
        } else {
            Status::NotImplemented
        };
        self.provider_ids
            .entry(api)
            .or_default()
            .insert(entry.provider_id.clone(), (path.to_string(), state));
        Some((entry, status))
    }

    /// Explains why `provider_id` cannot serve `api` resources, or None when it can.
    pub(super) fn reference(&self, api: Api, provider_id: &str) -> Result<Status, String> {
        if let Some((_, status)) = self.provider_ids.get(&api).and_then(|m| m.get(provider_id)) {
            return Ok(*status);
        }
        if self
            .disabled_ids
            .get(&api)
            .is_some_and(|ids| ids.iter().any(|i| i == provider_id))
        {
            return Err(format!(
                "provider `{provider_id}` is disabled; disable this entry too (empty or `__disabled__` provider_id) or enable the provider"
            ));
        }
        if let Some((other, _)) = self
            .provider_ids
            .iter()
            .find(|(_, ids)| ids.contains_key(provider_id))
        {
            return Err(format!(
                "provider `{provider_id}` is a {other} provider; this entry needs a {api} provider"
            ));
        }
        let known: Vec<&str> = self
            .provider_ids
            .get(&api)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        Err(format!(
            "unknown provider_id `{provider_id}`; configured {api} providers: {}",
            if known.is_empty() {
                "(none)".to_string()
            } else {
                known.join(", ")
            }
        ))
    }

    /// Shared by every resource list: an entry whose id or provider_id resolves empty or to
    /// `__disabled__` is dropped. Returns the entry's mapping when it is kept.
    pub(super) fn resource_entry<'v>(
        &mut self,
        path: &str,
        id_field: &str,
        value: &'v Value,
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = value else {
            self.problem(
                path,
                format!("must be a mapping with at least `{id_field}`"),
            );
            return None;
        };
        let id_disabled = map.get(id_field).is_some_and(is_disabled);
        let provider_disabled = map.get("provider_id").is_some_and(is_disabled);
        if id_disabled || provider_disabled {
            let which = if id_disabled { id_field } else { "provider_id" };
            self.disabled.push(format!(
                "{path}: skipped because its {which} is empty or `__disabled__`"
            ));
            return None;
        }
        Some(map)
    }

    pub(super) fn models(
        &mut self,
        value: Option<&Value>,
    ) -> Vec<(ModelInput, Option<PlannedModel>)> {
        let mut out: Vec<(ModelInput, Option<PlannedModel>)> = Vec::new();
        let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
        for (i, item) in self.list("models", value).iter().enumerate() {
            let path = format!("models[{i}]");
            if self.resource_entry(&path, "model_id", item).is_none() {
                continue;
            }
            let Some(model) = self.parse::<ModelInput>(&path, item) else {
                continue;
            };
            let provider_id = match &model.provider_id {
                Some(id) => id.clone(),
                None => match self.only_provider(Api::Inference) {
                    Ok(id) => id,
                    Err(message) => {
                        self.problem(child(&path, "provider_id"), message);
                        continue;
                    }
                },
            };
            let status = match self.reference(Api::Inference, &provider_id) {
                Ok(status) => status,
                Err(message) => {
                    self.problem(child(&path, "provider_id"), message);
                    continue;
                }
            };
            if model.model_type == ModelType::Embedding {
                let dimension = model.metadata.get("embedding_dimension");
                let ok = match dimension {
                    Some(Value::Number(n)) => n.as_u64().is_some_and(|d| d > 0),
                    Some(Value::String(s)) => s.trim().parse::<u64>().is_ok_and(|d| d > 0),
                    _ => false,
                };
                if !ok {
                    self.problem(
                        format!("{path}.metadata.embedding_dimension"),
                        "an embedding model needs a positive embedding_dimension in its metadata",
                    );
                    continue;
                }
            }
            let key = (provider_id.clone(), model.model_id.clone());
            if let Some(first) = seen.get(&key) {
                let message = format!(
                    "duplicate model `{}` on provider `{provider_id}`; {first} already registers it",
                    model.model_id
                );
                self.problem(child(&path, "model_id"), message);
                continue;
            }
            seen.insert(key, path.clone());
            let plan = match status {
                Status::Buildable => Some(PlannedModel {
                    path: path.clone(),
                    request: RegisterModelRequest {
                        model_id: model.model_id.clone(),
                        provider_model_id: model.provider_model_id.clone(),
                        provider_id: Some(provider_id),
                        metadata: Some(model.metadata.clone()),
                        model_type: Some(model.model_type),
                    },
                }),
                Status::NotImplemented => {
                    self.notices.push(format!(
                        "{path}: model `{}` is not registered because its provider `{provider_id}` is not implemented yet",
                        model.model_id
                    ));
                    None
                }
                Status::Broken => None,
            };
            out.push((model, plan));
        }
        out
    }

    /// The provider a resource without `provider_id` goes to: the only one of its API.
    pub(super) fn only_provider(&self, api: Api) -> Result<String, String> {
        let ids: Vec<&String> = self
            .provider_ids
            .get(&api)
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        match ids.as_slice() {
            [only] => Ok((*only).clone()),
            [] => Err(format!("no {api} provider is configured to serve it")),
            several => Err(format!(
                "provider_id is required when several {api} providers are configured ({})",
                several
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The shields to register at startup, each with its provider resolved.
    pub(super) fn shields(&mut self, value: Option<&Value>) -> Vec<ShieldInput> {
        let mut out = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (i, item) in self.list("shields", value).iter().enumerate() {
            let path = format!("shields[{i}]");
            if self.resource_entry(&path, "shield_id", item).is_none() {
                continue;
            }
            let Some(shield) = self.parse::<ShieldInput>(&path, item) else {
                continue;
            };
            let provider_id = match &shield.provider_id {
                Some(id) => id.clone(),
                None => match self.only_provider(Api::Safety) {
                    Ok(id) => id,
                    Err(message) => {
                        self.problem(child(&path, "provider_id"), message);
                        continue;
                    }
                },
            };
            match self.reference(Api::Safety, &provider_id) {
                Ok(Status::Buildable) => {}
                Ok(Status::NotImplemented) => {
                    self.notices.push(format!(
                        "{path}: shield `{}` is not registered because its provider `{provider_id}` is not implemented yet",
                        shield.shield_id
                    ));
                    continue;
                }
                Ok(Status::Broken) => continue,
                Err(message) => {
                    self.problem(child(&path, "provider_id"), message);
                    continue;
                }
            }
            if let Some(params) = &shield.params
                && !params.is_null()
                && !params.is_object()
            {
                self.problem(child(&path, "params"), "must be a mapping");
                continue;
            }
            if let Some(first) = seen.get(&shield.shield_id) {
                let message = format!(
                    "duplicate shield `{}`; {first} already registers it",
                    shield.shield_id
                );
                self.problem(child(&path, "shield_id"), message);
                continue;
            }
            seen.insert(shield.shield_id.clone(), path.clone());
            out.push(ShieldInput {
                provider_id: Some(provider_id),
                ..shield
            });
        }
        out
    }

    pub(super) fn unimplemented_resources(
        &mut self,
        key: &str,
        id_field: &str,
        what: &str,
        value: Option<&Value>,
    ) -> Vec<Value> {
        let mut kept = Vec::new();
        for (i, item) in self.list(key, value).iter().enumerate() {
            let path = format!("{key}[{i}]");
            let Some(map) = self.resource_entry(&path, id_field, item) else {
                continue;
            };
            let id = map
                .get(id_field)
                .and_then(scalar_text)
                .unwrap_or_else(|| "(unnamed)".into());
            self.notices.push(format!(
                "{path}: {what} `{id}` is not registered: {key} are not implemented yet"
            ));
            kept.push(item.clone());
        }
        kept
    }

    /// The APIs to serve, checking that each listed API has a provider.
    pub(super) fn served_apis(
        &mut self,
        listed: &[(String, Api)],
        planned: &[PlannedProvider],
    ) -> Vec<Api> {
        let buildable = |api: Api| planned.iter().any(|p| p.api == api);
        if listed.is_empty() {
            return Api::ALL.into_iter().filter(|a| buildable(*a)).collect();
        }
        let mut served = Vec::new();
        for (path, api) in listed {
            let configured = self.provider_ids.get(api).is_some_and(|m| !m.is_empty());
            if buildable(*api) {
                served.push(*api);
            } else if configured {
                let broken = self.provider_ids[api]
                    .values()
                    .all(|(_, s)| *s == Status::Broken);
                if !broken {
                    self.notices.push(format!(
                        "{path}: the {api} API is not served: none of its providers is implemented yet"
                    ));
                }
            } else if self.disabled_ids.contains_key(api) {
                self.problem(
                    path.as_str(),
                    format!("{api} is listed in apis but every provider under providers.{api} is disabled"),
                );
            } else {
                self.problem(
                    path.as_str(),
                    format!("{api} is listed in apis but has no provider under providers.{api}"),
                );
            }
        }
        served
    }
}
