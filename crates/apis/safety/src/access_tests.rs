//! Access control of shields: a user's shield is hidden from another user as if it did not
//! exist, and run.yaml's shields stay everyone's. No test here calls `access::enforce`, so
//! users are judged by the default policy.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::access::{self, Caller, User};
use llama_stack_core::{ErrorKind, MemoryStore, Result};
use llama_stack_inference::InferenceService;
use llama_stack_types::{
    Message, ModerationInput, ModerationRequest, ModerationResult, RegisterShieldRequest,
    RunShieldRequest, Shield,
};

use crate::provider::{GuardInference, SafetyProvider, SafetyViolation};
use crate::shields::SafetyService;

struct Passes;

#[async_trait]
impl SafetyProvider for Passes {
    async fn register_shield(&self, _: &Shield, _: &dyn GuardInference) -> Result<()> {
        Ok(())
    }

    async fn run_shield(
        &self,
        _: &Shield,
        _: &[Message],
        _: &serde_json::Value,
        _: &dyn GuardInference,
    ) -> Result<Option<SafetyViolation>> {
        Ok(None)
    }

    async fn run_moderation(
        &self,
        _: &Shield,
        _: &[String],
        _: &dyn GuardInference,
    ) -> Result<Vec<ModerationResult>> {
        Ok(Vec::new())
    }
}

fn service() -> SafetyService {
    let store = Arc::new(MemoryStore::default());
    SafetyService::new(
        vec![("s".into(), Arc::new(Passes) as Arc<dyn SafetyProvider>)],
        store.clone(),
        Arc::new(InferenceService::new(Vec::new(), store)),
        Some("shared".into()),
    )
}

fn user(name: &str) -> Caller {
    Caller::User(User::new(name))
}

fn register(id: &str) -> RegisterShieldRequest {
    RegisterShieldRequest {
        shield_id: id.into(),
        provider_shield_id: None,
        provider_id: None,
        params: None,
    }
}

fn run(id: &str) -> RunShieldRequest {
    RunShieldRequest {
        shield_id: id.into(),
        messages: vec![serde_json::json!({"role": "user", "content": "hi"})],
        params: None,
    }
}

fn moderate(model: &str) -> ModerationRequest {
    ModerationRequest {
        input: ModerationInput::One("hi".into()),
        model: Some(model.into()),
    }
}

fn kind<T>(result: Result<T>) -> (ErrorKind, String) {
    let Err(err) = result else {
        panic!("expected an error, got an answer");
    };
    (err.kind(), err.message().replace("mine", "nothing"))
}

#[tokio::test]
async fn a_users_shield_is_hidden_from_others_and_run_yaml_shields_are_shared() {
    let svc = service();
    let shared = svc.register_shield(register("shared")).await.unwrap();
    assert_eq!(shared.owner, None);
    let mine = access::with_caller(user("alice"), svc.register_shield(register("mine")))
        .await
        .unwrap();
    assert_eq!(mine.owner, Some(User::new("alice")));

    access::with_caller(user("bob"), async {
        let ids: Vec<String> = svc
            .list_shields()
            .await
            .into_iter()
            .map(|s| s.identifier)
            .collect();
        assert_eq!(ids, ["shared"]);
        // The same answers as for a shield that does not exist.
        let hidden = kind(svc.get_shield("mine").await);
        assert_eq!(hidden, kind(svc.get_shield("nothing").await));
        assert_eq!(hidden.0, ErrorKind::NotFound);
        assert_eq!(
            kind(svc.run_shield(run("mine")).await),
            kind(svc.run_shield(run("nothing")).await)
        );
        assert_eq!(
            kind(svc.run_moderation(moderate("mine")).await),
            kind(svc.run_moderation(moderate("nothing")).await)
        );
        assert_eq!(
            kind(svc.unregister_shield("mine").await).0,
            ErrorKind::NotFound
        );
        let (conflict, _) = kind(svc.register_shield(register("mine")).await);
        assert_eq!(conflict, ErrorKind::Conflict);
        assert!(svc.run_shield(run("shared")).await.is_ok());
        assert!(svc.run_moderation(moderate("shared")).await.is_ok());
        assert_eq!(
            svc.register_shield(register("shared")).await.unwrap().owner,
            None
        );
    })
    .await;

    access::with_caller(user("alice"), async {
        assert_eq!(svc.list_shields().await.len(), 2);
        assert!(svc.run_shield(run("mine")).await.is_ok());
        assert!(svc.run_moderation(moderate("mine")).await.is_ok());
        svc.unregister_shield("mine").await.unwrap();
    })
    .await;
    assert_eq!(svc.list_shields().await.len(), 1);
}
