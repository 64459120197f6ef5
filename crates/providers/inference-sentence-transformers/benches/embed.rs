//! Embedding throughput of `inline::sentence-transformers` on the real all-MiniLM-L6-v2.
//!
//! `cargo bench -p llama-stack-provider-inference-sentence-transformers --bench embed
//! --profile dev` (after scripts/fetch-minilm.sh; `MINILM_MODEL_PATH` moves the model) embeds
//! short sentences through the provider, one per request and 32 per request, and prints
//! sentences/s. `BENCH_SENTENCES=256` sets how many are embedded per row.

use std::path::PathBuf;
use std::time::Instant;

use llama_stack_inference::InferenceProvider;
use llama_stack_provider_inference_sentence_transformers::{
    SentenceTransformersConfig, SentenceTransformersProvider,
};
use llama_stack_stack::ProviderContext;
use llama_stack_types::{EmbeddingsRequest, Model, ModelType};

const SUBJECTS: &[&str] = &[
    "A man",
    "The quick brown fox",
    "Our support team",
    "A llama in the Andes",
    "The distributed key-value store",
];
const PREDICATES: &[&str] = &[
    "is eating a piece of bread.",
    "jumps over the lazy dog near the river bank.",
    "answers every question about invoices within one business day.",
    "carries wool down the mountain before the winter storms arrive.",
    "replicates each write to three nodes before acknowledging it.",
    "reads the morning paper.",
];

fn sentences(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{} {}",
                SUBJECTS[i % SUBJECTS.len()],
                PREDICATES[(i / SUBJECTS.len()) % PREDICATES.len()]
            )
        })
        .collect()
}

fn model_dir() -> PathBuf {
    std::env::var_os("MINILM_MODEL_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".llama/test-models/all-MiniLM-L6-v2")
        })
}

fn request(texts: &[String]) -> EmbeddingsRequest {
    EmbeddingsRequest {
        model_id: "all-MiniLM-L6-v2".into(),
        contents: texts.iter().map(|t| serde_json::json!(t)).collect(),
        text_truncation: None,
        output_dimension: None,
        task_type: None,
    }
}

#[tokio::main]
async fn main() {
    let dir = model_dir();
    if !dir.join("model.safetensors").is_file() {
        eprintln!(
            "all-MiniLM-L6-v2 is not at {}; run scripts/fetch-minilm.sh",
            dir.display()
        );
        std::process::exit(1);
    }
    let total: usize = std::env::var("BENCH_SENTENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let config = SentenceTransformersConfig {
        model_path: Some(dir.to_string_lossy().into_owned()),
        max_batch_size: 32,
        ..Default::default()
    };
    let provider = SentenceTransformersProvider::new(config, ProviderContext::default()).unwrap();
    let model = Model {
        identifier: "sentence-transformers/all-MiniLM-L6-v2".into(),
        provider_resource_id: "all-MiniLM-L6-v2".into(),
        provider_id: "sentence-transformers".into(),
        resource_type: "model".into(),
        metadata: serde_json::json!({"embedding_dimension": 384})
            .as_object()
            .cloned()
            .unwrap(),
        model_type: ModelType::Embedding,
        owner: None,
    };
    let started = Instant::now();
    provider.register_model(&model).await.unwrap();
    println!("load: {:.2} s", started.elapsed().as_secs_f64());

    let texts = sentences(total);
    // Warm-up: the first forward pass allocates and faults the weights in.
    provider
        .embeddings(&model, request(&texts[..8]))
        .await
        .unwrap();

    println!("| inputs per request | sentences | tokens | seconds | sentences/s |");
    println!("|---|---|---|---|---|");
    for per_request in [1usize, 32] {
        let started = Instant::now();
        let mut tokens = 0;
        for chunk in texts.chunks(per_request) {
            let out = provider.embeddings(&model, request(chunk)).await.unwrap();
            tokens += out.prompt_tokens;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "| {per_request} | {total} | {tokens} | {seconds:.2} | {:.1} |",
            total as f64 / seconds
        );
    }
}
