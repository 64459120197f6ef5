//! The generated gRPC clients against the real binary: `llama-stack run` on a run.yaml written
//! into a temporary folder (a canned OpenAI-compatible upstream served by the test, the code
//! scanner, sqlite-vec, the RAG runtime and meta-reference agents), both ports open, and each
//! gRPC answer compared with the same request over HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use llama_stack_grpc::pb;
use pb::turn_event_payload::EventType;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

// The canned OpenAI-compatible upstream of the gRPC crate's tests: deterministic answers, so
// both transports can be compared exactly.
#[allow(dead_code)] // markers and counters only the in-process tests use
#[path = "../../grpc/tests/api/upstream.rs"]
mod upstream;

use upstream::{ANSWER, DIMENSION};

const BIN: &str = env!("CARGO_BIN_EXE_llama-stack");
const LLM: &str = "canned-llm";
const EMBEDDER: &str = "canned-embed";
/// Code the scanner blocks (a weak hash).
const INSECURE: &str = "import hashlib\ndigest = hashlib.md5(password).hexdigest()\n";
/// How long a debug build on a busy machine may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(120);

// The server under test.

fn run_yaml(upstream: &str, dir: &Path, grpc_port: u16) -> String {
    let dir = dir.display();
    format!(
        "version: 2
image_name: grpc-binary-test
apis: [inference, safety, vector_io, tool_runtime, agents]
server:
  host: 127.0.0.1
  grpc_port: {grpc_port}
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
    embedding_dimension: {DIMENSION}
shields:
- shield_id: CodeScanner
  provider_id: code-scanner
tool_groups:
- toolgroup_id: builtin::rag
  provider_id: rag-runtime
"
    )
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `llama-stack run`, killed on drop.
struct Server {
    child: Child,
    /// The HTTP base URL.
    http: String,
    /// Where gRPC is served (or, with `--grpc-port 0`, where run.yaml asked for it).
    grpc: SocketAddr,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Serves on fresh ports, gRPC included.
    async fn start() -> Server {
        let grpc_port = free_port();
        Server::start_with(grpc_port, grpc_port).await
    }

    /// run.yaml says `server.grpc_port: configured`; the command line says `--grpc-port flag`.
    async fn start_with(configured: u16, flag: u16) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let upstream = upstream::start().await.base;
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("run.yaml");
        std::fs::write(&yaml, run_yaml(&upstream, dir.path(), configured)).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let port = free_port();
        let child = Command::new(BIN)
            .arg("run")
            .arg(&yaml)
            .args([
                "--port",
                &port.to_string(),
                "--grpc-port",
                &flag.to_string(),
            ])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let mut server = Server {
            child,
            http: format!("http://127.0.0.1:{port}"),
            grpc: SocketAddr::from(([127, 0, 0, 1], configured)),
            client: reqwest::Client::new(),
            dir,
        };
        server.wait_healthy().await;
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "llama-stack exited ({status}) before serving:\n{}",
                    self.log()
                );
            }
            let reply = self
                .client
                .get(format!("{}/v1/health", self.http))
                .send()
                .await;
            if reply.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "llama-stack was not healthy within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("no gRPC at {}: {e}\n{}", self.grpc, self.log()))
    }

    /// Status and body (JSON, or the raw text as a JSON string).
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let reply = self.client.post(format!("{}{path}", self.http)).json(&body);
        read(reply.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let reply = self.client.get(format!("{}{path}", self.http));
        read(reply.send().await.unwrap()).await
    }

    /// The `data:` items of an SSE reply.
    async fn post_sse(&self, path: &str, body: Value) -> Vec<Value> {
        let (status, text) = self.post(path, body).await;
        assert_eq!(status, 200, "{text}");
        text.as_str()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

async fn read(reply: reqwest::Response) -> (u16, Value) {
    let status = reply.status().as_u16();
    let text = reply.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn text(s: &str) -> Option<pb::InterleavedContent> {
    Some(pb::InterleavedContent {
        content: Some(pb::interleaved_content::Content::Text(s.to_string())),
    })
}

fn user(s: &str) -> pb::Message {
    pb::Message {
        message: Some(pb::message::Message::User(pb::UserMessage {
            content: text(s),
            context: None,
        })),
    }
}

fn text_of(content: &Option<pb::InterleavedContent>) -> String {
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
            .collect(),
    }
}

fn chat_request(model: &str) -> pb::ChatCompletionRequest {
    pb::ChatCompletionRequest {
        model_id: model.into(),
        messages: vec![user("What is the capital of France?")],
        ..Default::default()
    }
}

fn http_chat(model: &str, stream: bool) -> Value {
    json!({"model_id": model, "stream": stream,
           "messages": [{"role": "user", "content": "What is the capital of France?"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_health_and_models_over_grpc() {
    let server = Server::start().await;
    let channel = server.channel().await;
    let mut inspect = pb::inspect_service_client::InspectServiceClient::new(channel.clone());
    let health = inspect.health(pb::HealthRequest {}).await.unwrap();
    assert_eq!(health.into_inner().status(), pb::HealthStatus::Ok);
    let version = inspect.version(pb::VersionRequest {}).await.unwrap();
    let (_, http_version) = server.get("/v1/version").await;
    assert_eq!(version.into_inner().version, http_version["version"]);

    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "llama_stack.v1.InferenceService",
        "llama_stack.v1.AgentsService",
    ] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(
            reply.into_inner().status(),
            ServingStatus::Serving,
            "{service}"
        );
    }

    let mut models = pb::models_service_client::ModelsServiceClient::new(channel);
    let list = models.list_models(pb::ListModelsRequest {}).await.unwrap();
    let list = list.into_inner().data;
    let mut ids: Vec<&str> = list.iter().map(|m| m.identifier.as_str()).collect();
    ids.sort();
    // run.yaml models register as `<provider_id>/<model_id>`.
    assert_eq!(ids, ["canned/canned-embed", "canned/canned-llm"]);
    let llm = list.iter().find(|m| m.provider_resource_id == LLM).unwrap();
    assert_eq!(llm.model_type(), pb::ModelType::Llm);
    let (status, http) = server.get("/v1/models").await;
    assert_eq!(status, 200, "{http}");
    let mut http_ids: Vec<&str> = http["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["identifier"].as_str().unwrap())
        .collect();
    http_ids.sort();
    assert_eq!(ids, http_ids);

    let missing = models
        .get_model(pb::GetModelRequest {
            model_id: "no-such-model".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_unary_and_streamed_match_http() {
    let server = Server::start().await;
    let mut inference =
        pb::inference_service_client::InferenceServiceClient::new(server.channel().await);

    let reply = inference.chat_completion(chat_request(LLM)).await.unwrap();
    let message = reply.into_inner().completion_message.unwrap();
    assert_eq!(message.stop_reason(), pb::StopReason::EndOfTurn);
    let (status, http) = server
        .post("/v1/inference/chat-completion", http_chat(LLM, false))
        .await;
    assert_eq!(status, 200, "{http}");
    assert_eq!(text_of(&message.content), ANSWER);
    assert_eq!(http["completion_message"]["content"], ANSWER);

    let mut stream = inference
        .stream_chat_completion(chat_request(LLM))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(chunk) = stream.next().await {
        events.push(chunk.unwrap().event.unwrap());
    }
    assert_eq!(events[0].event_type(), pb::ChatEventType::Start);
    assert_eq!(
        events.last().unwrap().event_type(),
        pb::ChatEventType::Complete
    );
    let grpc_text: String = events
        .iter()
        .filter_map(|e| match e.delta.as_ref()?.delta.as_ref()? {
            pb::content_delta::Delta::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let sse = server
        .post_sse("/v1/inference/chat-completion", http_chat(LLM, true))
        .await;
    let http_text: String = sse
        .iter()
        .filter_map(|e| e["event"]["delta"]["text"].as_str())
        .collect();
    assert_eq!(grpc_text, ANSWER);
    assert_eq!(grpc_text, http_text);
    assert_eq!(events.len(), sse.len());

    // An unknown model: NOT_FOUND over gRPC, 400 on the classic HTTP route.
    let missing = inference
        .chat_completion(chat_request("no-such-model"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let missing = inference
        .stream_chat_completion(chat_request("no-such-model"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let (status, body) = server
        .post(
            "/v1/inference/chat-completion",
            http_chat("no-such-model", false),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shield_and_vector_query_match_http() {
    let server = Server::start().await;
    let channel = server.channel().await;
    let mut safety = pb::safety_service_client::SafetyServiceClient::new(channel.clone());
    for (snippet, blocked) in [(INSECURE, true), ("print('hello')\n", false)] {
        let grpc = safety
            .run_shield(pb::RunShieldRequest {
                shield_id: "CodeScanner".into(),
                messages: vec![user(snippet)],
                params: None,
            })
            .await
            .unwrap()
            .into_inner();
        let (status, http) = server
            .post(
                "/v1/safety/run-shield",
                json!({"shield_id": "CodeScanner", "params": {},
                       "messages": [{"role": "user", "content": snippet}]}),
            )
            .await;
        assert_eq!(status, 200, "{http}");
        assert_eq!(grpc.violation.is_some(), blocked, "{snippet}");
        assert_eq!(!http["violation"].is_null(), blocked, "{http}");
        if let Some(violation) = grpc.violation {
            assert_eq!(violation.violation_level(), pb::ViolationLevel::Error);
            assert_eq!(http["violation"]["violation_level"], "error");
            assert_eq!(
                violation.user_message.as_deref(),
                http["violation"]["user_message"].as_str()
            );
        }
    }

    let mut vector_io = pb::vector_io_service_client::VectorIoServiceClient::new(channel);
    let db = vector_io
        .register_vector_db(pb::RegisterVectorDbRequest {
            vector_db_id: "facts".into(),
            embedding_model: EMBEDDER.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(db.embedding_dimension, DIMENSION as u32);
    let facts = [
        ("paris", "Paris is the capital of France"),
        ("bananas", "Bananas are yellow fruit"),
        ("rhine", "The Rhine flows through Germany"),
    ];
    let chunks = facts
        .iter()
        .map(|(id, fact)| pb::Chunk {
            content: text(fact),
            chunk_id: Some(id.to_string()),
            ..Default::default()
        })
        .collect();
    vector_io
        .insert(pb::InsertChunksRequest {
            vector_db_id: "facts".into(),
            chunks,
            ttl_seconds: None,
        })
        .await
        .unwrap();
    let question = "What is the capital of France?";
    let grpc = vector_io
        .query(pb::QueryChunksRequest {
            vector_db_id: "facts".into(),
            query: text(question),
            max_chunks: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (status, http) = server
        .post(
            "/v1/vector-io/query",
            json!({"vector_db_id": "facts", "query": question, "params": {"max_chunks": 2}}),
        )
        .await;
    assert_eq!(status, 200, "{http}");
    let grpc_ids: Vec<&str> = grpc
        .chunks
        .iter()
        .map(|c| c.chunk_id.as_deref().unwrap_or_default())
        .collect();
    let http_ids: Vec<&str> = http["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["chunk_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(grpc_ids.len(), 2);
    assert_eq!(grpc_ids[0], "paris");
    assert_eq!(grpc_ids, http_ids);
    let http_scores: Vec<f32> = serde_json::from_value(http["scores"].clone()).unwrap();
    assert_eq!(grpc.scores, http_scores);
}

/// The `event_type` tag of each event, as the HTTP payload names it.
fn tag(event: &EventType) -> &'static str {
    match event {
        EventType::StepStart(_) => "step_start",
        EventType::StepProgress(_) => "step_progress",
        EventType::StepComplete(_) => "step_complete",
        EventType::TurnComplete(_) => "turn_complete",
        EventType::TurnAwaitingInput(_) => "turn_awaiting_input",
    }
}

/// Each step opens, makes progress and completes before the next opens; the turn completes
/// last.
fn assert_well_ordered(events: &[EventType]) {
    let mut open: Option<&str> = None;
    for (i, event) in events.iter().enumerate() {
        let last = i + 1 == events.len();
        match event {
            EventType::StepStart(s) => {
                assert!(open.is_none(), "step {} opened inside another", s.step_id);
                open = Some(&s.step_id);
            }
            EventType::StepProgress(s) => assert_eq!(open, Some(s.step_id.as_str())),
            EventType::StepComplete(s) => {
                assert_eq!(open, Some(s.step_id.as_str()));
                open = None;
            }
            EventType::TurnComplete(_) => assert!(last && open.is_none(), "early turn_complete"),
            EventType::TurnAwaitingInput(_) => panic!("no client tool was offered"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_turn_streams_its_events_in_order() {
    let server = Server::start().await;
    let mut agents = pb::agents_service_client::AgentsServiceClient::new(server.channel().await);
    let config = pb::AgentConfig {
        model: LLM.into(),
        instructions: "You are terse.".into(),
        input_shields: vec!["CodeScanner".into()],
        ..Default::default()
    };
    let agent_id = agents
        .create_agent(pb::CreateAgentRequest {
            agent_config: Some(config),
        })
        .await
        .unwrap()
        .into_inner()
        .agent_id;
    let session_id = agents
        .create_session(pb::CreateSessionRequest {
            agent_id: agent_id.clone(),
            session_name: "grpc".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session_id;
    let stream = agents
        .create_turn(pb::CreateTurnRequest {
            agent_id: agent_id.clone(),
            session_id,
            messages: vec![user("What is the capital of France?")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let events: Vec<EventType> = stream
        .map(|chunk| {
            chunk
                .unwrap()
                .event
                .unwrap()
                .payload
                .unwrap()
                .event_type
                .unwrap()
        })
        .collect()
        .await;
    assert_well_ordered(&events);
    let Some(EventType::StepStart(first)) = events.first() else {
        panic!("the turn starts with a step: {events:?}");
    };
    assert_eq!(first.step_type(), pb::StepType::ShieldCall);
    let Some(EventType::TurnComplete(done)) = events.last() else {
        panic!("the turn ends complete: {events:?}");
    };
    let turn = done.turn.clone().unwrap();
    assert_eq!(text_of(&turn.output_message.unwrap().content), ANSWER);
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            EventType::StepProgress(p) => match p.delta.as_ref()?.delta.as_ref()? {
                pb::content_delta::Delta::Text(t) => Some(t.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(streamed, ANSWER);

    let (_, session) = server
        .post(
            &format!("/v1/agents/{agent_id}/session"),
            json!({"session_name": "http"}),
        )
        .await;
    let session = session["session_id"].as_str().unwrap();
    let sse = server
        .post_sse(
            &format!("/v1/agents/{agent_id}/session/{session}/turn"),
            json!({"stream": true,
                   "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
        )
        .await;
    let http_tags: Vec<&str> = sse
        .iter()
        .map(|e| e["event"]["payload"]["event_type"].as_str().unwrap())
        .collect();
    let grpc_tags: Vec<&str> = events.iter().map(tag).collect();
    assert_eq!(grpc_tags, http_tags);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_port_zero_serves_no_grpc() {
    // run.yaml asks for gRPC on a port; the flag turns it off.
    let configured = free_port();
    let server = Server::start_with(configured, 0).await;
    let refused = tokio::net::TcpStream::connect(server.grpc)
        .await
        .unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{refused}"
    );
    assert!(!server.log().contains("Serving gRPC"), "{}", server.log());
    let (status, _) = server.get("/v1/health").await;
    assert_eq!(status, 200);
}

/// `examples/grpc-client` against the binary; it is a separate package, so it runs only when
/// it was built (`cargo build -p grpc-client-example`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_client_example_chats_and_runs_a_turn() {
    let example = Path::new(BIN).with_file_name("grpc-client-example");
    if !example.exists() {
        println!(
            "skipped: {} is not built (cargo build -p grpc-client-example)",
            example.display()
        );
        return;
    }
    let server = Server::start().await;
    let output = tokio::process::Command::new(&example)
        .arg(LLM)
        .args(["--url", &format!("http://{}", server.grpc)])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // The streamed chat, then the turn's progress and its final answer.
    assert!(stdout.matches(ANSWER).count() >= 3, "{stdout}");
    assert!(stdout.contains("turn_complete"), "{stdout}");
}
