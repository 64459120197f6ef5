//! Every shipped distribution loads, and `local` says what its README promises.

use std::path::{Path, PathBuf};

use llama_stack_core::Api;
use llama_stack_distribution::{
    LoadedConfig, builtin_registry, env::substitute, load, load_with, schema::RunConfig,
};
use llama_stack_types::ModelType;

use crate::support::{env, repo_dir};

pub fn run_configs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_dir().join("distributions"))
        .expect("distributions/ exists")
        .flatten()
        .map(|e| e.path().join("run.yaml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// A value for every variable a file requires (`${env.NAME}` without a default).
pub fn dummy_env(text: &str) -> llama_stack_distribution::EnvMap {
    let required = regex::Regex::new(r"\$\{env\.([A-Z0-9_]+)\}").unwrap();
    let mut vars = env(&[("SQLITE_STORE_DIR", "/tmp/llama-stack-validate-test")]);
    for caps in required.captures_iter(text) {
        vars.insert(
            caps[1].to_string(),
            format!("dummy-{}", caps[1].to_lowercase()),
        );
    }
    vars
}

/// What each shipped distribution builds with only its required variables set (to dummy
/// values): `(name, [(provider_id, provider_type)], [(model_id, provider_id)])`. A new
/// distribution fails [`every_distribution_validates`] until it is listed here.
/// `(id, id)` pairs: `(provider_id, provider_type)` or `(model_id, provider_id)`.
type Pairs = &'static [(&'static str, &'static str)];

const EXPECTED: &[(&str, Pairs, Pairs)] = &[
    (
        "fireworks",
        &[
            ("fireworks", "remote::fireworks"),
            ("sentence-transformers", "inline::sentence-transformers"),
        ],
        &[
            (
                "accounts/fireworks/models/llama-v3p3-70b-instruct",
                "fireworks",
            ),
            (
                "accounts/fireworks/models/llama-v3p1-8b-instruct",
                "fireworks",
            ),
            (
                "accounts/fireworks/models/llama4-scout-instruct-basic",
                "fireworks",
            ),
            (
                "accounts/fireworks/models/llama4-maverick-instruct-basic",
                "fireworks",
            ),
            ("nomic-ai/nomic-embed-text-v1.5", "fireworks"),
            ("all-MiniLM-L6-v2", "sentence-transformers"),
        ],
    ),
    (
        "llama-api",
        &[
            ("llama-api", "remote::llama-openai-compat"),
            ("sentence-transformers", "inline::sentence-transformers"),
        ],
        &[
            ("Llama-3.3-70B-Instruct", "llama-api"),
            ("Llama-3.3-8B-Instruct", "llama-api"),
            ("Llama-4-Scout-17B-16E-Instruct-FP8", "llama-api"),
            ("Llama-4-Maverick-17B-128E-Instruct-FP8", "llama-api"),
            ("all-MiniLM-L6-v2", "sentence-transformers"),
        ],
    ),
    (
        "llama-cpp",
        &[
            ("llama-cpp", "remote::llama-cpp-server"),
            ("sentence-transformers", "inline::sentence-transformers"),
        ],
        &[
            ("dummy-inference_model", "llama-cpp"),
            ("all-MiniLM-L6-v2", "sentence-transformers"),
        ],
    ),
    (
        "local",
        &[
            ("candle", "inline::candle"),
            ("sentence-transformers", "inline::sentence-transformers"),
            ("sqlite-vec", "inline::sqlite-vec"),
            ("rag-runtime", "inline::rag-runtime"),
            ("model-context-protocol", "remote::model-context-protocol"),
            ("localfs", "inline::localfs"),
            ("llama-guard", "inline::llama-guard"),
            ("code-scanner", "inline::code-scanner"),
            ("meta-reference", "inline::meta-reference"),
            ("builtin", "inline::builtin"),
            ("reference", "inline::reference"),
        ],
        &[
            ("meta-llama/Llama-3.2-1B-Instruct", "candle"),
            ("all-MiniLM-L6-v2", "sentence-transformers"),
        ],
    ),
    (
        "ollama",
        &[("ollama", "remote::ollama")],
        &[
            ("dummy-inference_model", "ollama"),
            ("all-MiniLM-L6-v2", "ollama"),
        ],
    ),
    (
        "openai",
        &[
            ("openai", "remote::openai"),
            ("sentence-transformers", "inline::sentence-transformers"),
        ],
        &[
            ("gpt-4o-mini", "openai"),
            ("gpt-4o", "openai"),
            ("gpt-4.1-mini", "openai"),
            ("text-embedding-3-small", "openai"),
            ("text-embedding-3-large", "openai"),
            ("all-MiniLM-L6-v2", "sentence-transformers"),
        ],
    ),
    (
        "postgres",
        &[
            ("sentence-transformers", "inline::sentence-transformers"),
            ("pgvector", "remote::pgvector"),
            ("rag-runtime", "inline::rag-runtime"),
            ("model-context-protocol", "remote::model-context-protocol"),
            ("postgres", "remote::postgres"),
            ("llama-guard", "inline::llama-guard"),
            ("code-scanner", "inline::code-scanner"),
            ("meta-reference", "inline::meta-reference"),
            ("builtin", "inline::builtin"),
            ("reference", "inline::reference"),
        ],
        &[("all-MiniLM-L6-v2", "sentence-transformers")],
    ),
    (
        "remote-vllm",
        &[
            ("vllm", "remote::vllm"),
            ("sentence-transformers", "inline::sentence-transformers"),
        ],
        &[
            ("dummy-inference_model", "vllm"),
            ("all-MiniLM-L6-v2", "sentence-transformers"),
        ],
    ),
    // Nothing set: every provider is switched off (see the `starter` module).
    (
        "starter",
        &[
            ("sqlite-vec", "inline::sqlite-vec"),
            ("rag-runtime", "inline::rag-runtime"),
            ("model-context-protocol", "remote::model-context-protocol"),
            ("localfs", "inline::localfs"),
            ("llama-guard", "inline::llama-guard"),
            ("code-scanner", "inline::code-scanner"),
            ("meta-reference", "inline::meta-reference"),
            ("builtin", "inline::builtin"),
            ("reference", "inline::reference"),
        ],
        &[],
    ),
    (
        "together",
        &[
            ("together", "remote::together"),
            ("sentence-transformers", "inline::sentence-transformers"),
        ],
        &[
            ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "together"),
            ("meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "together"),
            ("meta-llama/Llama-3.2-3B-Instruct-Turbo", "together"),
            ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "together"),
            (
                "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
                "together",
            ),
            ("all-MiniLM-L6-v2", "sentence-transformers"),
        ],
    ),
];

/// `(provider_id, provider_type)` of every provider a loaded file builds, in file order.
pub fn provider_pairs(loaded: &LoadedConfig) -> Vec<(String, String)> {
    loaded
        .providers
        .iter()
        .map(|p| (p.provider_id.clone(), p.provider_type.to_string()))
        .collect()
}

/// `(model_id, provider_id)` of every model a loaded file registers, in file order.
pub fn model_pairs(loaded: &LoadedConfig) -> Vec<(String, String)> {
    loaded
        .models
        .iter()
        .map(|m| {
            let provider = m.request.provider_id.clone().unwrap_or_default();
            (m.request.model_id.clone(), provider)
        })
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn every_distribution_validates() {
    let files = run_configs();
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|(name, _, _)| *name).collect();
    assert_eq!(names, expected, "distributions/ and EXPECTED disagree");
    for (file, (name, providers, models)) in files.iter().zip(EXPECTED) {
        let text = std::fs::read_to_string(file).unwrap();
        let loaded = load_with(file, &dummy_env(&text), &builtin_registry())
            .unwrap_or_else(|errors| panic!("{} does not validate:\n{errors}", file.display()));
        assert_eq!(loaded.config.image_name, *name, "{}", file.display());
        assert_eq!(
            provider_pairs(&loaded),
            owned(providers),
            "{name}: providers"
        );
        assert_eq!(model_pairs(&loaded), owned(models), "{name}: models");
        assert!(
            loaded.not_implemented.is_empty(),
            "{name}: {:?}",
            loaded.not_implemented
        );
        assert_eq!(loaded.server.port, 8321, "{name}");
        assert_eq!(
            loaded.store_dir(),
            Path::new("/tmp/llama-stack-validate-test"),
            "{name}"
        );
    }
}

/// Without SQLITE_STORE_DIR each distribution keeps its registry under its own name, so two
/// of them never share a registry by accident.
#[test]
fn every_distribution_has_its_own_default_store() {
    for file in run_configs() {
        let name = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let mut vars = dummy_env(&text);
        vars.remove("SQLITE_STORE_DIR");
        let loaded = load_with(&file, &vars, &builtin_registry()).unwrap();
        assert_eq!(
            loaded.store_dir(),
            Path::new("/home/tester/.llama/distributions").join(&name),
            "{name}"
        );
    }
}

/// The self-hosted remote distributions need the served model's id, and say so.
#[test]
fn self_hosted_distributions_require_inference_model() {
    for name in ["ollama", "remote-vllm", "llama-cpp"] {
        let file = repo_dir().join("distributions").join(name).join("run.yaml");
        let errors = load_with(&file, &env(&[]), &builtin_registry())
            .expect_err("loads without INFERENCE_MODEL");
        let text = errors.to_string();
        assert!(
            text.contains("models[0].model_id") && text.contains("INFERENCE_MODEL"),
            "{name}: {text}"
        );
    }
}

/// Each remote distribution points at the upstream its variables name.
#[test]
fn remote_distributions_follow_their_variables() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("remote-vllm", "VLLM_URL", "http://gpu-box:8000/v1", "url"),
        ("ollama", "OLLAMA_URL", "http://gpu-box:11434", "url"),
        (
            "llama-cpp",
            "LLAMA_CPP_URL",
            "http://gpu-box:8080",
            "openai_compat_api_base",
        ),
        ("together", "TOGETHER_API_KEY", "tg-key", "api_key"),
        ("fireworks", "FIREWORKS_API_KEY", "fw-key", "api_key"),
        ("openai", "OPENAI_API_KEY", "sk-key", "api_key"),
        ("llama-api", "LLAMA_API_KEY", "llama-key", "api_key"),
    ];
    for (name, variable, value, field) in cases {
        let file = repo_dir().join("distributions").join(name).join("run.yaml");
        let vars = env(&[
            (*variable, *value),
            ("INFERENCE_MODEL", "meta-llama/Llama-3.2-3B-Instruct"),
        ]);
        let loaded = load_with(&file, &vars, &builtin_registry()).unwrap();
        let provider = &loaded.providers[0];
        assert_eq!(provider.config[*field], *value, "{name}");
        assert_eq!(provider.config["refresh_models"], true, "{name}");
    }
}

#[test]
fn every_distribution_has_a_readme() {
    for file in run_configs() {
        let readme = file.with_file_name("README.md");
        assert!(readme.is_file(), "{} is missing", readme.display());
    }
}

fn local() -> PathBuf {
    repo_dir().join("distributions/local/run.yaml")
}

#[test]
fn local_defaults() {
    let loaded = load_with(&local(), &env(&[]), &builtin_registry()).unwrap();
    assert_eq!(loaded.config.image_name, "local");
    assert_eq!(
        loaded.apis,
        [
            Api::Inference,
            Api::VectorIo,
            Api::ToolRuntime,
            Api::Files,
            Api::Safety,
            Api::Agents,
            Api::Responses,
            Api::Batches
        ]
    );
    assert_eq!(loaded.server.port, 8321);
    assert_eq!(loaded.server.host, None);
    assert!(
        loaded.not_implemented.is_empty(),
        "{:?}",
        loaded.not_implemented
    );
    // Without SAFETY_MODEL the guard model, its provider and its shield are switched off; without
    // their API keys the web search and Wolfram Alpha runtimes and their tool groups.
    let disabled: Vec<&str> = loaded
        .disabled
        .iter()
        .map(|d| d.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        disabled,
        [
            "providers.inference[1]",
            "providers.tool_runtime[1]",
            "providers.tool_runtime[2]",
            "providers.tool_runtime[3]",
            "models[2]",
            "shields[0]",
            "tool_groups[1]",
            "tool_groups[2]"
        ],
        "{:?}",
        loaded.disabled
    );
    assert_eq!(loaded.config.shields.len(), 1);
    assert_eq!(loaded.config.shields[0].shield_id, "CodeScanner");
    assert_eq!(
        loaded.registry_db_path(),
        Path::new("/home/tester/.llama/distributions/local/registry.db")
    );
    assert_eq!(
        loaded.store_dir(),
        Path::new("/home/tester/.llama/distributions/local")
    );

    let provider = &loaded.providers[0];
    assert_eq!(provider.provider_id, "candle");
    assert_eq!(provider.provider_type, "inline::candle");
    assert_eq!(provider.config["model_path"], serde_json::Value::Null);
    assert_eq!(provider.config["device"], "cpu");

    let model = &loaded.models[0].request;
    assert_eq!(model.model_id, "meta-llama/Llama-3.2-1B-Instruct");
    assert_eq!(model.provider_id.as_deref(), Some("candle"));
    assert_eq!(model.model_type, Some(ModelType::Llm));

    let embedder = &loaded.providers[1];
    assert_eq!(embedder.provider_id, "sentence-transformers");
    assert_eq!(embedder.provider_type, "inline::sentence-transformers");
    assert_eq!(embedder.config["model_path"], serde_json::Value::Null);
    let model = &loaded.models[1].request;
    assert_eq!(model.model_id, "all-MiniLM-L6-v2");
    assert_eq!(model.provider_id.as_deref(), Some("sentence-transformers"));
    assert_eq!(model.model_type, Some(ModelType::Embedding));
    assert_eq!(model.metadata.as_ref().unwrap()["embedding_dimension"], 384);
}

#[test]
fn local_serves_the_guard_model_when_safety_model_is_set() {
    let vars = env(&[
        ("SAFETY_MODEL", "meta-llama/Llama-Guard-3-1B"),
        ("SAFETY_MODEL_PATH", "/models/guard"),
    ]);
    let loaded = load_with(&local(), &vars, &builtin_registry()).unwrap();
    assert!(
        loaded
            .disabled
            .iter()
            .all(|d| d.starts_with("providers.tool_runtime") || d.starts_with("tool_groups")),
        "{:?}",
        loaded.disabled
    );
    let guard = &loaded.providers[1];
    assert_eq!(
        (guard.provider_id.as_str(), guard.provider_type),
        ("candle-guard", "inline::candle")
    );
    assert_eq!(guard.config["model_path"], "/models/guard");
    let model = &loaded.models[2].request;
    assert_eq!(model.model_id, "meta-llama/Llama-Guard-3-1B");
    assert_eq!(model.provider_id.as_deref(), Some("candle-guard"));
    let shield = &loaded.config.shields[0];
    assert_eq!(shield.shield_id, "llama-guard");
    assert_eq!(shield.provider_id.as_deref(), Some("llama-guard"));
    assert_eq!(
        shield.provider_shield_id.as_deref(),
        Some("meta-llama/Llama-Guard-3-1B")
    );
    assert_eq!(
        loaded.config.safety.default_shield_id.as_deref(),
        Some("llama-guard")
    );
}

#[test]
fn local_follows_its_variables() {
    let vars = env(&[
        ("LLAMA_MODEL_PATH", "/models/Llama-3.2-3B-Instruct"),
        ("EMBEDDING_MODEL_PATH", "/models/all-MiniLM-L6-v2"),
        ("INFERENCE_MODEL", "meta-llama/Llama-3.2-3B-Instruct"),
        ("SQLITE_STORE_DIR", "~/stores/local"),
        ("LLAMA_STACK_PORT", "9000"),
    ]);
    let loaded = load_with(&local(), &vars, &builtin_registry()).unwrap();
    assert_eq!(
        loaded.providers[0].config["model_path"],
        "/models/Llama-3.2-3B-Instruct"
    );
    assert_eq!(
        loaded.models[0].request.model_id,
        "meta-llama/Llama-3.2-3B-Instruct"
    );
    assert_eq!(
        loaded.providers[1].config["model_path"],
        "/models/all-MiniLM-L6-v2"
    );
    assert_eq!(loaded.server.port, 9000);
    assert_eq!(
        loaded.registry_db_path(),
        Path::new("/home/tester/stores/local/registry.db")
    );
}

#[test]
fn load_prefers_overrides_to_the_process_environment() {
    let overrides = [
        ("LLAMA_STACK_PORT", "9123"),
        ("SQLITE_STORE_DIR", "/tmp/llama-stack-override-test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let loaded = load(&local(), &overrides).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.server.port, 9123);
    assert_eq!(
        loaded.store_dir(),
        Path::new("/tmp/llama-stack-override-test")
    );
    assert_eq!(loaded.source.as_deref(), Some(local().as_path()));
}

/// The typed schema reads the substituted file directly too.
#[test]
fn local_deserializes_as_run_config() {
    let text = std::fs::read_to_string(local()).unwrap();
    let yaml: serde_json::Value = serde_norway::from_str(&text).unwrap();
    // Every switchable entry on: a switched-off entry is dropped by the loader, not the schema.
    let (value, errors) = substitute(
        &yaml,
        &env(&[
            ("SAFETY_MODEL", "meta-llama/Llama-Guard-3-1B"),
            ("TAVILY_SEARCH_API_KEY", "t"),
            ("BRAVE_SEARCH_API_KEY", "b"),
            ("WOLFRAM_ALPHA_API_KEY", "w"),
        ]),
    );
    assert!(errors.is_empty(), "{errors:?}");
    let config: RunConfig = serde_json::from_value(value).unwrap();
    assert_eq!(config.version, 2);
    assert_eq!(
        config.providers[&Api::Inference][0].provider_type,
        "inline::candle"
    );
    assert_eq!(config.server.port, 8321);
}

/// The playground is on where a person tries the stack on their own machine and off in the
/// shared PostgreSQL deployment; `LLAMA_STACK_PLAYGROUND` turns it either way.
#[test]
fn playground_follows_each_distribution_and_its_variable() {
    for (name, shipped) in [("local", true), ("starter", true), ("postgres", false)] {
        let file = repo_dir().join(format!("distributions/{name}/run.yaml"));
        let text = std::fs::read_to_string(&file).unwrap();
        let loaded = load_with(&file, &dummy_env(&text), &builtin_registry())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.server.playground, shipped, "{name}");
        let mut flipped = dummy_env(&text);
        flipped.insert("LLAMA_STACK_PLAYGROUND".into(), (!shipped).to_string());
        let loaded = load_with(&file, &flipped, &builtin_registry())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.server.playground, !shipped, "{name} flipped");
    }
}

/// A run.yaml that does not mention the playground does not get one.
#[test]
fn playground_is_off_unless_asked_for() {
    let text = "version: 2\nimage_name: quiet\nserver:\n  port: 8321\n";
    let loaded = llama_stack_distribution::load_str(text, &env(&[]), &builtin_registry())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!loaded.server.playground);
}
