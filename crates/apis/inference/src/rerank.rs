//! `POST /v1alpha/inference/rerank`: checks the request, routes it to the rerank model's
//! provider, and orders the provider's scores (highest first, cut to `max_num_results`).

use llama_stack_types::{ModelType, RerankInput, RerankRequest, RerankResponse};
use tracing::Instrument;

use crate::ops::generation_span;
use crate::service::InferenceService;
use llama_stack_core::{Error, Result};

fn invalid_field(path: &[serde_json::Value], message: impl Into<String>) -> Error {
    let mut location = vec!["body".into()];
    location.extend_from_slice(path);
    Error::invalid(message).with_location(location)
}

/// The query and the items as text, for providers that score text only. An image part is a
/// 400 naming where it is.
pub fn rerank_texts(request: &RerankRequest) -> Result<(String, Vec<String>)> {
    fn text(input: &RerankInput, path: &[serde_json::Value]) -> Result<String> {
        input.text().map(str::to_string).ok_or_else(|| {
            invalid_field(
                path,
                "image content is not supported for reranking: only text (a string or a text content part) can be scored",
            )
        })
    }
    let query = text(&request.query, &["query".into()])?;
    let items = request
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| text(item, &["items".into(), i.into()]))
        .collect::<Result<Vec<_>>>()?;
    Ok((query, items))
}

/// The request rules upstream's request model enforces.
fn check(request: &RerankRequest) -> Result<()> {
    if request.items.is_empty() {
        return Err(invalid_field(
            &["items".into()],
            "items must contain at least one item to rerank",
        ));
    }
    if request.max_num_results == Some(0) {
        return Err(invalid_field(
            &["max_num_results".into()],
            "max_num_results must be at least 1",
        ));
    }
    Ok(())
}

/// Orders a provider's answer by score, highest first (ties keep the provider's order), and
/// keeps at most `max_num_results`. An index outside the items is the provider's fault.
fn ordered(
    mut response: RerankResponse,
    items: usize,
    max_num_results: Option<u32>,
    provider_id: &str,
) -> Result<RerankResponse> {
    if let Some(bad) = response.data.iter().find(|d| d.index as usize >= items) {
        return Err(Error::internal(format!(
            "provider '{provider_id}' ranked item {} of {items}",
            bad.index
        )));
    }
    response
        .data
        .sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score));
    if let Some(limit) = max_num_results {
        response.data.truncate(limit as usize);
    }
    Ok(response)
}

impl InferenceService {
    /// `POST /v1alpha/inference/rerank`: the items of the request ranked by the rerank model's
    /// scores against the query.
    pub async fn rerank(&self, mut request: RerankRequest) -> Result<RerankResponse> {
        check(&request)?;
        let (model, provider) = self.resolve_model(&request.model).await?;
        if model.model_type != ModelType::Rerank {
            return Err(Error::invalid(format!(
                "Model '{}' is of type '{}' rather than the expected type 'rerank'",
                request.model,
                model.model_type.as_str()
            )));
        }
        let items = request.items.len();
        let limit = request.max_num_results;
        request.model = model.provider_resource_id.clone();
        let answer = provider
            .rerank(&model, request)
            .instrument(generation_span("rerank", &model))
            .await?;
        ordered(answer, items, limit, &model.provider_id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use llama_stack_core::access::{self, Caller, User};
    use llama_stack_core::{ErrorKind, MemoryStore};
    use llama_stack_types::{
        ChatCompletionRequest, CompletionRequest, Model, RegisterModelRequest, RerankData,
    };
    use serde_json::json;

    use super::*;
    use crate::provider::{ChatStream, CompletionStream, InferenceProvider};

    /// Scores each item by its length, in reverse order, and records what it was asked.
    #[derive(Default)]
    struct ByLength {
        seen: Mutex<Vec<RerankRequest>>,
    }

    #[async_trait]
    impl InferenceProvider for ByLength {
        async fn register_model(&self, _: &Model) -> Result<()> {
            Ok(())
        }

        async fn chat_completion(&self, _: &Model, _: ChatCompletionRequest) -> Result<ChatStream> {
            Err(Error::unsupported("not needed"))
        }

        async fn completion(&self, _: &Model, _: CompletionRequest) -> Result<CompletionStream> {
            Err(Error::unsupported("not needed"))
        }

        async fn rerank(&self, _: &Model, request: RerankRequest) -> Result<RerankResponse> {
            let (_, items) = rerank_texts(&request)?;
            self.seen.lock().unwrap().push(request);
            Ok(RerankResponse {
                data: items
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(index, text)| RerankData {
                        index: index as u32,
                        relevance_score: text.len() as f64,
                    })
                    .collect(),
            })
        }
    }

    /// Implements nothing for reranking: the trait's default answers.
    struct Plain;

    #[async_trait]
    impl InferenceProvider for Plain {
        async fn register_model(&self, _: &Model) -> Result<()> {
            Ok(())
        }

        async fn chat_completion(&self, _: &Model, _: ChatCompletionRequest) -> Result<ChatStream> {
            Err(Error::unsupported("not needed"))
        }

        async fn completion(&self, _: &Model, _: CompletionRequest) -> Result<CompletionStream> {
            Err(Error::unsupported("not needed"))
        }
    }

    async fn service() -> (InferenceService, Arc<ByLength>) {
        let scorer = Arc::new(ByLength::default());
        let svc = InferenceService::new(
            vec![
                (
                    "scorer".into(),
                    scorer.clone() as Arc<dyn InferenceProvider>,
                ),
                (
                    "plain".into(),
                    Arc::new(Plain) as Arc<dyn InferenceProvider>,
                ),
            ],
            Arc::new(MemoryStore::default()),
        );
        for (id, provider, model_type) in [
            ("ranker", "scorer", ModelType::Rerank),
            ("chat", "scorer", ModelType::Llm),
            ("plain-ranker", "plain", ModelType::Rerank),
        ] {
            svc.register_model(RegisterModelRequest {
                model_id: id.into(),
                provider_model_id: Some(format!("{id}-upstream")),
                provider_id: Some(provider.into()),
                metadata: None,
                model_type: Some(model_type),
            })
            .await
            .unwrap();
        }
        (svc, scorer)
    }

    fn request(model: &str, items: &[&str], max_num_results: Option<u32>) -> RerankRequest {
        serde_json::from_value(json!({
            "model": model, "query": "q", "items": items, "max_num_results": max_num_results,
        }))
        .unwrap()
    }

    fn indices(response: &RerankResponse) -> Vec<u32> {
        response.data.iter().map(|d| d.index).collect()
    }

    #[tokio::test]
    async fn results_are_sorted_by_score_and_cut_to_max_num_results() {
        let (svc, scorer) = service().await;
        let items = ["bb", "a", "dddd", "ccc"];
        let all = svc.rerank(request("ranker", &items, None)).await.unwrap();
        assert_eq!(indices(&all), [2, 3, 0, 1]);
        let scores: Vec<f64> = all.data.iter().map(|d| d.relevance_score).collect();
        assert_eq!(scores, [4.0, 3.0, 2.0, 1.0]);
        let top = svc
            .rerank(request("ranker", &items, Some(2)))
            .await
            .unwrap();
        assert_eq!(indices(&top), [2, 3]);
        let more = svc
            .rerank(request("ranker", &items, Some(10)))
            .await
            .unwrap();
        assert_eq!(more.data.len(), 4);
        // The provider sees its own model id, and max_num_results (an upstream may use it).
        let seen = scorer.seen.lock().unwrap();
        assert_eq!(seen[0].model, "ranker-upstream");
        assert_eq!(seen[1].max_num_results, Some(2));
    }

    #[tokio::test]
    async fn request_and_model_errors() {
        let (svc, _) = service().await;
        let err = svc
            .rerank(request("nowhere", &["a"], None))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("'nowhere'"), "{err}");

        let err = svc.rerank(request("chat", &["a"], None)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(
            err.message()
                .contains("is of type 'llm' rather than the expected type 'rerank'"),
            "{err}"
        );

        let err = svc.rerank(request("ranker", &[], None)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("items"), "{err}");

        let err = svc
            .rerank(request("ranker", &["a"], Some(0)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("max_num_results"), "{err}");

        let err = svc
            .rerank(request("plain-ranker", &["a"], None))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("provider 'plain'"), "{err}");
    }

    #[tokio::test]
    async fn images_are_refused_with_their_place() {
        let (svc, _) = service().await;
        let image = json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}});
        let with_image: RerankRequest = serde_json::from_value(json!({
            "model": "ranker", "query": "q", "items": ["a", image],
        }))
        .unwrap();
        let err = svc.rerank(with_image).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("image"), "{err}");
    }

    #[tokio::test]
    async fn another_users_rerank_model_is_not_found() {
        let (svc, _) = service().await;
        let alice = Caller::User(User::new("alice"));
        let bob = Caller::User(User::new("bob"));
        access::with_caller(
            alice.clone(),
            svc.register_model(RegisterModelRequest {
                model_id: "mine".into(),
                provider_model_id: Some("mine-upstream".into()),
                provider_id: Some("scorer".into()),
                metadata: None,
                model_type: Some(ModelType::Rerank),
            }),
        )
        .await
        .unwrap();
        let err = access::with_caller(bob, svc.rerank(request("mine", &["a"], None)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let ok = access::with_caller(alice, svc.rerank(request("mine", &["a"], None))).await;
        assert!(ok.is_ok());
    }

    #[test]
    fn a_provider_index_out_of_range_is_internal() {
        let answer = RerankResponse {
            data: vec![RerankData {
                index: 3,
                relevance_score: 1.0,
            }],
        };
        let err = ordered(answer, 2, None, "p").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
    }
}
