//! `POST /v1/embeddings`: the OpenAI request translated to the classic embeddings call, and the
//! vectors returned as OpenAI embedding objects (floats or base64).

use base64::Engine as _;
use llama_stack_types::EmbeddingsRequest;
use llama_stack_types::openai::{
    OpenAiEmbedding, OpenAiEmbeddingInput, OpenAiEmbeddingUsage, OpenAiEmbeddingVector,
    OpenAiEmbeddingsRequest, OpenAiEmbeddingsResponse,
};

use crate::service::InferenceService;
use llama_stack_core::{Error, Result};

fn invalid_field(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), field.into()])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncodingFormat {
    Float,
    Base64,
}

fn encoding_format(value: Option<&str>) -> Result<EncodingFormat> {
    match value {
        None | Some("float") => Ok(EncodingFormat::Float),
        Some("base64") => Ok(EncodingFormat::Base64),
        Some(other) => Err(invalid_field(
            "encoding_format",
            format!("encoding_format must be 'float' or 'base64', got '{other}'"),
        )),
    }
}

fn input_texts(input: &OpenAiEmbeddingInput) -> Result<Vec<String>> {
    let texts = match input {
        OpenAiEmbeddingInput::Text(text) => vec![text.clone()],
        OpenAiEmbeddingInput::Texts(texts) => texts.clone(),
        OpenAiEmbeddingInput::Tokens(_) | OpenAiEmbeddingInput::TokenLists(_) => {
            // A 400 rather than a 501: the client can always send the text instead.
            return Err(invalid_field(
                "input",
                "token-id input is not supported: token ids are specific to one tokenizer; send the text instead",
            ));
        }
    };
    if texts.is_empty() {
        return Err(invalid_field(
            "input",
            "input must be a string or a non-empty array of strings",
        ));
    }
    Ok(texts)
}

/// The OpenAI SDKs decode base64 embeddings as little-endian float32 bytes.
fn to_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl InferenceService {
    /// `POST /v1/embeddings` (also `/v1/openai/v1/embeddings`).
    pub async fn openai_embeddings(
        &self,
        request: OpenAiEmbeddingsRequest,
    ) -> Result<OpenAiEmbeddingsResponse> {
        if let Ok(Some(forwarding)) = self.forwarding(&request.model).await {
            return self.forward_embeddings(forwarding, request).await;
        }
        let format = encoding_format(request.encoding_format.as_deref())?;
        let texts = input_texts(&request.input)?;
        if request.dimensions == Some(0) {
            return Err(invalid_field("dimensions", "dimensions must be at least 1"));
        }
        let classic = EmbeddingsRequest {
            model_id: request.model.clone(),
            contents: texts.into_iter().map(serde_json::Value::String).collect(),
            // OpenAI refuses inputs longer than the model's context rather than cutting them.
            text_truncation: Some("none".into()),
            output_dimension: request.dimensions,
            task_type: None,
        };
        let embeddings = self.embed(classic).await?;
        let data = embeddings
            .vectors
            .into_iter()
            .enumerate()
            .map(|(index, vector)| OpenAiEmbedding {
                object: "embedding".into(),
                embedding: match format {
                    EncodingFormat::Float => OpenAiEmbeddingVector::Float(vector),
                    EncodingFormat::Base64 => OpenAiEmbeddingVector::Base64(to_base64(&vector)),
                },
                index: index as u32,
            })
            .collect();
        Ok(OpenAiEmbeddingsResponse {
            object: "list".into(),
            data,
            model: request.model,
            usage: OpenAiEmbeddingUsage {
                prompt_tokens: embeddings.prompt_tokens,
                total_tokens: embeddings.prompt_tokens,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> OpenAiEmbeddingsRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn input_forms() {
        let one = request(serde_json::json!({"model": "m", "input": "hi"}));
        assert_eq!(input_texts(&one.input).unwrap(), ["hi"]);
        let many = request(serde_json::json!({"model": "m", "input": ["a", "b"]}));
        assert_eq!(input_texts(&many.input).unwrap(), ["a", "b"]);
        let tokens = request(serde_json::json!({"model": "m", "input": [1, 2, 3]}));
        let err = input_texts(&tokens.input).unwrap_err();
        assert!(err.message().contains("token-id input is not supported"));
        let lists = request(serde_json::json!({"model": "m", "input": [[1], [2]]}));
        assert!(input_texts(&lists.input).is_err());
        let empty = request(serde_json::json!({"model": "m", "input": []}));
        assert!(input_texts(&empty.input).is_err());
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let encoded = to_base64(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes.len(), 8);
        assert_eq!(f32::from_le_bytes(bytes[0..4].try_into().unwrap()), 1.0);
        assert_eq!(f32::from_le_bytes(bytes[4..8].try_into().unwrap()), -2.5);
    }

    #[test]
    fn encoding_formats() {
        assert_eq!(encoding_format(None).unwrap(), EncodingFormat::Float);
        assert_eq!(
            encoding_format(Some("base64")).unwrap(),
            EncodingFormat::Base64
        );
        let err = encoding_format(Some("int8")).unwrap_err();
        assert!(err.message().contains("int8"));
    }
}
