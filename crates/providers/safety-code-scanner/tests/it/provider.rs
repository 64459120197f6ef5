//! The shield through the `SafetyProvider` trait: registration, run-shield and moderation.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::{Error, ErrorKind};
use llama_stack_provider_safety_code_scanner::{PROVIDER_TYPE, register};
use llama_stack_safety::provider::{GuardInference, SafetyProvider};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry};
use llama_stack_types::{ContentItem, InterleavedContent, Message, Model, Shield};
use serde_json::json;

/// The scanner needs no model; any call into inference is a bug.
struct NoInference;

#[async_trait]
impl GuardInference for NoInference {
    async fn find_model(&self, model_id: &str) -> llama_stack_core::Result<Model> {
        Err(Error::internal(format!(
            "unexpected model lookup: {model_id}"
        )))
    }

    async fn guard_chat(
        &self,
        model_id: &str,
        _content: InterleavedContent,
    ) -> llama_stack_core::Result<String> {
        Err(Error::internal(format!("unexpected inference: {model_id}")))
    }
}

const MD5_EXAMPLE: &str = r#"
    Here is an example of code that hashes a password using MD5:

    ```
    import hashlib
    password = 'securepassword123'.encode()
    hashed_password = hashlib.md5(password).hexdigest()
    print("Insecure hashed password:", hashed_password)
    ```
    "#;

fn shield(provider_resource_id: &str) -> Shield {
    Shield {
        identifier: "code-scanner".into(),
        provider_resource_id: provider_resource_id.into(),
        provider_id: "code-scanner".into(),
        resource_type: "shield".into(),
        params: None,
        owner: None,
    }
}

async fn provider(config: serde_json::Value) -> Arc<dyn SafetyProvider> {
    let mut registry = ProviderRegistry::new();
    register(&mut registry);
    let spec = registry.get(PROVIDER_TYPE).unwrap();
    assert_eq!((spec.validate)(&config), vec![]);
    match (spec.build)(config, ProviderContext::default())
        .await
        .unwrap()
    {
        ProviderInstance::Safety(provider) => provider,
        _ => panic!("{PROVIDER_TYPE} must build a safety provider"),
    }
}

fn text_items(text: &str) -> InterleavedContent {
    InterleavedContent::Items(vec![ContentItem::Text { text: text.into() }])
}

#[tokio::test]
async fn registers_only_code_scanner_shields() {
    let provider = provider(json!({})).await;
    for id in ["CodeScanner", "CodeShield", "code-scanner", "code-shield"] {
        provider
            .register_shield(&shield(id), &NoInference)
            .await
            .unwrap();
    }
    let err = provider
        .register_shield(&shield("Llama-Guard-3-1B"), &NoInference)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    let message = err.to_string();
    assert!(message.contains("Llama-Guard-3-1B"), "{message}");
    assert!(
        message.contains("CodeScanner") && message.contains("CodeShield"),
        "{message}"
    );
}

#[tokio::test]
async fn insecure_code_is_an_error_level_violation() {
    let provider = provider(json!(null)).await;
    let messages = [Message::User {
        content: text_items(MD5_EXAMPLE),
        context: None,
    }];
    let violation = provider
        .run_shield(&shield("CodeScanner"), &messages, &json!({}), &NoInference)
        .await
        .unwrap()
        .expect("a violation");
    assert_eq!(
        serde_json::to_value(&violation).unwrap(),
        json!({
            "violation_level": "error",
            "user_message": "Sorry, I found security concerns in the code.",
            "metadata": {"violation_type": "hardcoded-credential,weak-hash-md5"},
        })
    );
}

#[tokio::test]
async fn every_message_is_scanned_and_ids_follow_first_finding() {
    let provider = provider(json!({})).await;
    let messages = [
        Message::system("You are a coding assistant."),
        Message::user("Why is this slow?\nrows = yaml.load(stream)"),
        Message::Assistant {
            content: text_items("Try:\n```\ncur.execute(f\"SELECT * FROM t WHERE id = {i}\")\n```"),
            stop_reason: Default::default(),
            tool_calls: vec![],
        },
        Message::Tool {
            call_id: "call-1".into(),
            content: "data = yaml.load(other)\nhashlib.md5(x)".into(),
            tool_name: None,
        },
    ];
    let violation = provider
        .run_shield(&shield("CodeShield"), &messages, &json!({}), &NoInference)
        .await
        .unwrap()
        .expect("a violation");
    assert_eq!(
        violation.metadata["violation_type"],
        "unsafe-yaml-load,sql-injection,weak-hash-md5"
    );
}

#[tokio::test]
async fn safe_code_passes() {
    let provider = provider(json!({})).await;
    let messages = [Message::user(
        "```python\ncur.execute(\"SELECT * FROM t WHERE id = %s\", (i,))\n```",
    )];
    let verdict = provider
        .run_shield(&shield("CodeScanner"), &messages, &json!({}), &NoInference)
        .await
        .unwrap();
    assert_eq!(verdict, None);
}

#[tokio::test]
async fn a_large_message_is_scanned_whole() {
    let provider = provider(json!({})).await;
    let mut text = "value = compute(a, b)\n".repeat(10_000);
    text.push_str("config = yaml.load(stream)\n");
    assert!(text.len() > 128 * 1024);
    let violation = provider
        .run_shield(
            &shield("CodeScanner"),
            &[Message::user(&text)],
            &json!({}),
            &NoInference,
        )
        .await
        .unwrap()
        .expect("a violation");
    assert_eq!(violation.metadata["violation_type"], "unsafe-yaml-load");
}

#[tokio::test]
async fn disabled_rules_are_not_reported() {
    let provider =
        provider(json!({"disabled_rules": ["weak-hash-md5", "hardcoded-credential"]})).await;
    let verdict = provider
        .run_shield(
            &shield("CodeScanner"),
            &[Message::user(MD5_EXAMPLE)],
            &json!({}),
            &NoInference,
        )
        .await
        .unwrap();
    assert_eq!(verdict, None);
}

#[tokio::test]
async fn moderation_gives_one_result_per_input() {
    let provider = provider(json!({})).await;
    let inputs = [
        MD5_EXAMPLE.to_string(),
        "text = \"Hello World\"\nfirst_five = text[:5]\nprint(first_five)\n".to_string(),
        "digest = hashlib.sha1(data).hexdigest()".to_string(),
    ];
    let results = provider
        .run_moderation(&shield("code-scanner"), &inputs, &NoInference)
        .await
        .unwrap();
    assert_eq!(results.len(), 3);

    let credential = "Password, secret or API key assigned from a string literal (CWE-798)";
    let md5 =
        "MD5 digest, broken for signatures, passwords and integrity against tampering (CWE-328)";
    assert_eq!(
        serde_json::to_value(&results[0]).unwrap(),
        json!({
            "flagged": true,
            "categories": {"hardcoded-credential": true, "weak-hash-md5": true},
            "category_scores": {"hardcoded-credential": 1.0, "weak-hash-md5": 1.0},
            "category_applied_input_types": {
                "hardcoded-credential": ["text"],
                "weak-hash-md5": ["text"],
            },
            "user_message": format!("Security concerns detected in the code. BLOCK: {credential}, {md5}"),
            "metadata": {"violation_type": "hardcoded-credential,weak-hash-md5"},
        })
    );

    assert_eq!(
        serde_json::to_value(&results[1]).unwrap(),
        json!({
            "flagged": false,
            "categories": {},
            "category_scores": {},
            "category_applied_input_types": {},
            "user_message": null,
            "metadata": {},
        })
    );

    // Warnings only: flagged, but the treatment is WARN.
    assert!(results[2].flagged);
    assert_eq!(
        results[2].user_message.as_deref(),
        Some(
            "Security concerns detected in the code. WARN: SHA-1 digest, broken for signatures \
             and collision resistance (CWE-328)"
        )
    );
    assert_eq!(results[2].metadata["violation_type"], "weak-hash-sha1");
}

#[tokio::test]
async fn a_bad_config_is_refused_at_build() {
    let mut registry = ProviderRegistry::new();
    register(&mut registry);
    let spec = registry.get(PROVIDER_TYPE).unwrap();
    let config = json!({"disabled_rules": ["not-a-rule"]});
    let issues = (spec.validate)(&config);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].path, "disabled_rules[0]");
    let Err(err) = (spec.build)(config, ProviderContext::default()).await else {
        panic!("an unknown rule id must not build");
    };
    assert!(err.to_string().contains("not-a-rule"));
}
