//! `server.auth` on gRPC against the real binary: the `authorization` metadata is checked by
//! the same authenticator as HTTP, health stays public, and one user's model is invisible to
//! another, over gRPC as over HTTP.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use llama_stack_grpc::pb;
use tonic::Request;

const BIN: &str = env!("CARGO_BIN_EXE_llama-stack");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn as_user<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

#[tokio::test]
async fn grpc_calls_are_authenticated_and_judged_by_owner() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (port, grpc_port) = (free_port(), free_port());
    let d = dir.path().display();
    let yaml = format!(
        "version: 2
image_name: auth-test
server:
  host: 127.0.0.1
  port: {port}
  grpc_port: {grpc_port}
  auth:
    provider_config:
      type: api_keys
      keys:
      - {{principal: alice, key: alice-key-0123456789}}
      - {{principal: bob, key: bob-key-0123456789ab}}
providers:
  inference:
  - provider_id: up
    provider_type: remote::vllm
    config:
      url: http://127.0.0.1:9/v1
  safety:
  - provider_id: code-scanner
    provider_type: inline::code-scanner
    config: {{}}
  tool_runtime:
  - provider_id: mcp
    provider_type: remote::model-context-protocol
    config: {{}}
  agents:
  - provider_id: meta-reference
    provider_type: inline::meta-reference
    config: {{}}
metadata_store:
  type: sqlite
  db_path: {d}/registry.db
"
    );
    let path = dir.path().join("run.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut child = Command::new(BIN)
        .arg("run")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while http
        .get(format!("http://127.0.0.1:{port}/v1/health"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    assert!(health.check(check).await.is_ok(), "health stays public");

    let mut models = pb::models_service_client::ModelsServiceClient::new(channel);
    let anonymous = models
        .list_models(pb::ListModelsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        anonymous.code(),
        tonic::Code::Unauthenticated,
        "{anonymous:?}"
    );
    let wrong = models
        .list_models(as_user(pb::ListModelsRequest::default(), "not-a-key"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);

    let register = pb::RegisterModelRequest {
        model_id: "alices-model".into(),
        provider_model_id: Some("some/model".into()),
        provider_id: Some("up".into()),
        ..Default::default()
    };
    models
        .register_model(as_user(register, "alice-key-0123456789"))
        .await
        .unwrap();
    let listed = |key: &'static str| {
        let mut models = models.clone();
        async move {
            models
                .list_models(as_user(pb::ListModelsRequest::default(), key))
                .await
                .unwrap()
                .into_inner()
                .data
                .into_iter()
                .map(|m| m.identifier)
                .collect::<Vec<_>>()
        }
    };
    assert!(
        listed("alice-key-0123456789")
            .await
            .contains(&"alices-model".to_string())
    );
    assert!(
        !listed("bob-key-0123456789ab")
            .await
            .contains(&"alices-model".to_string())
    );
    let get = |key: &'static str| {
        let mut models = models.clone();
        async move {
            models
                .get_model(as_user(
                    pb::GetModelRequest {
                        model_id: "alices-model".into(),
                    },
                    key,
                ))
                .await
        }
    };
    assert!(get("alice-key-0123456789").await.is_ok());
    let hidden = get("bob-key-0123456789ab").await.unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound, "{hidden:?}");
    let delete = models
        .unregister_model(as_user(
            pb::UnregisterModelRequest {
                model_id: "alices-model".into(),
            },
            "bob-key-0123456789ab",
        ))
        .await
        .unwrap_err();
    assert_eq!(delete.code(), tonic::Code::NotFound);

    // An agent, over the agents service: bob neither lists nor reads alice's.
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut agents = pb::agents_service_client::AgentsServiceClient::new(channel);
    let created = agents
        .create_agent(as_user(
            pb::CreateAgentRequest {
                agent_config: Some(pb::AgentConfig {
                    model: "alices-model".into(),
                    ..Default::default()
                }),
            },
            "alice-key-0123456789",
        ))
        .await
        .unwrap()
        .into_inner();
    let listed = |key: &'static str| {
        let mut agents = agents.clone();
        async move {
            agents
                .list_agents(as_user(pb::ListAgentsRequest::default(), key))
                .await
                .unwrap()
                .into_inner()
                .data
                .into_iter()
                .map(|a| a.agent_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed("alice-key-0123456789").await,
        std::slice::from_ref(&created.agent_id)
    );
    assert!(listed("bob-key-0123456789ab").await.is_empty());
    let hidden = agents
        .get_agent(as_user(
            pb::GetAgentRequest {
                agent_id: created.agent_id.clone(),
            },
            "bob-key-0123456789ab",
        ))
        .await
        .unwrap_err();
    // Hidden exactly as a missing agent is (the classic agents API calls that a bad request).
    assert!(
        matches!(
            hidden.code(),
            tonic::Code::NotFound | tonic::Code::InvalidArgument
        ) && hidden.message().contains("not found"),
        "{hidden:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
