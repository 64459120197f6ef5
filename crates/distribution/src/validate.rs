//! The collect-all checking phase: YAML syntax, environment substitution, structure, provider
//! configs and cross-references, each problem with its YAML path.

use std::collections::BTreeMap;
use std::path::PathBuf;

use llama_stack_core::provider::parse_config;
use llama_stack_core::{Api, ConfigIssue, ProviderRegistry};
use llama_stack_types::{ModelType, RegisterModelRequest};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::env::{self, EnvMap, join_key};
use crate::locate::SourceMap;
use crate::schema::lenient::describe;
use crate::schema::{
    ModelInput, ProviderEntry, RUN_CONFIG_VERSION, RunConfig, ServerConfig, ShieldInput,
    StoreConfig, TOP_LEVEL_KEYS,
};
use crate::{PlannedModel, PlannedProvider, Problem, ServerSettings};

/// The value of a `provider_id` or resource id that disables its entry.
const DISABLED: &str = "__disabled__";

/// Everything `load` learns from a valid file.
pub(crate) struct Checked {
    pub config: RunConfig,
    pub providers: Vec<PlannedProvider>,
    pub models: Vec<PlannedModel>,
    pub apis: Vec<Api>,
    pub server: ServerSettings,
    pub registry_db_path: PathBuf,
    pub not_implemented: Vec<String>,
    pub disabled: Vec<String>,
}

/// What became of a configured (not disabled) provider.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Status {
    Buildable,
    NotImplemented,
    /// Its entry has errors, already reported; references to it are not reported again.
    Broken,
}

struct Checker<'a> {
    env: &'a EnvMap,
    registry: &'a ProviderRegistry,
    problems: Vec<Problem>,
    notices: Vec<String>,
    disabled: Vec<String>,
    /// Configured provider ids per API, with the path of their entry.
    provider_ids: BTreeMap<Api, BTreeMap<String, (String, Status)>>,
    /// Provider ids whose entry was disabled, per API.
    disabled_ids: BTreeMap<Api, Vec<String>>,
}

/// Checks a run.yaml text. `Err` holds every problem found, in file order.
pub(crate) fn check(
    source: &str,
    env: &EnvMap,
    registry: &ProviderRegistry,
) -> Result<Checked, Vec<Problem>> {
    let mut yaml: serde_norway::Value = match serde_norway::from_str(source) {
        Ok(v) => v,
        Err(err) => {
            let location = err.location();
            return Err(vec![Problem {
                path: String::new(),
                message: format!("YAML syntax error: {err}"),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
            }]);
        }
    };
    if let Err(err) = yaml.apply_merge() {
        return Err(vec![Problem::new("", format!("YAML merge key error: {err}"))]);
    }
    let mut checker = Checker {
        env,
        registry,
        problems: Vec::new(),
        notices: Vec::new(),
        disabled: Vec::new(),
        provider_ids: BTreeMap::new(),
        disabled_ids: BTreeMap::new(),
    };
    let raw = yaml_to_json(yaml, "", &mut checker.problems);
    let (value, env_errors) = env::substitute(&raw, env);
    let env_problems: Vec<Problem> = env_errors
        .into_iter()
        .map(|e| Problem::new(e.path, e.message))
        .collect();

    let checked = checker.document(&value);

    // A value whose substitution failed is null now; what that causes is not news.
    let mut problems: Vec<Problem> = checker
        .problems
        .into_iter()
        .filter(|p| !env_problems.iter().any(|e| is_within(&p.path, &e.path)))
        .collect();
    problems.extend(env_problems);
    match checked {
        Some(mut checked) if problems.is_empty() => {
            checked.not_implemented = checker.notices;
            checked.disabled = checker.disabled;
            Ok(checked)
        }
        _ => {
            let map = SourceMap::scan(source);
            for p in &mut problems {
                if let Some(pos) = map.locate(&p.path) {
                    p.line = Some(pos.line);
                    p.column = Some(pos.column);
                }
            }
            problems.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
            if problems.is_empty() {
                problems.push(Problem::new("", "the configuration could not be checked"));
            }
            Err(problems)
        }
    }
}

/// True when `path` is `ancestor` or lies below it.
fn is_within(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

fn is_disabled(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty() || s == DISABLED,
        _ => false,
    }
}

/// Joins a path relative to `prefix` (`""`, `key`, `[0]`, `key.sub`).
fn child(prefix: &str, relative: &str) -> String {
    if relative.is_empty() || relative == "." {
        prefix.to_string()
    } else if relative.starts_with('[') || prefix.is_empty() {
        format!("{prefix}{relative}")
    } else {
        format!("{prefix}.{relative}")
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Checker<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn issues(&mut self, prefix: &str, issues: Vec<ConfigIssue>) {
        for issue in issues {
            self.problem(child(prefix, &issue.path), issue.message);
        }
    }

    /// Deserializes one piece, reporting its problems under `path`.
    fn parse<T: DeserializeOwned>(&mut self, path: &str, value: &Value) -> Option<T> {
        match parse_config::<T>(value) {
            Ok(v) => Some(v),
            Err(issues) => {
                self.issues(path, issues);
                None
            }
        }
    }

    /// The items of a list section; null means empty.
    fn list<'v>(&mut self, path: &str, value: Option<&'v Value>) -> &'v [Value] {
        match value {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.problem(
                    path,
                    format!("must be a list, not {}", describe(other)),
                );
                &[]
            }
        }
    }

    fn document(&mut self, value: &Value) -> Option<Checked> {
        let root = match value {
            Value::Object(map) => map,
            Value::Null => {
                self.problem("", "the file is empty; a run config needs at least `version: 2`, `image_name` and `providers`");
                return None;
            }
            other => {
                self.problem(
                    "",
                    format!(
                        "a run config must be a mapping, not {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        for key in root.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                self.problem(
                    key.as_str(),
                    format!(
                        "unknown key `{key}`; run config version {RUN_CONFIG_VERSION} keys are: {}",
                        TOP_LEVEL_KEYS.join(", ")
                    ),
                );
            }
        }
        self.version(root.get("version"));
        let image_name = self.image_name(root);
        let container_image = self.optional_text(root, "container_image");
        let external_providers_dir = self.optional_text(root, "external_providers_dir");
        if let Some(dir) = &external_providers_dir {
            self.notices.push(format!(
                "external_providers_dir ({dir}): external providers are not implemented yet; the directory is not read"
            ));
        }
        let listed_apis = self.apis(root.get("apis"));
        let (providers, planned) = self.providers(root.get("providers"));
        let models = self.models(root.get("models"));
        let shields = self.shields(root.get("shields"));
        let mut other_lists = BTreeMap::new();
        for (key, id_field, what) in [
            ("vector_dbs", "vector_db_id", "vector DB"),
            ("datasets", "dataset_id", "dataset"),
            ("scoring_fns", "scoring_fn_id", "scoring function"),
            ("benchmarks", "benchmark_id", "benchmark"),
            ("tool_groups", "toolgroup_id", "tool group"),
        ] {
            let kept = self.unimplemented_resources(key, id_field, what, root.get(key));
            other_lists.insert(key, kept);
        }
        let metadata_store = self.store(root, "metadata_store");
        let inference_store = self.store(root, "inference_store");
        if inference_store.is_some() {
            self.notices.push(
                "inference_store: storing chat completions is not implemented yet; the store is not used"
                    .into(),
            );
        }
        let logging = root.get("logging").filter(|v| !v.is_null()).cloned();
        if logging.is_some() {
            self.notices.push(
                "logging: per-category log levels are not implemented yet; set RUST_LOG instead"
                    .into(),
            );
        }
        let server = self.server(root.get("server"));
        let apis = self.served_apis(&listed_apis, &planned);

        let image_name = image_name?;
        let registry_db_path = self.registry_db_path(&image_name, metadata_store.as_ref());
        let server = server?;
        let settings = ServerSettings {
            host: server.host.clone(),
            port: server.port,
        };
        let (models, model_plans): (Vec<_>, Vec<_>) = models.into_iter().unzip();
        let mut take = |key: &str| other_lists.remove(key).unwrap_or_default();
        let config = RunConfig {
            version: RUN_CONFIG_VERSION,
            image_name,
            container_image,
            apis: listed_apis.iter().map(|(_, api)| *api).collect(),
            providers,
            metadata_store,
            inference_store,
            models,
            shields,
            vector_dbs: take("vector_dbs"),
            datasets: take("datasets"),
            scoring_fns: take("scoring_fns"),
            benchmarks: take("benchmarks"),
            tool_groups: take("tool_groups"),
            logging,
            server,
            external_providers_dir,
        };
        Some(Checked {
            config,
            providers: planned,
            models: model_plans.into_iter().flatten().collect(),
            apis,
            server: settings,
            registry_db_path,
            not_implemented: Vec::new(),
            disabled: Vec::new(),
        })
    }

    fn version(&mut self, value: Option<&Value>) {
        let ok = match value {
            None => {
                self.problem("version", format!("missing; add `version: {RUN_CONFIG_VERSION}`"));
                return;
            }
            Some(Value::Number(n)) => n.as_u64() == Some(RUN_CONFIG_VERSION as u64),
            Some(Value::String(s)) => s.trim() == RUN_CONFIG_VERSION.to_string(),
            Some(_) => false,
        };
        if !ok {
            self.problem(
                "version",
                format!(
                    "unsupported run config version {}; this server reads version {RUN_CONFIG_VERSION}",
                    value.map(Value::to_string).unwrap_or_default()
                ),
            );
        }
    }

    fn image_name(&mut self, root: &Map<String, Value>) -> Option<String> {
        let (key, value) = match (root.get("image_name"), root.get("distro_name")) {
            (Some(_), Some(_)) => {
                self.problem(
                    "distro_name",
                    "give either image_name or distro_name, not both",
                );
                return None;
            }
            (Some(v), None) => ("image_name", v),
            (None, Some(v)) => ("distro_name", v),
            (None, None) => {
                self.problem(
                    "image_name",
                    "missing; name the distribution (e.g. `image_name: local`)",
                );
                return None;
            }
        };
        match scalar_text(value) {
            Some(name) if !name.trim().is_empty() => Some(name),
            _ => {
                self.problem(key, "must be a non-empty name");
                None
            }
        }
    }

    fn optional_text(&mut self, root: &Map<String, Value>, key: &str) -> Option<String> {
        let value = root.get(key).filter(|v| !v.is_null())?;
        let text = scalar_text(value);
        if text.is_none() {
            self.problem(key, "must be a string");
        }
        text
    }

    fn apis(&mut self, value: Option<&Value>) -> Vec<(String, Api)> {
        let mut apis: Vec<(String, Api)> = Vec::new();
        for (i, item) in self.list("apis", value).iter().enumerate() {
            let path = format!("apis[{i}]");
            match item.as_str().map(str::parse::<Api>) {
                Some(Ok(api)) if !apis.iter().any(|(_, a)| *a == api) => apis.push((path, api)),
                Some(Ok(_)) => {}
                Some(Err(message)) => self.problem(path, message),
                None => self.problem(path, "must be an API name such as `inference`"),
            }
        }
        apis
    }

    fn providers(
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
                if id.is_null() { "empty" } else { "`__disabled__`" }
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
        let status = match self.registry.get(&entry.provider_type) {
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
                if known.is_empty() {
                    self.notices.push(format!(
                        "{path}: provider `{}` ({}) is not implemented yet: this build has no {api} providers, so the entry is skipped",
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
    fn reference(&self, api: Api, provider_id: &str) -> Result<Status, String> {
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
    fn resource_entry<'v>(
        &mut self,
        path: &str,
        id_field: &str,
        value: &'v Value,
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = value else {
            self.problem(path, format!("must be a mapping with at least `{id_field}`"));
            return None;
        };
        let id_disabled = map.get(id_field).is_some_and(is_disabled);
        let provider_disabled = map.get("provider_id").is_some_and(is_disabled);
        if id_disabled || provider_disabled {
            let which = if id_disabled { id_field } else { "provider_id" };
            self.disabled
                .push(format!("{path}: skipped because its {which} is empty or `__disabled__`"));
            return None;
        }
        Some(map)
    }

    fn models(&mut self, value: Option<&Value>) -> Vec<(ModelInput, Option<PlannedModel>)> {
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
    fn only_provider(&self, api: Api) -> Result<String, String> {
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

    fn shields(&mut self, value: Option<&Value>) -> Vec<ShieldInput> {
        let mut out = Vec::new();
        for (i, item) in self.list("shields", value).iter().enumerate() {
            let path = format!("shields[{i}]");
            if self.resource_entry(&path, "shield_id", item).is_none() {
                continue;
            }
            let Some(shield) = self.parse::<ShieldInput>(&path, item) else {
                continue;
            };
            if let Some(provider_id) = &shield.provider_id {
                if let Err(message) = self.reference(Api::Safety, provider_id) {
                    self.problem(child(&path, "provider_id"), message);
                    continue;
                }
            }
            self.notices.push(format!(
                "{path}: shield `{}` is not registered: shields are not implemented yet",
                shield.shield_id
            ));
            out.push(shield);
        }
        out
    }

    fn unimplemented_resources(
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

    fn store(&mut self, root: &Map<String, Value>, key: &str) -> Option<StoreConfig> {
        let value = root.get(key).filter(|v| !v.is_null())?;
        let store = self.parse::<StoreConfig>(key, value)?;
        match &store {
            StoreConfig::Sqlite(sqlite) => {
                if let Some(ns) = &sqlite.namespace {
                    self.notices.push(format!(
                        "{key}.namespace ({ns}): store namespaces are not implemented yet; the whole database is used"
                    ));
                }
            }
            other if key == "metadata_store" => self.notices.push(format!(
                "{key}: type `{}` is not implemented yet; the registry is kept in the default SQLite database instead",
                other.type_name()
            )),
            _ => {}
        }
        Some(store)
    }

    fn registry_db_path(&self, image_name: &str, store: Option<&StoreConfig>) -> PathBuf {
        if let Some(StoreConfig::Sqlite(sqlite)) = store {
            if let Some(path) = &sqlite.db_path {
                return PathBuf::from(path);
            }
        }
        let dir = match self.env.get("SQLITE_STORE_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => env::expand_home(dir, self.env),
            None => env::expand_home(&format!("~/.llama/distributions/{image_name}"), self.env),
        };
        PathBuf::from(dir).join("registry.db")
    }

    fn server(&mut self, value: Option<&Value>) -> Option<ServerConfig> {
        let server: ServerConfig = match value {
            None | Some(Value::Null) => return Some(ServerConfig::default()),
            Some(value) => self.parse("server", value)?,
        };
        for (key, value) in [
            ("tls_certfile", &server.tls_certfile),
            ("tls_keyfile", &server.tls_keyfile),
            ("tls_cafile", &server.tls_cafile),
        ] {
            if value.is_some() {
                self.notices.push(format!(
                    "server.{key}: TLS is not implemented yet; the server listens on plain HTTP"
                ));
            }
        }
        if server.auth.is_some() {
            self.notices.push(
                "server.auth: authentication is not implemented yet; requests are NOT authenticated"
                    .into(),
            );
        }
        if server.quota.is_some() {
            self.notices.push(
                "server.quota: request quotas are not implemented yet; requests are not limited"
                    .into(),
            );
        }
        Some(server)
    }

    /// The APIs to serve, checking that each listed API has a provider.
    fn served_apis(&mut self, listed: &[(String, Api)], planned: &[PlannedProvider]) -> Vec<Api> {
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

/// Converts parsed YAML to JSON values; mapping keys become strings.
fn yaml_to_json(value: serde_norway::Value, path: &str, problems: &mut Vec<Problem>) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => Value::Number(f),
                    None => {
                        problems.push(Problem::new(
                            path,
                            format!("{n} is not supported; quote it if a string is meant"),
                        ));
                        Value::Null
                    }
                }
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| yaml_to_json(v, &format!("{path}[{i}]"), problems))
                .collect(),
        ),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                let key = match key {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_string(),
                    _ => {
                        problems.push(Problem::new(path, "mapping keys must be plain scalars"));
                        continue;
                    }
                };
                let child_path = join_key(path, &key);
                let v = yaml_to_json(v, &child_path, problems);
                out.insert(key, v);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            problems.push(Problem::new(
                path,
                format!("YAML tags such as `{}` are not supported", tagged.tag),
            ));
            Value::Null
        }
    }
}
