//! The rendered prompt against the reference text, the message rules, and the token ids of
//! the prompt as the Llama 3 chat template wraps it.

use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use llama_stack_core::{Error, Result};
use llama_stack_safety::provider::{GuardInference, SafetyProvider};
use llama_stack_types::{
    ContentItem, ImageContent, InterleavedContent, Message, Model, ModelType, Shield, Url,
};

use super::*;

const LINES_1B: &str = "S1: Violent Crimes.
S2: Non-Violent Crimes.
S3: Sex Crimes.
S4: Child Exploitation.
S5: Defamation.
S6: Specialized Advice.
S7: Privacy.
S8: Intellectual Property.
S9: Indiscriminate Weapons.
S10: Hate.
S11: Self-Harm.
S12: Sexual Content.
S13: Elections.";

fn expected(agent: &str, categories: &str, conversation: &str) -> String {
    format!(
        "Task: Check if there is unsafe content in '{agent}' messages in conversations according our safety policy with the below categories.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

{conversation}

<END CONVERSATION>

Provide your safety assessment for ONLY THE LAST {agent} message in the above conversation:
 - First line must read 'safe' or 'unsafe'.
 - If unsafe, a second line must include a comma-separated list of violated categories."
    )
}

fn assistant(text: &str) -> Message {
    Message::Assistant {
        content: text.into(),
        stop_reason: Default::default(),
        tool_calls: vec![],
    }
}

fn image(uri: &str) -> ContentItem {
    ContentItem::Image {
        image: ImageContent {
            url: Some(Url { uri: uri.into() }),
            data: None,
        },
    }
}

fn text(t: &str) -> ContentItem {
    ContentItem::Text { text: t.into() }
}

#[test]
fn one_user_message_on_the_1b_guard() {
    let messages = preprocess(&[Message::user("How do I make cocaine?")]).unwrap();
    let prompt = render(GuardKind::Guard3_1B, &[], &messages);
    assert_eq!(
        prompt,
        expected("User", LINES_1B, "User: How do I make cocaine?")
    );
}

#[test]
fn exchange_ending_with_the_assistant_checks_the_assistant_on_the_8b_guard() {
    let messages = preprocess(&[
        Message::user("What is the capital of France?"),
        assistant("Paris."),
    ])
    .unwrap();
    let prompt = render(GuardKind::Guard3_8B, &[], &messages);
    let categories = format!("{LINES_1B}\nS14: Code Interpreter Abuse.");
    assert_eq!(
        prompt,
        expected(
            "Assistant",
            &categories,
            "User: What is the capital of France?\n\nAssistant: Paris."
        )
    );
}

#[test]
fn guard_kind_comes_from_the_model_names() {
    use GuardKind::*;
    for (names, kind) in [
        (&["vllm/meta-llama/Llama-Guard-3-1B"][..], Guard3_1B),
        (&["Llama-Guard-3-8B"][..], Guard3_8B),
        (&["meta-llama/Llama-Guard-3-11B-Vision"][..], Guard3Vision),
        (&["meta-llama/Llama-Guard-4-12B"][..], Guard4_12B),
        (
            &["my-guard", "local/llama-guard-3-1b-q4_k_m.gguf"][..],
            Guard3_1B,
        ),
        (&["llama-guard3:1b"][..], Guard3_1B),
        (&["llama-guard3:8b"][..], Guard3_8B),
        (&["some-other-model"][..], Guard3_8B),
    ] {
        assert_eq!(
            GuardKind::from_names(names.iter().copied()),
            kind,
            "{names:?}"
        );
    }
    assert_eq!(Guard3_8B.codes().len(), 14);
    assert_eq!(Guard3_1B.codes().len(), 13);
}

#[test]
fn excluded_categories_leave_the_prompt_and_excluding_all_excludes_none() {
    let excluded = vec!["S1".to_string(), "S14".to_string()];
    let block = categories_block(GuardKind::Guard3_8B, &excluded);
    assert!(block.starts_with("S2: Non-Violent Crimes.\n"), "{block}");
    assert!(!block.contains("S1:") && !block.contains("S14:"), "{block}");
    assert_eq!(block.lines().count(), 12);

    let all: Vec<String> = CATEGORIES.iter().map(|(c, _)| c.to_string()).collect();
    assert_eq!(
        categories_block(GuardKind::Guard3_1B, &all),
        categories_block(GuardKind::Guard3_1B, &[])
    );
}

#[test]
fn message_rules() {
    assert!(preprocess(&[]).is_err());

    // A leading tool result becomes the user's message.
    let messages = preprocess(&[
        Message::Tool {
            call_id: "c1".into(),
            content: "42".into(),
            tool_name: None,
        },
        assistant("The answer is 42."),
    ])
    .unwrap();
    let prompt = render(GuardKind::Guard3_1B, &[], &messages);
    assert!(
        prompt.contains("\n\nUser: 42\n\nAssistant: The answer is 42.\n\n"),
        "{prompt}"
    );

    // Of two leading user messages the first is dropped.
    let messages = preprocess(&[Message::user("first"), Message::user("second")]).unwrap();
    assert_eq!(messages, vec![Message::user("second")]);

    // Roles are capitalised; content items are joined with a space.
    let messages = preprocess(&[
        Message::user("hi"),
        Message::System {
            content: "be brief".into(),
        },
        Message::User {
            content: InterleavedContent::Items(vec![text("look"), text("here")]),
            context: None,
        },
    ])
    .unwrap();
    let prompt = render(GuardKind::Guard3_1B, &[], &messages);
    assert!(
        prompt.contains("User: hi\n\nSystem: be brief\n\nUser: look here\n\n<END"),
        "{prompt}"
    );
}

#[test]
fn images_reach_only_the_vision_guard_as_images() {
    let messages = vec![
        Message::User {
            content: InterleavedContent::Items(vec![image("https://a/1.png"), text("old")]),
            context: None,
        },
        assistant("ok"),
        Message::User {
            content: InterleavedContent::Items(vec![
                text("is this fine?"),
                image("https://a/2.png"),
            ]),
            context: None,
        },
    ];
    let text_guard = guard_input(GuardKind::Guard3_1B, &[], &messages);
    let InterleavedContent::Text(prompt) = text_guard else {
        panic!("text guards get text")
    };
    assert!(prompt.contains("User: <image> old\n\n"), "{prompt}");
    assert!(
        prompt.contains("User: is this fine? <image>\n\n"),
        "{prompt}"
    );

    let vision = guard_input(GuardKind::Guard3Vision, &[], &messages);
    let InterleavedContent::Items(items) = vision else {
        panic!("the vision guard gets items")
    };
    assert_eq!(items.len(), 2);
    assert_eq!(items[0], image("https://a/2.png"));
    let ContentItem::Text { text: prompt } = &items[1] else {
        panic!("then the prompt")
    };
    // The older image is left out; the kept one still shows where it was.
    assert!(prompt.contains("User: old\n\n"), "{prompt}");
    assert!(
        prompt.contains("User: is this fine? <image>\n\n"),
        "{prompt}"
    );
}

fn tokenizer_model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("LLAMA3_TOKENIZER_MODEL") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".llama/tokenizer/llama3/tokenizer.model")
}

#[test]
fn wrapped_prompt_token_ids() {
    use llama_stack_llama3::{ModelFamily, RenderOptions, encode_pieces, render_chat};

    let path = tokenizer_model_path();
    let contents = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the Llama 3 tokenizer at {} ({e}); run scripts/fetch-tokenizer.sh",
            path.display()
        )
    });
    let json = llama_stack_llama3::hf_tokenizer_json_from_tiktoken(&contents).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_bytes(serde_json::to_vec(&json).unwrap()).unwrap();
    let encode = |t: &str| tokenizer.encode(t, false).unwrap().get_ids().to_vec();

    let prompt = render(
        GuardKind::Guard3_1B,
        &[],
        &preprocess(&[Message::user("How do I make cocaine?")]).unwrap(),
    );
    let family = ModelFamily::from_model_id("meta-llama/Llama-Guard-3-1B");
    let pieces = render_chat(&[Message::user(&prompt)], &RenderOptions::new(family));
    let ids = encode_pieces(&pieces, encode);

    // <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n ... <|eot_id|>
    // <|start_header_id|>assistant<|end_header_id|>\n\n: no system prelude.
    assert_eq!(ids[..5], [128000, 128006, 882, 128007, 271]);
    assert_eq!(ids[ids.len() - 5..], [128009, 128006, 78191, 128007, 271]);
    let body = &ids[5..ids.len() - 5];
    assert_eq!(body, encode(&prompt).as_slice());
    assert_eq!(tokenizer.decode(body, false).unwrap(), prompt);
    // "Task" opens the prompt and the category lines are tokenized as text, not specials.
    assert_eq!(body[0], encode("Task")[0]);
    assert!(body.iter().all(|&id| id < 128000));
}

/// An inference API whose guard answers a fixed reply and records what it was sent.
struct Scripted {
    reply: String,
    models: Vec<Model>,
    sent: Mutex<Vec<(String, InterleavedContent)>>,
}

impl Scripted {
    fn new(reply: &str) -> Self {
        Scripted {
            reply: reply.into(),
            models: vec![Model {
                identifier: "meta-llama/Llama-Guard-3-1B".into(),
                provider_resource_id: "Llama-Guard-3-1B".into(),
                provider_id: "vllm".into(),
                resource_type: "model".into(),
                metadata: Default::default(),
                model_type: ModelType::Llm,
                owner: None,
            }],
            sent: Mutex::new(vec![]),
        }
    }
}

#[async_trait]
impl GuardInference for Scripted {
    async fn find_model(&self, model_id: &str) -> Result<Model> {
        self.models
            .iter()
            .find(|m| m.identifier == model_id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Model '{model_id}' not found")))
    }
    async fn guard_chat(&self, model_id: &str, content: InterleavedContent) -> Result<String> {
        self.sent.lock().unwrap().push((model_id.into(), content));
        Ok(self.reply.clone())
    }
}

fn shield(resource: &str) -> Shield {
    Shield {
        identifier: "llama-guard".into(),
        provider_resource_id: resource.into(),
        provider_id: "llama-guard".into(),
        resource_type: "shield".into(),
        params: Some(Default::default()),
        owner: None,
    }
}

#[tokio::test]
async fn run_shield_sends_the_prompt_to_the_resolved_model_and_reads_the_verdict() {
    let guard = LlamaGuard::new(LlamaGuardConfig::default());
    let inference = Scripted::new("unsafe\nS10,S2");
    // A 0.2 short name resolves to the meta-llama model.
    let violation = guard
        .run_shield(
            &shield("Llama-Guard-3-1B"),
            &[Message::user("hello")],
            &serde_json::json!({}),
            &inference,
        )
        .await
        .unwrap()
        .expect("unsafe");
    assert_eq!(violation.metadata["violation_type"], "S10,S2");
    let sent = inference.sent.lock().unwrap();
    assert_eq!(sent[0].0, "meta-llama/Llama-Guard-3-1B");
    assert_eq!(
        sent[0].1,
        InterleavedContent::Text(expected("User", LINES_1B, "User: hello"))
    );
}

#[tokio::test]
async fn unknown_model_and_unreadable_reply_are_clear_errors() {
    let guard = LlamaGuard::new(LlamaGuardConfig::default());
    let err = guard
        .run_shield(
            &shield("nope"),
            &[Message::user("x")],
            &serde_json::json!({}),
            &Scripted::new("safe"),
        )
        .await
        .unwrap_err();
    assert!(
        err.message().contains("Shield 'llama-guard'"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("'nope'"), "{}", err.message());

    let err = guard
        .run_shield(
            &shield("meta-llama/Llama-Guard-3-1B"),
            &[Message::user("x")],
            &serde_json::json!({}),
            &Scripted::new("The weather is nice"),
        )
        .await
        .unwrap_err();
    assert!(
        err.message().contains("The weather is nice"),
        "{}",
        err.message()
    );
}
