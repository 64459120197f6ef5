//! Access control of models and stored chat completions: a user's resources are hidden from
//! another user as if they did not exist, and unowned ones (run.yaml, provider listings) stay
//! everyone's. No test here calls `access::enforce`, so users are judged by the default policy.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use llama_stack_core::access::{self, Caller, User};
use llama_stack_core::{Error, ErrorKind, MemoryStore, Result};
use llama_stack_types::openai::OpenAiChatCompletionRequest;
use llama_stack_types::{
    ChatCompletionRequest, ChatCompletionResponseStreamChunk, ChatEventType, CompletionRequest,
    ContentDelta, Message, Model, ModelType, RegisterModelRequest,
};
use serde_json::{Value, json};

use crate::provider::{ChatStream, CompletionStream, InferenceProvider, ProviderModel};
use crate::service::InferenceService;
use crate::stored::{CompletionQuery, storing_stream};

struct Echo;

#[async_trait]
impl InferenceProvider for Echo {
    async fn register_model(&self, _: &Model) -> Result<()> {
        Ok(())
    }

    async fn chat_completion(&self, _: &Model, _: ChatCompletionRequest) -> Result<ChatStream> {
        let chunk =
            ChatCompletionResponseStreamChunk::new(ChatEventType::Start, ContentDelta::text(""));
        Ok(futures::stream::iter([Ok(chunk)]).boxed())
    }

    async fn completion(&self, _: &Model, _: CompletionRequest) -> Result<CompletionStream> {
        Err(Error::unsupported("not needed"))
    }

    async fn list_provider_models(&self) -> Option<Result<Vec<ProviderModel>>> {
        Some(Ok(vec![ProviderModel {
            provider_resource_id: "listed".into(),
            model_type: ModelType::Llm,
            metadata: Default::default(),
        }]))
    }
}

fn service() -> InferenceService {
    InferenceService::new(
        vec![("p".into(), Arc::new(Echo) as Arc<dyn InferenceProvider>)],
        Arc::new(MemoryStore::default()),
    )
}

fn user(name: &str) -> Caller {
    Caller::User(User::new(name))
}

fn register(model_id: &str) -> RegisterModelRequest {
    RegisterModelRequest {
        model_id: model_id.into(),
        provider_model_id: Some(format!("{model_id}-upstream")),
        provider_id: None,
        metadata: None,
        model_type: None,
    }
}

fn chat(model_id: &str) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model_id: model_id.into(),
        messages: vec![Message::user("hi")],
        sampling_params: None,
        tools: None,
        tool_choice: None,
        tool_prompt_format: None,
        response_format: None,
        stream: None,
        logprobs: None,
        tool_config: None,
    }
}

fn not_found<T>(result: Result<T>) -> String {
    let Err(err) = result else {
        panic!("expected not found, got an answer");
    };
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.message());
    err.message().to_string()
}

#[tokio::test]
async fn a_users_model_is_hidden_from_others_and_run_yaml_models_are_shared() {
    let svc = service();
    // At start-up there is no caller: the model is nobody's.
    let shared = svc.register_model(register("shared")).await.unwrap();
    assert_eq!(shared.owner, None);
    let mine = access::with_caller(user("alice"), svc.register_model(register("mine")))
        .await
        .unwrap();
    assert_eq!(mine.owner, Some(User::new("alice")));

    access::with_caller(user("bob"), async {
        let ids: Vec<String> = svc
            .list_models()
            .await
            .into_iter()
            .map(|m| m.identifier)
            .collect();
        assert_eq!(ids, ["shared"]);
        assert_eq!(svc.list_models_for_clients().await.len(), 1);
        let hidden = not_found(svc.get_model("mine").await);
        let missing = not_found(svc.get_model("nothing").await);
        assert_eq!(
            hidden.replace("mine", "nothing"),
            missing,
            "the same answer as for a model that does not exist"
        );
        assert!(
            !hidden.contains("mine,") && !hidden.ends_with("mine"),
            "{hidden}"
        );
        // Nor by its provider's name for it.
        not_found(svc.get_model("mine-upstream").await);
        not_found(svc.chat_completion(chat("mine")).await);
        not_found(svc.unregister_model("mine").await);
        // Registering the same model again is a conflict, not a way in.
        let err = svc.register_model(register("mine")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(svc.get_model("shared").await.unwrap().owner, None);
        assert!(svc.chat_completion(chat("shared")).await.is_ok());
        // A run.yaml model registered again by a user stays as it was.
        let again = svc.register_model(register("shared")).await.unwrap();
        assert_eq!(again.owner, None);
    })
    .await;

    access::with_caller(user("alice"), async {
        assert_eq!(svc.list_models().await.len(), 2);
        assert!(svc.chat_completion(chat("mine")).await.is_ok());
        assert_eq!(
            svc.get_model("mine-upstream").await.unwrap().identifier,
            "mine"
        );
        svc.unregister_model("mine").await.unwrap();
    })
    .await;
    assert_eq!(svc.list_models().await.len(), 1);
}

#[tokio::test]
async fn a_restored_model_keeps_its_owner() {
    let store = Arc::new(MemoryStore::default());
    let provider = || vec![("p".into(), Arc::new(Echo) as Arc<dyn InferenceProvider>)];
    let first = InferenceService::new(provider(), store.clone());
    access::with_caller(user("alice"), first.register_model(register("mine")))
        .await
        .unwrap();
    let second = InferenceService::new(provider(), store);
    assert_eq!(second.restore_models().await.unwrap().restored, 1);
    access::with_caller(user("bob"), async {
        not_found(second.get_model("mine").await);
    })
    .await;
    let model = access::with_caller(user("alice"), second.get_model("mine")).await;
    assert_eq!(model.unwrap().owner, Some(User::new("alice")));
}

fn completion_request() -> OpenAiChatCompletionRequest {
    serde_json::from_value(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap()
}

#[tokio::test]
async fn a_stored_completion_is_its_callers_only() {
    let svc = service();
    let request = completion_request();
    access::with_caller(
        user("alice"),
        crate::stored::store_completion(
            svc.store.as_ref(),
            json!({"id": "c1", "model": "m"}),
            &request,
        ),
    )
    .await
    .unwrap();
    // A streamed answer is stored when the stream ends, which may be polled in no request's
    // scope: it still belongs to the caller that asked for it.
    let chunks = futures::stream::iter([Ok::<Value, Error>(
        json!({"id": "c2", "model": "m", "choices": [{"index": 0, "delta": {"content": "x"}}]}),
    )])
    .boxed();
    let stream = access::with_caller(user("alice"), async {
        storing_stream(svc.store.clone(), chunks, request.clone())
    })
    .await;
    assert_eq!(stream.count().await, 1);

    let query = CompletionQuery::default();
    access::with_caller(user("bob"), async {
        let listed = svc.list_chat_completions(&query).await.unwrap();
        assert_eq!(listed["data"], json!([]));
        for id in ["c1", "c2"] {
            not_found(svc.get_chat_completion(id).await);
            not_found(svc.list_chat_completion_messages(id, &query).await);
            not_found(svc.delete_chat_completion(id).await);
        }
    })
    .await;

    access::with_caller(user("alice"), async {
        let listed = svc.list_chat_completions(&query).await.unwrap();
        assert_eq!(listed["data"].as_array().unwrap().len(), 2);
        assert_eq!(svc.get_chat_completion("c2").await.unwrap()["id"], "c2");
        let messages = svc
            .list_chat_completion_messages("c1", &query)
            .await
            .unwrap();
        assert_eq!(messages["data"].as_array().unwrap().len(), 1);
        svc.delete_chat_completion("c1").await.unwrap();
    })
    .await;
    // Without a caller (auth off) everything is visible.
    let listed = svc.list_chat_completions(&query).await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_listed_model_stays_everyones() {
    let svc = service();
    // A user's alias of a listed model must not take the listed one from the others.
    let alias = RegisterModelRequest {
        provider_model_id: Some("listed".into()),
        ..register("alias")
    };
    access::with_caller(user("alice"), svc.register_model(alias))
        .await
        .unwrap();
    svc.refresh_provider_models().await;
    access::with_caller(user("bob"), async {
        let listed = svc.get_model("listed").await.unwrap();
        assert_eq!(
            (listed.identifier.as_str(), listed.owner),
            ("p/listed", None)
        );
        not_found(svc.get_model("alias").await);
    })
    .await;
    // Registered for good by a user, it is still nobody's.
    let same = RegisterModelRequest {
        model_id: "listed".into(),
        provider_model_id: None,
        ..register("listed")
    };
    let kept = access::with_caller(user("alice"), svc.register_model(same))
        .await
        .unwrap();
    assert_eq!((kept.identifier.as_str(), kept.owner), ("p/listed", None));
    let ids: Vec<String> = access::with_caller(user("bob"), svc.list_models())
        .await
        .into_iter()
        .map(|m| m.identifier)
        .collect();
    assert_eq!(ids, ["p/listed"]);
}
