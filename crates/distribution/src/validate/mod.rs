//! The collect-all checking phase: YAML syntax, environment substitution, structure, provider
//! configs and cross-references, each problem with its YAML path.

use std::collections::BTreeMap;
use std::path::PathBuf;

use llama_stack_core::parse_config;
use llama_stack_core::{Api, ConfigIssue};
use llama_stack_stack::ProviderRegistry;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::env::{self, EnvMap, join_key};
use crate::locate::SourceMap;
use crate::schema::lenient::describe;
use crate::schema::{
    PostgresStoreConfig, RUN_CONFIG_VERSION, RunConfig, SafetySettings, ServerConfig, StoreConfig,
    TOP_LEVEL_KEYS,
};
use crate::{PlannedModel, PlannedProvider, Problem, ServerSettings};
use llama_stack_core::limits::RequestLimits;
use llama_stack_core::quota::{Period, QuotaSettings};

mod memory;
mod references;

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
            let mut message = err.to_string();
            if let Some(l) = &location {
                // The position is shown once, by the problem itself.
                let at = format!(" at line {} column {}", l.line(), l.column());
                message = message.replacen(&at, "", 1);
            }
            return Err(vec![Problem {
                path: String::new(),
                message: format!("YAML syntax error: {message}"),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
            }]);
        }
    };
    if let Err(err) = yaml.apply_merge() {
        return Err(vec![Problem::new(
            "",
            format!("YAML merge key error: {err}"),
        )]);
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
                self.problem(path, format!("must be a list, not {}", describe(other)));
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
                    format!("a run config must be a mapping, not {}", describe(other)),
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
        let safety = self.safety(root.get("safety"));
        let mut other_lists = BTreeMap::new();
        other_lists.insert("vector_dbs", self.vector_dbs(root.get("vector_dbs")));
        other_lists.insert("tool_groups", self.tool_groups(root.get("tool_groups")));
        for (key, id_field, what) in [
            ("datasets", "dataset_id", "dataset"),
            ("scoring_fns", "scoring_fn_id", "scoring function"),
            ("benchmarks", "benchmark_id", "benchmark"),
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
        let tls = match (&server.tls_certfile, &server.tls_keyfile) {
            (Some(certfile), Some(keyfile)) => Some(crate::TlsSettings {
                certfile: certfile.clone(),
                keyfile: keyfile.clone(),
                cafile: server.tls_cafile.clone(),
            }),
            _ => None,
        };
        let quota = self.check_quota(server.quota.as_ref());
        let limits = self.check_limits(server.limits.as_ref());
        let auth = server
            .auth
            .as_ref()
            .filter(|a| !a.is_null())
            .and_then(|auth| {
                let mut issues = Vec::new();
                let settings = llama_stack_auth::parse(auth, "server.auth", &mut issues);
                for issue in issues {
                    self.problem(issue.path, issue.message);
                }
                settings
            });
        let settings = ServerSettings {
            host: server.host.clone(),
            port: server.port,
            grpc_port: server.grpc_port,
            tls,
            quota,
            limits,
            auth,
            playground: server.playground,
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
            safety,
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
                self.problem(
                    "version",
                    format!("missing; add `version: {RUN_CONFIG_VERSION}`"),
                );
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

    /// The `safety` section: `default_shield_id` must be a shield the file registers, unless
    /// it may come from the registry of an earlier run (checked at start-up then).
    fn safety(&mut self, value: Option<&Value>) -> SafetySettings {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return SafetySettings::default();
        };
        let Some(map) = value.as_object() else {
            self.problem(
                "safety",
                format!("must be a mapping, not {}", describe(value)),
            );
            return SafetySettings::default();
        };
        let mut settings = SafetySettings::default();
        for (key, item) in map {
            match key.as_str() {
                "default_shield_id" if item.is_null() => {}
                "default_shield_id" => match scalar_text(item) {
                    Some(id) if !id.trim().is_empty() => settings.default_shield_id = Some(id),
                    Some(_) => {}
                    None => self.problem("safety.default_shield_id", "must be a string"),
                },
                other => self.problem(
                    format!("safety.{other}"),
                    format!("unknown key `{other}`; the safety section has: default_shield_id"),
                ),
            }
        }
        settings
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

    fn store(&mut self, root: &Map<String, Value>, key: &str) -> Option<StoreConfig> {
        let value = root.get(key).filter(|v| !v.is_null())?;
        // Parsed apart from its `type` tag so that each field's problem carries its own path
        // (serde's tagged enums report them all at the store).
        let store = match value.get("type").and_then(Value::as_str) {
            Some("postgres") => {
                let mut fields = value.clone();
                fields.as_object_mut().map(|f| f.remove("type"));
                StoreConfig::Postgres(self.parse(key, &fields)?)
            }
            _ => self.parse::<StoreConfig>(key, value)?,
        };
        match &store {
            StoreConfig::Sqlite(sqlite) => {
                if let Some(ns) = &sqlite.namespace {
                    self.notices.push(format!(
                        "{key}.namespace ({ns}): store namespaces are not implemented yet; the whole database is used"
                    ));
                }
            }
            StoreConfig::Postgres(postgres) => self.postgres_store(key, postgres),
            other if key == "metadata_store" => self.notices.push(format!(
                "{key}: type `{}` is not implemented yet; the registry is kept in the default SQLite database instead",
                other.type_name()
            )),
            _ => {}
        }
        Some(store)
    }

    fn postgres_store(&mut self, key: &str, store: &PostgresStoreConfig) {
        if store.host.trim().is_empty() {
            self.problem(
                format!("{key}.host"),
                "must name the PostgreSQL server (e.g. localhost)",
            );
        }
        if !(1..=65535).contains(&store.port) {
            self.problem(
                format!("{key}.port"),
                format!("must be a TCP port from 1 to 65535, got {}", store.port),
            );
        }
        if store.db.trim().is_empty() {
            self.problem(format!("{key}.db"), "must name the database");
        }
        if store.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
            self.problem(
                format!("{key}.user"),
                "missing; name the PostgreSQL user to log in as",
            );
        }
        if let Some(mode) = &store.ssl_mode
            && !matches!(mode.as_str(), "disable" | "allow" | "prefer")
        {
            self.problem(
                format!("{key}.ssl_mode"),
                format!("`{mode}` needs TLS, which this server does not support for PostgreSQL yet; use disable, allow or prefer"),
            );
        }
        if store.ca_cert_path.is_some() {
            self.problem(
                format!("{key}.ca_cert_path"),
                "TLS to PostgreSQL is not supported yet; remove ca_cert_path",
            );
        }
        if let Some(table) = &store.table_name {
            self.notices.push(format!(
                "{key}.table_name ({table}): not used; the registry is kept in table llama_stack_registry"
            ));
        }
        if let Some(ns) = &store.namespace {
            self.notices.push(format!(
                "{key}.namespace ({ns}): store namespaces are not implemented yet; the whole database is used"
            ));
        }
    }

    fn registry_db_path(&self, image_name: &str, store: Option<&StoreConfig>) -> PathBuf {
        if let Some(StoreConfig::Sqlite(sqlite)) = store
            && let Some(path) = &sqlite.db_path
        {
            return PathBuf::from(path);
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
        self.check_tls(&server);
        Some(server)
    }
}

impl Checker<'_> {
    /// `server.limits`: each key one of [`RequestLimits::KEYS`], a whole number at least 1.
    fn check_limits(&mut self, limits: Option<&Value>) -> RequestLimits {
        let mut out = RequestLimits::default();
        let Some(limits) = limits.filter(|l| !l.is_null()) else {
            return out;
        };
        let Some(map) = limits.as_object() else {
            self.problem("server.limits", format!("must be a mapping, got {limits}"));
            return out;
        };
        for (key, value) in map {
            let path = format!("server.limits.{key}");
            let Some(n) = value
                .as_u64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|n| *n >= 1)
            else {
                self.problem(
                    path,
                    format!("must be a whole number, at least 1; got {value}"),
                );
                continue;
            };
            if !out.set(key, n) {
                self.problem(
                    path,
                    format!("unknown limit; known: {}", RequestLimits::KEYS.join(", ")),
                );
            }
        }
        out
    }

    /// `server.quota` as upstream writes it: `anonymous_max_requests` (default 100),
    /// `authenticated_max_requests` (default 1000), `period` (`day`, or `hour` and `minute`),
    /// and `kvstore`, accepted and unused since counts live in the metadata store.
    fn check_quota(&mut self, quota: Option<&Value>) -> Option<QuotaSettings> {
        let quota = quota.filter(|q| !q.is_null())?;
        let Some(map) = quota.as_object() else {
            self.problem("server.quota", format!("must be a mapping, got {quota}"));
            return None;
        };
        let mut ok = true;
        for key in map.keys() {
            if ![
                "kvstore",
                "anonymous_max_requests",
                "authenticated_max_requests",
                "authenticated_max_tokens",
                "period",
            ]
            .contains(&key.as_str())
            {
                self.problem(
                    format!("server.quota.{key}"),
                    "unknown field; known: anonymous_max_requests, authenticated_max_requests, authenticated_max_tokens, period, kvstore",
                );
                ok = false;
            }
        }
        let mut count = |key: &str, default: u64| match map.get(key) {
            None | Some(Value::Null) => Some(default),
            Some(v) => match v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            {
                Some(n) if n >= 1 => Some(n),
                _ => {
                    self.problem(
                        format!("server.quota.{key}"),
                        format!("must be a whole number, at least 1; got {v}"),
                    );
                    None
                }
            },
        };
        let anonymous = count("anonymous_max_requests", 100);
        let authenticated = count("authenticated_max_requests", 1000);
        let tokens = match map.get("authenticated_max_tokens") {
            None | Some(Value::Null) => Some(None),
            Some(_) => count("authenticated_max_tokens", 0).map(Some),
        };
        let period = match map.get("period") {
            None | Some(Value::Null) => Some(Period::Day),
            Some(v) => {
                let found = v.as_str().and_then(Period::parse);
                if found.is_none() {
                    self.problem(
                        "server.quota.period",
                        format!("must be day, hour or minute; got {v}"),
                    );
                }
                found
            }
        };
        Some(QuotaSettings {
            anonymous_max_requests: anonymous?,
            authenticated_max_requests: authenticated?,
            period: period?,
            authenticated_max_tokens: tokens?,
        })
        .filter(|_| ok)
    }

    /// TLS needs a certificate and its key together, and a client CA only with them; each
    /// file must be there (what is in them is read when the server starts).
    fn check_tls(&mut self, server: &ServerConfig) {
        let given = [
            ("tls_certfile", &server.tls_certfile),
            ("tls_keyfile", &server.tls_keyfile),
            ("tls_cafile", &server.tls_cafile),
        ];
        match (&server.tls_certfile, &server.tls_keyfile) {
            (Some(_), None) => self.problem(
                "server.tls_keyfile",
                "is missing: server.tls_certfile needs its private key (a PEM file)",
            ),
            (None, Some(_)) => self.problem(
                "server.tls_certfile",
                "is missing: server.tls_keyfile needs its certificate chain (a PEM file)",
            ),
            (None, None) if server.tls_cafile.is_some() => self.problem(
                "server.tls_cafile",
                "mutual TLS needs server.tls_certfile and server.tls_keyfile too",
            ),
            _ => {}
        }
        for (key, value) in given {
            if let Some(path) = value
                && !std::path::Path::new(path).is_file()
            {
                self.problem(
                    format!("server.{key}"),
                    format!("{path} is not a readable file"),
                );
            }
        }
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
