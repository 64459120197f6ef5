//! Reranking through an upstream's Jina/Cohere-shaped rerank route (vLLM's `/rerank`,
//! llama-server's `/v1/rerank`): `{model, query, documents, top_n}` answered with
//! `results: [{index, relevance_score, ...}]`.

use llama_stack_core::{Error, ErrorKind, Result};
use llama_stack_inference::rerank::rerank_texts;
use llama_stack_types::{RerankData, RerankRequest, RerankResponse};
use serde_json::{Value, json};

/// The upstream request: the texts, and `top_n` when the client limits the results.
pub fn rerank_body(request: &RerankRequest) -> Result<Value> {
    let (query, documents) = rerank_texts(request)?;
    let mut body = json!({"model": request.model, "query": query, "documents": documents});
    if let Some(top_n) = request.max_num_results {
        body["top_n"] = top_n.into();
    }
    Ok(body)
}

/// The upstream's `results` as rerank data, in the order sent (the stack sorts them).
pub fn rerank_answer(label: &str, answer: Value) -> Result<RerankResponse> {
    let malformed = |what: String| {
        Error::new(
            ErrorKind::Upstream,
            format!("{label} answered the rerank request {what}"),
        )
    };
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("without a `results` list".into()))?;
    let data = results
        .iter()
        .enumerate()
        .map(|(i, result)| {
            let index = result.get("index").and_then(Value::as_u64);
            let score = result.get("relevance_score").and_then(Value::as_f64);
            match (index, score) {
                (Some(index), Some(relevance_score)) => Ok(RerankData {
                    index: u32::try_from(index)
                        .map_err(|_| malformed(format!("with index {index}")))?,
                    relevance_score,
                }),
                _ => Err(malformed(format!(
                    "with result {i} lacking a numeric `index` or `relevance_score`: {result}"
                ))),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RerankResponse { data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_texts_and_top_n() {
        let request: RerankRequest = serde_json::from_value(json!({
            "model": "BAAI/bge-reranker-base", "query": {"type": "text", "text": "q"},
            "items": ["a", {"type": "text", "text": "b"}], "max_num_results": 1,
        }))
        .unwrap();
        assert_eq!(
            rerank_body(&request).unwrap(),
            json!({"model": "BAAI/bge-reranker-base", "query": "q",
                   "documents": ["a", "b"], "top_n": 1})
        );
        let mut all = request.clone();
        all.max_num_results = None;
        assert!(rerank_body(&all).unwrap().get("top_n").is_none());
        let image: RerankRequest = serde_json::from_value(json!({
            "model": "m", "query": "q",
            "items": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        }))
        .unwrap();
        let err = rerank_body(&image).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn answers_are_read_and_checked() {
        let answer = json!({"id": "rerank-1", "model": "m", "usage": {"total_tokens": 9},
        "results": [
            {"index": 1, "document": {"text": "b"}, "relevance_score": 0.9},
            {"index": 0, "document": {"text": "a"}, "relevance_score": 0.1},
        ]});
        let data = rerank_answer("up", answer).unwrap().data;
        assert_eq!(
            data,
            [
                RerankData {
                    index: 1,
                    relevance_score: 0.9
                },
                RerankData {
                    index: 0,
                    relevance_score: 0.1
                },
            ]
        );
        for bad in [
            json!({}),
            json!({"results": [{"index": 0}]}),
            json!({"results": [{"index": "0", "relevance_score": 1.0}]}),
        ] {
            let err = rerank_answer("up", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Upstream);
            assert!(
                err.message().starts_with("up answered the rerank request"),
                "{err}"
            );
        }
    }
}
