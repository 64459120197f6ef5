//! Inference routing: validation shared by every provider, model resolution, and collecting
//! streams into complete responses for non-streaming calls.

use futures::StreamExt;
use llama_stack_types::{
    ChatCompletionRequest, ChatCompletionResponse, ChatEventType, CompletionMessage,
    CompletionRequest, CompletionResponse, ContentDelta, EmbeddingsRequest, EmbeddingsResponse,
    InterleavedContent, Model, ModelType, StopReason, ToolCallOrText, ToolCallParseStatus,
    ToolConfig,
};
use tracing::Instrument;

use crate::provider::{ChatStream, CompletionStream, Embeddings};
use crate::service::InferenceService;
use llama_stack_core::metrics::Generation;
use llama_stack_core::{Error, Result};
use llama_stack_types::{ChatCompletionResponseStreamChunk, CompletionResponseStreamChunk};

fn field_error(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), field.into()])
}

pub(crate) fn require_llm(model: &Model, what: &str) -> Result<()> {
    match model.model_type {
        ModelType::Llm => Ok(()),
        ModelType::Embedding => Err(Error::invalid(format!(
            "Model '{}' is an embedding model and does not support {what}",
            model.identifier
        ))),
        ModelType::Rerank => Err(Error::invalid(format!(
            "Model '{}' is a rerank model and does not support {what}",
            model.identifier
        ))),
    }
}

/// Applies the router rules for tool settings: top-level and `tool_config` must agree, `none`
/// drops the tools, a named choice must be one of the tools.
fn normalize_tools(request: &mut ChatCompletionRequest) -> Result<()> {
    let mut config = request.tool_config.take().unwrap_or(ToolConfig {
        tool_choice: None,
        tool_prompt_format: None,
        system_message_behavior: None,
    });
    if let Some(choice) = request.tool_choice.take() {
        match &config.tool_choice {
            Some(existing) if existing != &choice => {
                return Err(field_error(
                    "tool_choice",
                    format!(
                        "tool_choice '{choice}' differs from tool_config.tool_choice '{existing}'; set it in one place"
                    ),
                ));
            }
            _ => config.tool_choice = Some(choice),
        }
    }
    if let Some(format) = request.tool_prompt_format.take() {
        match &config.tool_prompt_format {
            Some(existing) if existing != &format => {
                return Err(field_error(
                    "tool_prompt_format",
                    format!(
                        "tool_prompt_format '{format}' differs from tool_config.tool_prompt_format '{existing}'; set it in one place"
                    ),
                ));
            }
            _ => config.tool_prompt_format = Some(format),
        }
    }
    if let Some(format) = &config.tool_prompt_format
        && !["json", "function_tag", "python_list"].contains(&format.as_str())
    {
        return Err(field_error(
            "tool_config",
            format!("tool_prompt_format must be json, function_tag or python_list, got '{format}'"),
        ));
    }
    match config.tool_choice.as_deref() {
        Some("none") => request.tools = None,
        Some("auto") | Some("required") | None => {}
        Some(name) => {
            let known = request
                .tools
                .as_ref()
                .is_some_and(|tools| tools.iter().any(|t| t.tool_name == name));
            if !known {
                return Err(field_error(
                    "tool_config",
                    format!("tool_choice '{name}' is not one of the provided tools"),
                ));
            }
        }
    }
    request.tool_config = Some(config);
    Ok(())
}

/// Where [`InferenceService::check_store`] reads; nothing is ever stored under it.
const READINESS_KIND: &str = "readiness_probe";

impl InferenceService {
    /// A trivial read of the metadata store, for readiness checks.
    pub async fn check_store(&self) -> Result<()> {
        self.store.get(READINESS_KIND, "probe").await.map(|_| ())
    }

    /// `POST /v1/inference/chat-completion`: always a stream; see [`collect_chat`].
    pub async fn chat_completion(&self, mut request: ChatCompletionRequest) -> Result<ChatStream> {
        if request.messages.is_empty() {
            return Err(field_error(
                "messages",
                "messages must contain at least one message",
            ));
        }
        normalize_tools(&mut request)?;
        let (model, provider) = self.resolve_model(&request.model_id).await?;
        require_llm(&model, "chat completions")?;
        request.model_id = model.provider_resource_id.clone();
        let span = generation_span("chat", &model);
        let meter = crate::budget::admit().instrument(span.clone()).await?;
        let generation = Generation::start(&model.identifier, &model.provider_id);
        let stream = provider
            .chat_completion(&model, request)
            .instrument(span.clone())
            .await?;
        Ok(measured(
            crate::budget::chat(stream, meter),
            generation,
            span,
        ))
    }

    /// `POST /v1/inference/completion`: always a stream; see [`collect_completion`].
    pub async fn completion(&self, mut request: CompletionRequest) -> Result<CompletionStream> {
        let (model, provider) = self.resolve_model(&request.model_id).await?;
        require_llm(&model, "completions")?;
        request.model_id = model.provider_resource_id.clone();
        let span = generation_span("text_completion", &model);
        let meter = crate::budget::admit().instrument(span.clone()).await?;
        let generation = Generation::start(&model.identifier, &model.provider_id);
        let stream = provider
            .completion(&model, request)
            .instrument(span.clone())
            .await?;
        Ok(measured(
            crate::budget::completion(stream, meter),
            generation,
            span,
        ))
    }

    /// `POST /v1/inference/embeddings`.
    pub async fn embeddings(&self, request: EmbeddingsRequest) -> Result<EmbeddingsResponse> {
        Ok(EmbeddingsResponse {
            embeddings: self.embed(request).await?.vectors,
        })
    }

    /// Embeddings for every route: checks the request, resolves the model and calls its
    /// provider.
    pub async fn embed(&self, mut request: EmbeddingsRequest) -> Result<Embeddings> {
        if request.contents.is_empty() {
            return Err(field_error(
                "contents",
                "contents must contain at least one item",
            ));
        }
        embedding_texts(&request.contents)?;
        if let Some(truncation) = &request.text_truncation
            && !TEXT_TRUNCATIONS.contains(&truncation.as_str())
        {
            return Err(field_error(
                "text_truncation",
                format!("text_truncation must be none, start or end, got '{truncation}'"),
            ));
        }
        if let Some(task) = &request.task_type
            && !TASK_TYPES.contains(&task.as_str())
        {
            return Err(field_error(
                "task_type",
                format!("task_type must be query or document, got '{task}'"),
            ));
        }
        if request.output_dimension == Some(0) {
            return Err(field_error(
                "output_dimension",
                "output_dimension must be at least 1",
            ));
        }
        let (model, provider) = self.resolve_model(&request.model_id).await?;
        if model.model_type != ModelType::Embedding {
            return Err(Error::invalid(format!(
                "Model '{}' is not an embedding model; embeddings need a model registered with model_type 'embedding'",
                model.identifier
            )));
        }
        let inputs = request.contents.len();
        request.model_id = model.provider_resource_id.clone();
        let embeddings = provider
            .embeddings(&model, request)
            .instrument(generation_span("embeddings", &model))
            .await?;
        if embeddings.vectors.len() != inputs {
            return Err(Error::internal(format!(
                "provider '{}' returned {} embeddings for {inputs} inputs",
                model.provider_id,
                embeddings.vectors.len()
            )));
        }
        Ok(embeddings)
    }
}

/// What a generation's chunks tell its metrics: whether one carries generated output, and the
/// token counts the last one reports.
pub(crate) trait Observed {
    fn has_output(&self) -> bool;
    fn usage(&self) -> Option<(u64, u64)>;
}

fn metric_usage(metrics: Option<&[llama_stack_types::MetricInResponse]>) -> Option<(u64, u64)> {
    let metrics = metrics?;
    let get = |name: &str| {
        metrics
            .iter()
            .find(|m| m.metric == name)
            .map(|m| m.value.max(0.0) as u64)
    };
    match (get("prompt_tokens"), get("completion_tokens")) {
        (None, None) => None,
        (prompt, completion) => Some((prompt.unwrap_or(0), completion.unwrap_or(0))),
    }
}

impl Observed for ChatCompletionResponseStreamChunk {
    fn has_output(&self) -> bool {
        match &self.event.delta {
            ContentDelta::Text { text } => !text.is_empty(),
            ContentDelta::ToolCall { .. } | ContentDelta::Image { .. } => true,
        }
    }
    fn usage(&self) -> Option<(u64, u64)> {
        metric_usage(self.metrics.as_deref())
    }
}

impl Observed for CompletionResponseStreamChunk {
    fn has_output(&self) -> bool {
        !self.delta.is_empty()
    }
    fn usage(&self) -> Option<(u64, u64)> {
        metric_usage(self.metrics.as_deref())
    }
}

/// An OpenAI chat or text completion chunk (or whole answer) from an upstream.
impl Observed for serde_json::Value {
    fn has_output(&self) -> bool {
        let choice = &self["choices"][0];
        let text = |v: &serde_json::Value| v.as_str().is_some_and(|t| !t.is_empty());
        text(&choice["delta"]["content"])
            || choice["delta"]["tool_calls"].is_array()
            || text(&choice["text"])
            || text(&choice["message"]["content"])
    }
    fn usage(&self) -> Option<(u64, u64)> {
        let usage = self.get("usage").filter(|u| u.is_object())?;
        Some((
            usage["prompt_tokens"].as_u64().unwrap_or(0),
            usage["completion_tokens"].as_u64().unwrap_or(0),
        ))
    }
}

/// The span of one model call, named and described by the OpenTelemetry GenAI semantic
/// conventions, for trace export; token counts are recorded when the answer reports them.
pub(crate) fn generation_span(operation: &'static str, model: &Model) -> tracing::Span {
    tracing::info_span!(
        target: "llama_stack::inference",
        "gen_ai",
        otel.name = %format_args!("{operation} {}", model.identifier),
        gen_ai.operation.name = operation,
        gen_ai.request.model = %model.identifier,
        gen_ai.provider.name = %model.provider_id,
        gen_ai.system = %model.provider_id,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
    )
}

/// Puts an answer's token counts on its generation span.
pub(crate) fn record_usage(span: &tracing::Span, (input, output): (u64, u64)) {
    // As i64: the OpenTelemetry layer exports a u64 field as text.
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    span.record("gen_ai.usage.input_tokens", count(input));
    span.record("gen_ai.usage.output_tokens", count(output));
}

/// `stream` with `generation` timed (first output, end) and its tokens counted as they pass.
/// `span` is the generation's: it stays open, and the stream is polled in it, until the last
/// chunk (or the stream is dropped).
pub(crate) fn measured<T: Observed + Send + 'static>(
    stream: futures::stream::BoxStream<'static, Result<T>>,
    generation: Generation,
    span: tracing::Span,
) -> futures::stream::BoxStream<'static, Result<T>> {
    futures::stream::unfold(
        (stream, generation, span),
        |(mut stream, mut generation, span)| async move {
            match stream.next().instrument(span.clone()).await {
                Some(item) => {
                    if let Ok(chunk) = &item {
                        if chunk.has_output() {
                            generation.first_token();
                        }
                        if let Some(usage) = chunk.usage() {
                            generation.tokens(usage.0, usage.1);
                            record_usage(&span, usage);
                        }
                    }
                    Some((item, (stream, generation, span)))
                }
                None => {
                    generation.finish();
                    None
                }
            }
        },
    )
    .boxed()
}

/// The values `text_truncation` takes: `none` refuses an input longer than the model's context,
/// `start` drops tokens from its start, `end` from its end.
pub const TEXT_TRUNCATIONS: &[&str] = &["none", "start", "end"];
/// The values `task_type` takes.
pub const TASK_TYPES: &[&str] = &["query", "document"];

/// Reads embeddings inputs as text. Each item is a string or a text content item
/// (`{"type": "text", "text": ...}`); an image cannot be embedded by a text model.
pub fn embedding_texts(contents: &[serde_json::Value]) -> Result<Vec<String>> {
    contents
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |message: String| {
                Error::invalid(message).with_location(vec![
                    "body".into(),
                    "contents".into(),
                    i.into(),
                ])
            };
            match item {
                serde_json::Value::String(text) => Ok(text.clone()),
                serde_json::Value::Object(map) => match map.get("type").and_then(|t| t.as_str()) {
                    Some("text") => map
                        .get("text")
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            at(format!(
                                "contents[{i}] is a text item without a string `text`"
                            ))
                        }),
                    Some("image") => Err(at(format!(
                        "contents[{i}] is an image; embeddings are computed for text only"
                    ))),
                    _ => Err(at(format!(
                        "contents[{i}] must be a string or a content item with type 'text'"
                    ))),
                },
                _ => Err(at(format!(
                    "contents[{i}] must be a string or a content item with type 'text'"
                ))),
            }
        })
        .collect()
}

/// Collects a chat stream into one response, as a non-streaming call answers.
pub async fn collect_chat(mut stream: ChatStream) -> Result<ChatCompletionResponse> {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let mut stop_reason = StopReason::EndOfTurn;
    let mut metrics = None;
    let mut raw_tool_text = String::new();
    let mut logprobs: Option<Vec<_>> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if let Some(entries) = chunk.event.logprobs {
            logprobs.get_or_insert_with(Vec::new).extend(entries);
        }
        match chunk.event.delta {
            ContentDelta::Text { text: t } => text.push_str(&t),
            ContentDelta::ToolCall {
                tool_call,
                parse_status,
            } => match (parse_status, tool_call) {
                (ToolCallParseStatus::Succeeded, ToolCallOrText::Call(call)) => {
                    tool_calls.push(call)
                }
                (ToolCallParseStatus::InProgress, ToolCallOrText::Text(t)) => {
                    raw_tool_text.push_str(&t)
                }
                _ => {}
            },
            ContentDelta::Image { .. } => {}
        }
        if chunk.event.event_type == ChatEventType::Complete {
            stop_reason = chunk.event.stop_reason.unwrap_or(StopReason::EndOfTurn);
            metrics = chunk.metrics;
        }
    }
    // A parsed tool call replaces the text it was written in; unparsed tool text stays visible.
    let content = if !tool_calls.is_empty() {
        String::new()
    } else {
        text + &raw_tool_text
    };
    Ok(ChatCompletionResponse {
        completion_message: CompletionMessage {
            role: "assistant".into(),
            content: InterleavedContent::Text(content),
            stop_reason,
            tool_calls,
        },
        logprobs,
        metrics,
    })
}

/// Collects a completion stream into one response.
pub async fn collect_completion(mut stream: CompletionStream) -> Result<CompletionResponse> {
    let mut content = String::new();
    let mut stop_reason = StopReason::EndOfTurn;
    let mut metrics = None;
    let mut logprobs: Option<Vec<_>> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        content.push_str(&chunk.delta);
        if let Some(entries) = chunk.logprobs {
            logprobs.get_or_insert_with(Vec::new).extend(entries);
        }
        if let Some(reason) = chunk.stop_reason {
            stop_reason = reason;
        }
        if chunk.metrics.is_some() {
            metrics = chunk.metrics;
        }
    }
    Ok(CompletionResponse {
        content,
        stop_reason,
        logprobs,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_types::{Message, ToolDefinition};

    fn request() -> ChatCompletionRequest {
        ChatCompletionRequest {
            model_id: "m".into(),
            messages: vec![Message::user("hi")],
            sampling_params: None,
            tools: Some(vec![ToolDefinition {
                tool_name: "get_weather".into(),
                description: None,
                parameters: None,
            }]),
            tool_choice: None,
            tool_prompt_format: None,
            response_format: None,
            stream: None,
            logprobs: None,
            tool_config: None,
        }
    }

    #[test]
    fn embedding_inputs_are_strings_or_text_items() {
        let texts = embedding_texts(&[
            serde_json::json!("plain"),
            serde_json::json!({"type": "text", "text": "item"}),
        ])
        .unwrap();
        assert_eq!(texts, ["plain", "item"]);
        let err = embedding_texts(&[
            serde_json::json!("ok"),
            serde_json::json!({"type": "image", "image": {"url": {"uri": "x"}}}),
        ])
        .unwrap_err();
        assert!(err.message().contains("contents[1] is an image"), "{err}");
        assert!(embedding_texts(&[serde_json::json!(3)]).is_err());
    }

    #[tokio::test]
    async fn a_measured_stream_times_its_first_output_and_counts_its_tokens() {
        use llama_stack_core::metrics::{self, COMPLETION_TOKENS, PROMPT_TOKENS};
        use llama_stack_types::{
            ChatCompletionResponseStreamChunk, ChatEventType, MetricInResponse,
        };
        let metric = |name: &str, value: f64| MetricInResponse {
            metric: name.into(),
            value,
            unit: None,
        };
        let mut last =
            ChatCompletionResponseStreamChunk::new(ChatEventType::Complete, ContentDelta::text(""));
        last.metrics = Some(vec![
            metric("prompt_tokens", 11.0),
            metric("completion_tokens", 2.0),
            metric("total_tokens", 13.0),
        ]);
        let chunks = vec![
            Ok(ChatCompletionResponseStreamChunk::new(
                ChatEventType::Start,
                ContentDelta::text(""),
            )),
            Ok(ChatCompletionResponseStreamChunk::new(
                ChatEventType::Progress,
                ContentDelta::text("Hi"),
            )),
            Ok(last),
        ];
        let generation = Generation::start("measured-model", "measured-provider");
        let stream = measured(
            futures::stream::iter(chunks).boxed(),
            generation,
            tracing::Span::none(),
        );
        assert_eq!(stream.count().await, 3);
        let text = metrics::render();
        let value = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l.contains("model=\"measured-model\""))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        };
        assert_eq!(value(PROMPT_TOKENS), Some(11.0), "{text}");
        assert_eq!(value(COMPLETION_TOKENS), Some(2.0), "{text}");
        assert_eq!(
            value(&format!("{}_count", metrics::TIME_TO_FIRST_TOKEN)),
            Some(1.0)
        );
        assert_eq!(
            value(&format!("{}_count", metrics::GENERATION_DURATION)),
            Some(1.0)
        );
    }

    #[test]
    fn upstream_objects_report_output_and_usage() {
        let chunk = serde_json::json!({"choices": [{"delta": {"content": "x"}}], "usage": null});
        assert!(chunk.has_output());
        assert_eq!(chunk.usage(), None);
        let done = serde_json::json!({"choices": [{"message": {"content": "hello"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}});
        assert!(done.has_output());
        assert_eq!(done.usage(), Some((5, 1)));
        assert!(!serde_json::json!({"choices": [{"delta": {"role": "assistant"}}]}).has_output());
    }

    #[test]
    fn tool_choice_none_drops_tools() {
        let mut r = request();
        r.tool_choice = Some("none".into());
        normalize_tools(&mut r).unwrap();
        assert!(r.tools.is_none());
    }

    #[test]
    fn conflicting_tool_choice_is_rejected() {
        let mut r = request();
        r.tool_choice = Some("auto".into());
        r.tool_config = Some(ToolConfig {
            tool_choice: Some("required".into()),
            tool_prompt_format: None,
            system_message_behavior: None,
        });
        let err = normalize_tools(&mut r).unwrap_err();
        assert!(err.message().contains("differs"), "{err}");
    }

    #[test]
    fn named_tool_choice_must_exist() {
        let mut r = request();
        r.tool_choice = Some("get_weather".into());
        assert!(normalize_tools(&mut r).is_ok());
        let mut r = request();
        r.tool_choice = Some("book_flight".into());
        assert!(normalize_tools(&mut r).is_err());
    }
}
