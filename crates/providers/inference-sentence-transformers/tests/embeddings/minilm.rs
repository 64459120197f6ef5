//! What the real all-MiniLM-L6-v2 computes: similarities, unit vectors, batching, truncation,
//! dimensions and token counts.

use llama_stack_core::ErrorKind;
use llama_stack_provider_inference_sentence_transformers::SentenceTransformersConfig;

use crate::support::{config_for, dot, embed, max_abs_diff, minilm, minilm_dir, request};

const FOOD: &str = "A man is eating food.";
const BREAD: &str = "A man is eating a piece of bread.";
const UNRELATED: &str = "The new movie is awesome and the stock market rose today.";

#[tokio::test]
async fn similar_sentences_score_as_sentence_transformers_does() {
    let Some(dir) = minilm_dir() else { return };
    let (provider, model) = minilm(config_for(&dir)).await;
    let out = embed(&provider, &model, request(&[FOOD, BREAD, UNRELATED]))
        .await
        .unwrap();
    let v = &out.vectors;
    let close = dot(&v[0], &v[1]);
    let far = dot(&v[0], &v[2]);
    println!("cosine(food, bread) = {close:.4}, cosine(food, unrelated) = {far:.4}");
    // sentence-transformers gives 0.7553 for this pair.
    assert!((close - 0.755).abs() < 0.002, "{close}");
    assert!(close > far + 0.3, "{close} vs {far}");
}

#[tokio::test]
async fn vectors_have_the_native_length_and_unit_norm() {
    let Some(dir) = minilm_dir() else { return };
    let (provider, model) = minilm(config_for(&dir)).await;
    let out = embed(&provider, &model, request(&[FOOD, "", "x"]))
        .await
        .unwrap();
    for v in &out.vectors {
        assert_eq!(v.len(), 384);
        assert!((dot(v, v) - 1.0).abs() < 1e-5);
    }
}

#[tokio::test]
async fn a_batch_equals_one_input_at_a_time() {
    let Some(dir) = minilm_dir() else { return };
    // Small batches, so one request runs several padded forward passes.
    let config = SentenceTransformersConfig {
        max_batch_size: 4,
        ..config_for(&dir)
    };
    let (provider, model) = minilm(config).await;
    let texts: Vec<String> = (0..11)
        .map(|i| format!("Sentence number {i} {}", "with more words ".repeat(i * 3)))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batched = embed(&provider, &model, request(&refs)).await.unwrap();
    let mut worst = 0f32;
    for (i, text) in refs.iter().enumerate() {
        let alone = embed(&provider, &model, request(&[text])).await.unwrap();
        worst = worst.max(max_abs_diff(&batched.vectors[i], &alone.vectors[0]));
    }
    println!("batched vs one-by-one: max abs diff {worst:e}");
    assert!(worst < 1e-5, "{worst}");
}

#[tokio::test]
async fn text_items_and_strings_embed_alike_and_tokens_are_counted() {
    let Some(dir) = minilm_dir() else { return };
    let (provider, model) = minilm(config_for(&dir)).await;
    let mut req = request(&[FOOD]);
    req.contents
        .push(serde_json::json!({"type": "text", "text": FOOD}));
    req.task_type = Some("query".into());
    let out = embed(&provider, &model, req).await.unwrap();
    assert_eq!(out.vectors[0], out.vectors[1]);
    // [CLS] a man is eating food . [SEP]
    assert_eq!(out.prompt_tokens, 16);
}

/// "hello" is one token, so this is 510 tokens plus [CLS] and [SEP]: exactly the 512 the model
/// reads.
fn hellos() -> String {
    "hello ".repeat(510)
}

#[tokio::test]
async fn too_long_input_is_refused_without_truncation() {
    let Some(dir) = minilm_dir() else { return };
    let (provider, model) = minilm(config_for(&dir)).await;
    let fits = hellos();
    assert!(embed(&provider, &model, request(&[&fits])).await.is_ok());
    let long = format!("{fits} world");
    for truncation in [None, Some("none")] {
        let mut req = request(&[FOOD, &long]);
        req.text_truncation = truncation.map(str::to_string);
        let err = embed(&provider, &model, req).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("input 1 is 513 tokens"), "{err}");
        assert!(err.message().contains("at most 512"), "{err}");
    }
}

#[tokio::test]
async fn end_truncation_keeps_the_start_and_start_truncation_the_end() {
    let Some(dir) = minilm_dir() else { return };
    let (provider, model) = minilm(config_for(&dir)).await;
    let kept = hellos();
    let exact = embed(&provider, &model, request(&[&kept])).await.unwrap();

    let mut req = request(&[&format!("{kept} {}", "bread ".repeat(100))]);
    req.text_truncation = Some("end".into());
    let end = embed(&provider, &model, req).await.unwrap();
    assert!(max_abs_diff(&end.vectors[0], &exact.vectors[0]) < 1e-6);
    assert_eq!(end.prompt_tokens, 512);

    let mut req = request(&[&format!("{} {kept}", "bread ".repeat(100))]);
    req.text_truncation = Some("start".into());
    let start = embed(&provider, &model, req).await.unwrap();
    assert!(max_abs_diff(&start.vectors[0], &exact.vectors[0]) < 1e-6);
}

#[tokio::test]
async fn output_dimension_must_be_native_for_a_model_without_matryoshka() {
    let Some(dir) = minilm_dir() else { return };
    let (provider, model) = minilm(config_for(&dir)).await;
    let mut req = request(&[FOOD]);
    req.output_dimension = Some(384);
    assert_eq!(
        embed(&provider, &model, req).await.unwrap().vectors[0].len(),
        384
    );
    let mut req = request(&[FOOD]);
    req.output_dimension = Some(128);
    let err = embed(&provider, &model, req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("not a Matryoshka model"), "{err}");

    // Registered as Matryoshka, the prefix comes back renormalized.
    let mut nested = model.clone();
    nested
        .metadata
        .insert("matryoshka_dimensions".into(), serde_json::json!([128]));
    let mut req = request(&[FOOD]);
    req.output_dimension = Some(128);
    let cut = embed(&provider, &nested, req).await.unwrap();
    assert_eq!(cut.vectors[0].len(), 128);
    assert!((dot(&cut.vectors[0], &cut.vectors[0]) - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn concurrent_requests_are_all_answered() {
    let Some(dir) = minilm_dir() else { return };
    let (provider, model) = minilm(config_for(&dir)).await;
    let provider = std::sync::Arc::new(provider);
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (provider, model) = (provider.clone(), model.clone());
            tokio::spawn(async move {
                let text = format!("request {i}");
                embed(&provider, &model, request(&[&text])).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().vectors.len(), 1);
    }
}
