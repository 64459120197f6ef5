//! Throughput of the gRPC transport against HTTP/JSON over the same in-process stack: a shield
//! check and a vector query (unary), and a 32-token chat stream from a canned upstream, each at
//! 1 and 32 concurrent clients. Every client has its own connection; the upstream answers at
//! once, so the figures are the transports' own cost plus the shared core's.
//!
//! ```sh
//! cargo build -p llama-stack-grpc --benches && $(ls -t target/debug/deps/transport-* | grep -v '\.d$' | head -1)   # or cargo bench
//! ```
//!
//! `BENCH_SECS` (default 3) is the measuring time of each point, after a short warm-up.

#[allow(dead_code)] // the tests' helpers; the bench uses a subset
#[path = "../tests/api/support.rs"]
mod support;
#[allow(dead_code)]
#[path = "../tests/api/upstream.rs"]
mod upstream;

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use llama_stack_grpc::pb;
use serde_json::json;
use tonic::transport::Channel;

use support::{EMBEDDER, Harness, LLM, text, user};

const INSECURE: &str = "import hashlib\ndigest = hashlib.md5(password).hexdigest()\n";
const STREAM_PROMPT: &str = "COUNT=32";

/// One client's connections: a gRPC channel and an HTTP client of its own.
#[derive(Clone)]
struct Client {
    channel: Channel,
    http: reqwest::Client,
    base: String,
}

type Op = fn(Client) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

fn grpc_shield(c: Client) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> {
    Box::pin(async move {
        let mut safety = pb::safety_service_client::SafetyServiceClient::new(c.channel);
        let reply = safety
            .run_shield(pb::RunShieldRequest {
                shield_id: "CodeScanner".into(),
                messages: vec![user(INSECURE)],
                params: None,
            })
            .await;
        reply.is_ok_and(|r| r.into_inner().violation.is_some())
    })
}

fn http_shield(c: Client) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> {
    Box::pin(async move {
        let body = json!({"shield_id": "CodeScanner", "params": {},
                          "messages": [{"role": "user", "content": INSECURE}]});
        let reply = c
            .http
            .post(format!("{}/v1/safety/run-shield", c.base))
            .json(&body)
            .send()
            .await;
        match reply {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|v| !v["violation"].is_null()),
            Err(_) => false,
        }
    })
}

fn grpc_query(c: Client) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> {
    Box::pin(async move {
        let mut vector_io = pb::vector_io_service_client::VectorIoServiceClient::new(c.channel);
        let reply = vector_io
            .query(pb::QueryChunksRequest {
                vector_db_id: "bench".into(),
                query: text("fact number 7 about rivers"),
                max_chunks: Some(5),
                ..Default::default()
            })
            .await;
        reply.is_ok_and(|r| r.into_inner().chunks.len() == 5)
    })
}

fn http_query(c: Client) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> {
    Box::pin(async move {
        let body = json!({"vector_db_id": "bench", "query": "fact number 7 about rivers",
                          "params": {"max_chunks": 5}});
        let reply = c
            .http
            .post(format!("{}/v1/vector-io/query", c.base))
            .json(&body)
            .send()
            .await;
        match reply {
            Ok(r) => r
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["chunks"].as_array().is_some_and(|c| c.len() == 5)),
            Err(_) => false,
        }
    })
}

fn grpc_stream(c: Client) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> {
    Box::pin(async move {
        let mut inference = pb::inference_service_client::InferenceServiceClient::new(c.channel);
        let request = pb::ChatCompletionRequest {
            model_id: LLM.into(),
            messages: vec![user(STREAM_PROMPT)],
            ..Default::default()
        };
        let Ok(reply) = inference.stream_chat_completion(request).await else {
            return false;
        };
        let mut stream = reply.into_inner();
        let mut chunks = 0;
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                return false;
            }
            chunks += 1;
        }
        // start + 32 tokens + complete
        chunks >= 34
    })
}

fn http_stream(c: Client) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> {
    Box::pin(async move {
        let body = json!({"model_id": LLM, "stream": true,
                          "messages": [{"role": "user", "content": STREAM_PROMPT}]});
        let Ok(reply) = c
            .http
            .post(format!("{}/v1/inference/chat-completion", c.base))
            .json(&body)
            .send()
            .await
        else {
            return false;
        };
        let mut body = reply.bytes_stream();
        let mut text = Vec::new();
        while let Some(bytes) = body.next().await {
            match bytes {
                Ok(b) => text.extend_from_slice(&b),
                Err(_) => return false,
            }
        }
        let events = String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| l.starts_with("data: "))
            .filter(|l| serde_json::from_str::<serde_json::Value>(&l[6..]).is_ok())
            .count();
        events >= 34
    })
}

struct Point {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    failures: usize,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `op` run back to back by each client for `secs`.
async fn measure(clients: &[Client], secs: f64, op: Op) -> Point {
    // Warm-up: connections open, caches fill.
    for client in clients {
        op(client.clone()).await;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .map(|client| {
            tokio::spawn(async move {
                let (mut latencies, mut failures) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if op(client.clone()).await {
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        failures += 1;
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let (mut all, mut failures) = (Vec::new(), 0);
    for task in tasks {
        let (latencies, failed) = task.await.unwrap();
        all.extend(latencies);
        failures += failed;
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Point {
        per_second: all.len() as f64 / start.elapsed().as_secs_f64(),
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        failures,
    }
}

async fn clients(h: &Harness, grpc_addr: &str, n: usize) -> Vec<Client> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Client {
            channel: Channel::from_shared(grpc_addr.to_string())
                .unwrap()
                .connect()
                .await
                .unwrap(),
            http: reqwest::Client::new(),
            base: h.http.clone(),
        });
    }
    out
}

async fn seed_vector_db(h: &Harness) {
    let mut vector_io = pb::vector_io_service_client::VectorIoServiceClient::new(h.channel.clone());
    vector_io
        .register_vector_db(pb::RegisterVectorDbRequest {
            vector_db_id: "bench".into(),
            embedding_model: EMBEDDER.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let topics = ["rivers", "mountains", "cities", "fruit", "stars"];
    let chunks = (0..200)
        .map(|i| pb::Chunk {
            content: text(&format!(
                "fact number {i} about {}",
                topics[i % topics.len()]
            )),
            ..Default::default()
        })
        .collect();
    vector_io
        .insert(pb::InsertChunksRequest {
            vector_db_id: "bench".into(),
            chunks,
            ttl_seconds: None,
        })
        .await
        .unwrap();
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let h = support::start().await;
        let grpc_addr = format!("http://{}", h.grpc_addr);
        seed_vector_db(&h).await;
        let workloads: [(&str, &str, Op, Op); 3] = [
            ("shield check (unary)", "calls/s", grpc_shield, http_shield),
            (
                "vector query, 200 chunks (unary)",
                "calls/s",
                grpc_query,
                http_query,
            ),
            (
                "chat stream, 32 tokens",
                "streams/s",
                grpc_stream,
                http_stream,
            ),
        ];
        println!(
            "{secs} s per point, {} CPUs",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!();
        println!("| workload | clients | transport | rate | p50 ms | p99 ms | failures |");
        println!("| --- | ---: | --- | ---: | ---: | ---: | ---: |");
        for (name, unit, grpc, http) in workloads {
            for n in [1, 32] {
                let pool = clients(&h, &grpc_addr, n).await;
                for (transport, op) in [("gRPC", grpc), ("HTTP/JSON", http)] {
                    let p = measure(&pool, secs, op).await;
                    println!(
                        "| {name} | {n} | {transport} | {:.0} {unit} | {:.2} | {:.2} | {} |",
                        p.per_second, p.p50_ms, p.p99_ms, p.failures
                    );
                }
            }
        }
    });
}
