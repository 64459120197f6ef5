//! One stack per test, built from a run.yaml string, served over gRPC and HTTP at once.

use llama_stack_grpc::pb;
use serde_json::json;
use tonic::transport::Channel;

use crate::upstream::{self, Upstream};

pub const LLM: &str = "canned-llm";
pub const EMBEDDER: &str = "canned-embed";

pub struct Harness {
    pub stack: std::sync::Arc<llama_stack_stack::Stack>,
    pub channel: Channel,
    /// The HTTP server's base URL (`http://127.0.0.1:port`).
    pub http: String,
    pub client: reqwest::Client,
    /// The gRPC server's address.
    pub grpc_addr: std::net::SocketAddr,
    pub upstream: Upstream,
    _dir: tempfile::TempDir,
}

fn run_yaml(upstream: &str, dir: &std::path::Path) -> String {
    let dir = dir.display();
    format!(
        "version: 2
image_name: grpc-test
apis: [inference, safety, vector_io, tool_runtime, agents]
providers:
  inference:
  - provider_id: canned
    provider_type: remote::openai-compat
    config:
      url: {upstream}/v1
      resilience: {{max_retries: 0}}
  safety:
  - provider_id: code-scanner
    provider_type: inline::code-scanner
    config: {{}}
  vector_io:
  - provider_id: sqlite-vec
    provider_type: inline::sqlite-vec
    config:
      db_path: {dir}/sqlite_vec.db
  tool_runtime:
  - provider_id: rag-runtime
    provider_type: inline::rag-runtime
    config: {{}}
  agents:
  - provider_id: meta-reference
    provider_type: inline::meta-reference
    config:
      persistence_store:
        type: sqlite
        db_path: {dir}/agents_store.db
metadata_store:
  type: sqlite
  db_path: {dir}/registry.db
models:
- model_id: {LLM}
  provider_id: canned
  model_type: llm
- model_id: {EMBEDDER}
  provider_id: canned
  model_type: embedding
  metadata:
    embedding_dimension: {dim}
shields:
- shield_id: CodeScanner
  provider_id: code-scanner
tool_groups:
- toolgroup_id: builtin::rag
  provider_id: rag-runtime
",
        dim = upstream::DIMENSION
    )
}

pub async fn start() -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let upstream = upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = run_yaml(&upstream.base, dir.path());
    let loaded = llama_stack_distribution::load_str(
        &text,
        &Default::default(),
        &llama_stack_distribution::builtin_registry(),
    )
    .unwrap_or_else(|e| panic!("run.yaml does not load: {e}"));
    let stack = llama_stack_distribution::build(loaded)
        .await
        .unwrap_or_else(|e| panic!("the stack does not build: {e}"))
        .stack;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = listener.local_addr().unwrap();
    tokio::spawn(llama_stack_grpc::serve(
        listener,
        stack.clone(),
        std::future::pending(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = format!("http://{}", listener.local_addr().unwrap());
    let app = llama_stack_http::router(stack.clone());
    // As `llama-stack run` serves HTTP: with TCP_NODELAY, or streams stall on delayed ACKs.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Harness {
        stack,
        channel,
        http,
        client: reqwest::Client::new(),
        grpc_addr,
        upstream,
        _dir: dir,
    }
}

impl Harness {
    pub fn inference(&self) -> pb::inference_service_client::InferenceServiceClient<Channel> {
        pb::inference_service_client::InferenceServiceClient::new(self.channel.clone())
    }
    pub fn models(&self) -> pb::models_service_client::ModelsServiceClient<Channel> {
        pb::models_service_client::ModelsServiceClient::new(self.channel.clone())
    }
    pub fn inspect(&self) -> pb::inspect_service_client::InspectServiceClient<Channel> {
        pb::inspect_service_client::InspectServiceClient::new(self.channel.clone())
    }

    /// A POST to the HTTP server: status and body (JSON, or the raw text as a JSON string).
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let reply = self
            .client
            .post(format!("{}{path}", self.http))
            .json(&body)
            .send()
            .await
            .unwrap();
        read(reply).await
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let reply = self
            .client
            .get(format!("{}{path}", self.http))
            .send()
            .await
            .unwrap();
        read(reply).await
    }

    /// The `data:` items of an SSE reply.
    pub async fn post_sse(&self, path: &str, body: serde_json::Value) -> Vec<serde_json::Value> {
        let (_, text) = self.post(path, body).await;
        text.as_str()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

async fn read(reply: reqwest::Response) -> (u16, serde_json::Value) {
    let status = reply.status().as_u16();
    let text = reply.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// Text content of a proto message, for comparisons.
pub fn text_of(content: &Option<pb::InterleavedContent>) -> String {
    use pb::content_item::Item;
    use pb::interleaved_content::Content;
    match content.as_ref().and_then(|c| c.content.as_ref()) {
        None => String::new(),
        Some(Content::Text(t)) => t.clone(),
        Some(Content::Items(list)) => list
            .items
            .iter()
            .filter_map(|i| match &i.item {
                Some(Item::Text(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(""),
    }
}

pub fn text(s: &str) -> Option<pb::InterleavedContent> {
    Some(pb::InterleavedContent {
        content: Some(pb::interleaved_content::Content::Text(s.to_string())),
    })
}

pub fn user(s: &str) -> pb::Message {
    pb::Message {
        message: Some(pb::message::Message::User(pb::UserMessage {
            content: text(s),
            context: None,
        })),
    }
}

/// A protobuf value as JSON, for comparisons with HTTP bodies.
pub fn json_of(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::ListValue(l)) => l.values.iter().map(json_of).collect(),
        Some(Kind::StructValue(s)) => s
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), json_of(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}
