//! Registration and config checks, every problem reported at once.

use llama_stack_core::Api;
use llama_stack_stack::{ProviderContext, ProviderRegistry};
use serde_json::json;

use crate::support::issue_paths;

#[test]
fn all_three_runtimes_are_registered_for_the_tool_runtime_api() {
    let mut registry = ProviderRegistry::new();
    llama_stack_provider_tool_search::register(&mut registry);
    assert_eq!(
        registry.known_types(Api::ToolRuntime),
        [
            "remote::brave-search",
            "remote::tavily-search",
            "remote::wolfram-alpha"
        ]
    );
    for spec in registry.specs() {
        let sample: serde_json::Value = serde_norway::from_str(spec.sample_config).unwrap();
        assert!(
            (spec.validate)(&sample).is_empty(),
            "{}",
            spec.provider_type
        );
        // What `${env.X:=}` leaves when the variable is unset.
        let mut unset = sample.clone();
        unset["api_key"] = json!("");
        assert!((spec.validate)(&unset).is_empty(), "{}", spec.provider_type);
    }
}

#[test]
fn every_bad_field_is_reported() {
    assert_eq!(
        issue_paths(
            "remote::tavily-search",
            json!({"max_results": 0, "base_url": "ftp://files.example", "timeout_seconds": -1})
        ),
        ["max_results", "base_url", "timeout_seconds"]
    );
    assert_eq!(
        issue_paths("remote::tavily-search", json!({"max_results": 21})),
        ["max_results"]
    );
    assert_eq!(
        issue_paths(
            "remote::brave-search",
            json!({"max_results": 0, "base_url": "not a url", "timeout_seconds": 0})
        ),
        ["max_results", "base_url", "timeout_seconds"]
    );
    assert!(issue_paths("remote::brave-search", json!({"max_results": 50})).is_empty());
    assert_eq!(
        issue_paths("remote::wolfram-alpha", json!({"timeout_seconds": 0})),
        ["timeout_seconds"]
    );
}

#[test]
fn unknown_and_mistyped_fields_are_reported_together() {
    let mut paths = issue_paths(
        "remote::tavily-search",
        json!({"api_key": 5, "max_result": 3, "timeout_seconds": "soon"}),
    );
    paths.sort();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(paths.iter().any(|p| p.contains("api_key")), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.contains("timeout_seconds")),
        "{paths:?}"
    );

    let paths = issue_paths("remote::wolfram-alpha", json!({"max_results": 3}));
    assert_eq!(paths, ["max_results"]);
}

#[tokio::test]
async fn a_bad_config_does_not_build() {
    let mut registry = ProviderRegistry::new();
    llama_stack_provider_tool_search::register(&mut registry);
    let spec = registry.get("remote::brave-search").unwrap();
    let err = match (spec.build)(json!({"timeout_seconds": -1}), ProviderContext::default()).await {
        Ok(_) => panic!("a negative timeout built"),
        Err(err) => err,
    };
    assert!(
        err.message().contains("timeout_seconds"),
        "{}",
        err.message()
    );
}
