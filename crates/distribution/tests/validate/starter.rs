//! The `starter` distribution: each provider switched on by its own variable.

use std::path::PathBuf;

use llama_stack_core::Api;
use llama_stack_distribution::{builtin_registry, load_with};
use llama_stack_types::ModelType;

use crate::distributions::{model_pairs, provider_pairs};
use crate::support::{env, repo_dir};

fn starter() -> PathBuf {
    repo_dir().join("distributions/starter/run.yaml")
}

/// The variable that enables each provider, a value for it, and the provider it enables.
const SWITCHES: &[(&str, &str, &str, &str)] = &[
    (
        "LLAMA_MODEL_PATH",
        "/models/llama",
        "candle",
        "inline::candle",
    ),
    (
        "EMBEDDING_MODEL_PATH",
        "/models/minilm",
        "sentence-transformers",
        "inline::sentence-transformers",
    ),
    ("VLLM_URL", "http://gpu:8000/v1", "vllm", "remote::vllm"),
    ("OLLAMA_URL", "http://gpu:11434", "ollama", "remote::ollama"),
    (
        "LLAMA_CPP_URL",
        "http://gpu:8080",
        "llama-cpp",
        "remote::llama-cpp-server",
    ),
    ("OPENAI_API_KEY", "sk-test", "openai", "remote::openai"),
    (
        "TOGETHER_API_KEY",
        "tg-test",
        "together",
        "remote::together",
    ),
    (
        "FIREWORKS_API_KEY",
        "fw-test",
        "fireworks",
        "remote::fireworks",
    ),
    ("GROQ_API_KEY", "gq-test", "groq", "remote::groq"),
    (
        "LLAMA_API_KEY",
        "llama-test",
        "llama-api",
        "remote::llama-openai-compat",
    ),
];

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn nothing_set_enables_nothing_and_still_loads() {
    let loaded = load_with(&starter(), &env(&[]), &builtin_registry()).unwrap();
    assert_eq!(
        provider_pairs(&loaded),
        pairs(MEMORY),
        "only the memory and safety providers are always on"
    );
    assert!(loaded.models.is_empty(), "{:?}", loaded.models);
    assert_eq!(
        loaded.apis,
        [
            Api::Safety,
            Api::VectorIo,
            Api::Agents,
            Api::Responses,
            Api::Batches,
            Api::ToolRuntime,
            Api::Files
        ]
    );
    // Ten inference and three tool runtime providers, three models, the Llama Guard shield and
    // the web search and Wolfram Alpha tool groups, each reported as switched off.
    assert_eq!(loaded.disabled.len(), 19, "{:#?}", loaded.disabled);
    assert!(
        loaded.not_implemented.is_empty(),
        "{:?}",
        loaded.not_implemented
    );
}

#[test]
fn each_variable_enables_exactly_its_provider() {
    for (variable, value, provider_id, provider_type) in SWITCHES {
        let loaded = load_with(
            &starter(),
            &env(&[(*variable, *value)]),
            &builtin_registry(),
        )
        .unwrap_or_else(|e| panic!("{variable}: {e}"));
        assert_eq!(
            inference_pairs(&loaded),
            pairs(&[(*provider_id, *provider_type)]),
            "{variable}"
        );
        // Remote providers bring their models through refresh_models; the local ones register
        // theirs in the file.
        let expected_models: &[(&str, &str)] = match *provider_id {
            "candle" => &[("meta-llama/Llama-3.2-1B-Instruct", "candle")],
            "sentence-transformers" => &[("all-MiniLM-L6-v2", "sentence-transformers")],
            _ => &[],
        };
        assert_eq!(model_pairs(&loaded), pairs(expected_models), "{variable}");
        if provider_type.starts_with("remote::") {
            assert_eq!(
                loaded.providers[0].config["refresh_models"], true,
                "{variable}"
            );
        }
    }
}

#[test]
fn everything_set_enables_every_provider() {
    let mut vars: Vec<(&str, &str)> = SWITCHES.iter().map(|(k, v, _, _)| (*k, *v)).collect();
    vars.extend([
        ("INFERENCE_MODEL", "meta-llama/Llama-3.2-3B-Instruct"),
        ("SAFETY_MODEL", "llama-guard3:1b"),
        ("SQLITE_STORE_DIR", "/srv/starter"),
        ("TAVILY_SEARCH_API_KEY", "t"),
        ("BRAVE_SEARCH_API_KEY", "b"),
        ("WOLFRAM_ALPHA_API_KEY", "w"),
    ]);
    let loaded = load_with(&starter(), &env(&vars), &builtin_registry()).unwrap();
    let expected: Vec<(&str, &str)> = SWITCHES.iter().map(|(_, _, id, ty)| (*id, *ty)).collect();
    assert_eq!(inference_pairs(&loaded), pairs(&expected));
    assert_eq!(
        model_pairs(&loaded),
        pairs(&[
            ("meta-llama/Llama-3.2-3B-Instruct", "candle"),
            ("all-MiniLM-L6-v2", "sentence-transformers"),
            ("llama-guard3:1b", "ollama"),
        ])
    );
    let embedder = &loaded.models[1].request;
    assert_eq!(embedder.model_type, Some(ModelType::Embedding));
    assert_eq!(
        embedder.metadata.as_ref().unwrap()["embedding_dimension"],
        384
    );
    assert!(loaded.disabled.is_empty(), "{:?}", loaded.disabled);
    assert_eq!(
        loaded.registry_db_path(),
        std::path::Path::new("/srv/starter/registry.db")
    );
    let candle = &loaded.providers[0];
    assert_eq!(candle.config["model_path"], "/models/llama");
    let vllm = &loaded.providers[2];
    assert_eq!(vllm.config["url"], "http://gpu:8000/v1");
    let openai = &loaded.providers[5];
    assert_eq!(openai.config["api_key"], "sk-test");
}

#[test]
fn safety_model_goes_to_the_provider_named() {
    let vars = env(&[
        ("VLLM_URL", "http://gpu:8000/v1"),
        ("SAFETY_MODEL", "meta-llama/Llama-Guard-3-1B"),
        ("SAFETY_MODEL_PROVIDER", "vllm"),
    ]);
    let loaded = load_with(&starter(), &vars, &builtin_registry()).unwrap();
    assert_eq!(
        model_pairs(&loaded),
        pairs(&[("meta-llama/Llama-Guard-3-1B", "vllm")])
    );
}

/// The `llama-guard` shield and the default moderation shield come with SAFETY_MODEL; the code
/// scanner's shield is always there.
#[test]
fn safety_model_brings_the_llama_guard_shield() {
    let shields =
        |loaded: &llama_stack_distribution::LoadedConfig| -> Vec<(String, String, String)> {
            loaded
                .config
                .shields
                .iter()
                .map(|s| {
                    (
                        s.shield_id.clone(),
                        s.provider_id.clone().unwrap_or_default(),
                        s.provider_shield_id.clone().unwrap_or_default(),
                    )
                })
                .collect()
        };
    let off = load_with(&starter(), &env(&[]), &builtin_registry()).unwrap();
    assert_eq!(
        shields(&off),
        [("CodeScanner".into(), "code-scanner".into(), String::new())]
    );
    assert_eq!(off.config.safety.default_shield_id, None);

    let vars = env(&[
        ("VLLM_URL", "http://gpu:8000/v1"),
        ("SAFETY_MODEL", "meta-llama/Llama-Guard-3-1B"),
        ("SAFETY_MODEL_PROVIDER", "vllm"),
    ]);
    let on = load_with(&starter(), &vars, &builtin_registry()).unwrap();
    assert_eq!(
        shields(&on),
        [
            (
                "llama-guard".into(),
                "llama-guard".into(),
                "meta-llama/Llama-Guard-3-1B".into()
            ),
            ("CodeScanner".into(), "code-scanner".into(), String::new())
        ]
    );
    assert_eq!(
        on.config.safety.default_shield_id.as_deref(),
        Some("llama-guard")
    );
}

/// A safety model on a provider that is switched off is a clear error, not a silent skip.
#[test]
fn safety_model_on_a_disabled_provider_is_reported() {
    let vars = env(&[("SAFETY_MODEL", "llama-guard3:1b")]);
    let errors = load_with(&starter(), &vars, &builtin_registry()).unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("models[2].provider_id") && text.contains("ollama"),
        "{text}"
    );
}

/// The providers the starter always enables, in file order (memory, then safety).
const MEMORY: &[(&str, &str)] = &[
    ("sqlite-vec", "inline::sqlite-vec"),
    ("rag-runtime", "inline::rag-runtime"),
    ("model-context-protocol", "remote::model-context-protocol"),
    ("localfs", "inline::localfs"),
    ("llama-guard", "inline::llama-guard"),
    ("code-scanner", "inline::code-scanner"),
    ("meta-reference", "inline::meta-reference"),
    ("builtin", "inline::builtin"),
    ("reference", "inline::reference"),
];

/// The switchable (inference) providers a loaded starter enables.
fn inference_pairs(loaded: &llama_stack_distribution::LoadedConfig) -> Vec<(String, String)> {
    loaded
        .providers
        .iter()
        .filter(|p| p.api == Api::Inference)
        .map(|p| (p.provider_id.clone(), p.provider_type.to_string()))
        .filter(|(id, ty)| !MEMORY.contains(&(id.as_str(), ty.as_str())))
        .collect()
}
