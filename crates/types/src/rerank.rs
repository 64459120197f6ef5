//! Reranking (`POST /v1alpha/inference/rerank`): a query and a list of items, answered with the
//! items' indices ordered by relevance.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::openai::OpenAiContentPart;

/// A query or an item to rerank: a string, or an OpenAI text or image content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RerankInput {
    Text(String),
    Part(OpenAiContentPart),
}

impl RerankInput {
    /// The text to score: the string or the text part's text; `None` for an image part.
    pub fn text(&self) -> Option<&str> {
        match self {
            RerankInput::Text(text) | RerankInput::Part(OpenAiContentPart::Text { text }) => {
                Some(text)
            }
            RerankInput::Part(OpenAiContentPart::ImageUrl { .. }) => None,
        }
    }
}

/// `POST /v1alpha/inference/rerank`. Fields not listed are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerankRequest {
    /// The identifier of the reranking model (registered with `model_type: rerank`).
    pub model: String,
    /// The search query the items are ranked against.
    pub query: RerankInput,
    /// The items to rank; at least one.
    pub items: Vec<RerankInput>,
    /// How many results to return at most (at least 1); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_results: Option<u32>,
}

/// One ranked item: its index in the request's `items` and its score (higher is more relevant).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerankData {
    pub index: u32,
    pub relevance_score: f64,
}

/// The ranked items, by `relevance_score` descending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RerankResponse {
    pub data: Vec<RerankData>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_items_take_strings_and_content_parts() {
        let request: RerankRequest = serde_json::from_value(serde_json::json!({
            "model": "m",
            "query": {"type": "text", "text": "q"},
            "items": ["a", {"type": "text", "text": "b"},
                      {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}],
        }))
        .unwrap();
        assert_eq!(request.query.text(), Some("q"));
        let texts: Vec<_> = request.items.iter().map(RerankInput::text).collect();
        assert_eq!(texts, [Some("a"), Some("b"), None]);
        assert_eq!(request.max_num_results, None);
        let back = serde_json::to_value(&request).unwrap();
        assert_eq!(back["items"][0], "a");
        assert!(back.get("max_num_results").is_none());
    }
}
