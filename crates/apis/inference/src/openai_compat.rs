//! The OpenAI-compatible routes over the same providers: requests are translated to the
//! classic form, and classic streams back to OpenAI objects. Providers that forward OpenAI
//! requests to an upstream get them as they came instead (see `openai_forward`).

use futures::StreamExt;
use futures::stream::BoxStream;
use llama_stack_types::openai::*;
use llama_stack_types::{
    ChatCompletionRequest, CompletionRequest, ContentItem, ImageContent, InterleavedContent,
    LogProbConfig, Message, SamplingParams, SamplingStrategy, StopReason, TokenLogProbs, ToolCall,
    ToolConfig, ToolDefinition, ToolParamDefinition, Url, Usage,
};

use crate::provider::{CompletionStream, JsonStream};
use crate::service::InferenceService;
use llama_stack_core::{Error, Result};

pub type OpenAiChatStream = BoxStream<'static, Result<OpenAiChatCompletionChunk>>;
pub type OpenAiCompletionStream = BoxStream<'static, Result<OpenAiCompletion>>;

fn invalid_field(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), field.into()])
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn content_to_classic(content: &OpenAiContent) -> InterleavedContent {
    match content {
        OpenAiContent::Text(s) => InterleavedContent::Text(s.clone()),
        OpenAiContent::Parts(parts) => InterleavedContent::Items(
            parts
                .iter()
                .map(|p| match p {
                    OpenAiContentPart::Text { text } => ContentItem::Text { text: text.clone() },
                    OpenAiContentPart::ImageUrl { image_url } => ContentItem::Image {
                        image: ImageContent {
                            url: Some(Url {
                                uri: image_url
                                    .get("url")
                                    .and_then(|u| u.as_str())
                                    .unwrap_or_default()
                                    .to_string(),
                            }),
                            data: None,
                        },
                    },
                })
                .collect(),
        ),
    }
}

pub fn message_to_classic(message: &OpenAiMessage) -> Message {
    match message {
        OpenAiMessage::System { content, .. } | OpenAiMessage::Developer { content, .. } => {
            Message::System {
                content: content_to_classic(content),
            }
        }
        OpenAiMessage::User { content, .. } => Message::User {
            content: content_to_classic(content),
            context: None,
        },
        OpenAiMessage::Assistant {
            content,
            tool_calls,
            ..
        } => Message::Assistant {
            content: content.as_ref().map(content_to_classic).unwrap_or_default(),
            stop_reason: StopReason::EndOfTurn,
            tool_calls: tool_calls
                .iter()
                .flatten()
                .map(|c| {
                    let raw = c.function.arguments.clone().unwrap_or_default();
                    ToolCall {
                        call_id: c.id.clone().unwrap_or_default(),
                        tool_name: c.function.name.clone().unwrap_or_default(),
                        arguments: serde_json::from_str(&raw)
                            .unwrap_or(serde_json::Value::String(raw.clone())),
                        arguments_json: Some(raw),
                    }
                })
                .collect(),
        },
        OpenAiMessage::Tool {
            tool_call_id,
            content,
        } => Message::Tool {
            call_id: tool_call_id.clone(),
            content: content_to_classic(content),
            tool_name: None,
        },
    }
}

/// An OpenAI function tool (`{"type":"function","function":{name, description, parameters}}`)
/// as a classic tool definition.
fn tool_to_classic(index: usize, tool: &serde_json::Value) -> Result<ToolDefinition> {
    let function = tool.get("function").ok_or_else(|| {
        invalid_field("tools", format!("tools[{index}] has no `function` object"))
    })?;
    let name = function
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| invalid_field("tools", format!("tools[{index}].function has no name")))?;
    let schema = function.get("parameters");
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let parameters = schema
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.as_object())
        .map(|props| {
            props
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        ToolParamDefinition {
                            param_type: v
                                .get("type")
                                .and_then(|t| t.as_str())
                                .unwrap_or("string")
                                .to_string(),
                            description: v
                                .get("description")
                                .and_then(|d| d.as_str())
                                .map(str::to_string),
                            required: required.contains(&k.as_str()),
                            default: v.get("default").cloned(),
                        },
                    )
                })
                .collect()
        });
    Ok(ToolDefinition {
        tool_name: name.to_string(),
        description: function
            .get("description")
            .and_then(|d| d.as_str())
            .map(str::to_string),
        parameters,
    })
}

fn sampling(
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u32>,
    stop: Option<StopSequences>,
    seed: Option<u64>,
) -> Result<SamplingParams> {
    if let Some(t) = temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(invalid_field(
            "temperature",
            format!("temperature must be between 0 and 2, got {t}"),
        ));
    }
    if let Some(p) = top_p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(invalid_field(
            "top_p",
            format!("top_p must be between 0 and 1, got {p}"),
        ));
    }
    // Without a temperature the output is greedy, which keeps unconfigured calls reproducible.
    let strategy = match (temperature, top_p) {
        (Some(t), p) if t > 0.0 => SamplingStrategy::TopP {
            temperature: Some(t),
            top_p: p.unwrap_or(1.0),
        },
        (None, Some(p)) => SamplingStrategy::TopP {
            temperature: Some(1.0),
            top_p: p,
        },
        _ => SamplingStrategy::Greedy,
    };
    Ok(SamplingParams {
        strategy,
        max_tokens,
        repetition_penalty: Some(1.0),
        stop: stop.map(StopSequences::into_vec),
        seed,
    })
}

/// OpenAI allows at most 20 alternatives per position.
const MAX_TOP_LOGPROBS: u32 = 20;

fn chat_logprobs_config(request: &OpenAiChatCompletionRequest) -> Result<Option<LogProbConfig>> {
    let top = request.top_logprobs.unwrap_or(0);
    if top > MAX_TOP_LOGPROBS {
        return Err(invalid_field(
            "top_logprobs",
            format!("must be between 0 and {MAX_TOP_LOGPROBS}"),
        ));
    }
    if top > 0 && request.logprobs != Some(true) {
        return Err(invalid_field("top_logprobs", "needs logprobs set to true"));
    }
    Ok((request.logprobs == Some(true)).then_some(LogProbConfig { top_k: Some(top) }))
}

fn token_bytes(token: &str) -> serde_json::Value {
    serde_json::Value::from(token.as_bytes().to_vec())
}

/// Classic per-token log-probabilities as OpenAI chat `logprobs.content` entries.
pub(crate) fn chat_logprobs(entries: &[TokenLogProbs], top: usize) -> serde_json::Value {
    let content: Vec<serde_json::Value> = entries
        .iter()
        .map(|entry| {
            let (token, logprob) = chosen(entry);
            let mut alternatives: Vec<(&String, &f64)> = entry.logprobs_by_token.iter().collect();
            alternatives.sort_by(|a, b| b.1.total_cmp(a.1));
            let top_logprobs: Vec<serde_json::Value> = alternatives
                .into_iter()
                .take(top)
                .map(
                    |(t, l)| serde_json::json!({"token": t, "logprob": l, "bytes": token_bytes(t)}),
                )
                .collect();
            serde_json::json!({
                "token": token,
                "logprob": logprob,
                "bytes": token_bytes(&token),
                "top_logprobs": top_logprobs,
            })
        })
        .collect();
    serde_json::json!({ "content": content })
}

/// The generated token of an entry: named by the provider, else the most likely one.
fn chosen(entry: &TokenLogProbs) -> (String, f64) {
    entry.chosen.clone().unwrap_or_else(|| {
        entry
            .logprobs_by_token
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(t, l)| (t.clone(), *l))
            .unwrap_or_default()
    })
}

/// Classic per-token log-probabilities in the legacy completions shape, with text offsets
/// counted from `offset`.
fn completion_logprobs(
    entries: &[TokenLogProbs],
    top: usize,
    offset: &mut usize,
) -> serde_json::Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut text_offset = Vec::new();
    for entry in entries {
        let (token, logprob) = chosen(entry);
        text_offset.push(*offset);
        *offset += token.len();
        let mut alternatives: Vec<(&String, &f64)> = entry.logprobs_by_token.iter().collect();
        alternatives.sort_by(|a, b| b.1.total_cmp(a.1));
        let map: serde_json::Map<String, serde_json::Value> = alternatives
            .into_iter()
            .take(top.max(1))
            .map(|(t, l)| (t.clone(), (*l).into()))
            .collect();
        tokens.push(token);
        token_logprobs.push(logprob);
        top_logprobs.push(map);
    }
    serde_json::json!({
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    })
}

fn chat_to_classic(request: &OpenAiChatCompletionRequest) -> Result<ChatCompletionRequest> {
    if request.n.is_some_and(|n| n != 1) {
        return Err(invalid_field("n", "only n = 1 is supported"));
    }
    let tools = match &request.tools {
        Some(tools) if !tools.is_empty() => Some(
            tools
                .iter()
                .enumerate()
                .map(|(i, t)| tool_to_classic(i, t))
                .collect::<Result<Vec<_>>>()?,
        ),
        _ => None,
    };
    let tool_choice = match &request.tool_choice {
        None => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(v) => match v.pointer("/function/name").and_then(|n| n.as_str()) {
            Some(name) => Some(name.to_string()),
            None => {
                return Err(invalid_field(
                    "tool_choice",
                    "tool_choice must be auto, none, required or {\"type\":\"function\",\"function\":{\"name\":...}}",
                ));
            }
        },
    };
    Ok(ChatCompletionRequest {
        model_id: request.model.clone(),
        messages: request.messages.iter().map(message_to_classic).collect(),
        sampling_params: Some(sampling(
            request.temperature,
            request.top_p,
            request.max_completion_tokens.or(request.max_tokens),
            request.stop.clone(),
            request.seed,
        )?),
        tools,
        tool_choice: None,
        tool_prompt_format: None,
        response_format: request.response_format.clone(),
        stream: Some(true),
        logprobs: chat_logprobs_config(request)?,
        tool_config: Some(ToolConfig {
            tool_choice,
            tool_prompt_format: None,
            system_message_behavior: None,
        }),
    })
}

pub(crate) fn openai_tool_call(index: u32, call: &ToolCall) -> OpenAiToolCall {
    OpenAiToolCall {
        id: Some(call.call_id.clone()),
        call_type: "function".into(),
        function: OpenAiFunctionCall {
            name: Some(call.tool_name.clone()),
            arguments: Some(
                call.arguments_json
                    .clone()
                    .unwrap_or_else(|| call.arguments.to_string()),
            ),
        },
        index: Some(index),
    }
}

/// The result of an OpenAI-style call: one object, or a stream of them.
pub enum OpenAiOutput<T, S> {
    Complete(T),
    Stream(S),
    /// An upstream's own answer, forwarded with `model` set to the name the client used.
    Forwarded(serde_json::Value),
    /// An upstream's own stream of objects, forwarded the same way.
    ForwardedStream(JsonStream),
}

impl InferenceService {
    /// `POST /v1/chat/completions`; with `store: true` the answer is kept (see `stored`).
    pub async fn openai_chat_completion(
        &self,
        request: OpenAiChatCompletionRequest,
    ) -> Result<OpenAiOutput<OpenAiChatCompletion, OpenAiChatStream>> {
        if !crate::stored::wants_store(&request) {
            return self.openai_chat_completion_unstored(request).await;
        }
        crate::stored::check_metadata(&request)?;
        let kept = request.clone();
        let store = self.store.clone();
        Ok(match self.openai_chat_completion_unstored(request).await? {
            OpenAiOutput::Complete(c) => {
                let value = serde_json::to_value(&c).map_err(|e| Error::internal(e.to_string()))?;
                crate::stored::store_completion(store.as_ref(), value, &kept).await?;
                OpenAiOutput::Complete(c)
            }
            OpenAiOutput::Forwarded(value) => {
                crate::stored::store_completion(store.as_ref(), value.clone(), &kept).await?;
                OpenAiOutput::Forwarded(value)
            }
            OpenAiOutput::Stream(s) => {
                OpenAiOutput::Stream(crate::stored::storing_stream(store, s, kept))
            }
            OpenAiOutput::ForwardedStream(s) => {
                OpenAiOutput::ForwardedStream(crate::stored::storing_stream(store, s, kept))
            }
        })
    }

    async fn openai_chat_completion_unstored(
        &self,
        request: OpenAiChatCompletionRequest,
    ) -> Result<OpenAiOutput<OpenAiChatCompletion, OpenAiChatStream>> {
        if request.messages.is_empty() {
            return Err(invalid_field(
                "messages",
                "messages must contain at least one message",
            ));
        }
        if let Ok(Some(forwarding)) = self.forwarding(&request.model).await {
            return self.forward_chat(forwarding, request).await;
        }
        let classic = chat_to_classic(&request)?;
        let top_logprobs = classic
            .logprobs
            .as_ref()
            .map(|l| l.top_k.unwrap_or(0) as usize);
        let stream = self.chat_completion(classic).await?;
        let include_usage = request
            .stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if request.stream.unwrap_or(false) {
            let tools_offered = request.tools.as_ref().is_some_and(|t| !t.is_empty())
                && request.tool_choice.as_ref().and_then(|c| c.as_str()) != Some("none");
            return Ok(OpenAiOutput::Stream(crate::openai_chunks::chat_chunks(
                stream,
                request.model.clone(),
                include_usage,
                top_logprobs,
                tools_offered,
            )));
        }
        let response = crate::ops::collect_chat(stream).await?;
        let message = response.completion_message;
        let usage = Usage::from_metrics(response.metrics.as_deref().unwrap_or(&[]));
        let tool_calls: Vec<OpenAiToolCall> = message
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut call = openai_tool_call(i as u32, c);
                call.index = None;
                call
            })
            .collect();
        Ok(OpenAiOutput::Complete(OpenAiChatCompletion {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4()),
            object: "chat.completion".into(),
            created: now(),
            model: request.model,
            choices: vec![OpenAiChoice {
                index: 0,
                finish_reason: message
                    .stop_reason
                    .openai_finish_reason(!tool_calls.is_empty())
                    .into(),
                message: OpenAiResponseMessage {
                    role: "assistant".into(),
                    content: Some(message.content.as_text("")),
                    tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                },
                logprobs: match (top_logprobs, &response.logprobs) {
                    (Some(top), Some(entries)) => Some(chat_logprobs(entries, top)),
                    _ => None,
                },
            }],
            usage: Some(usage.into()),
        }))
    }

    /// `POST /v1/completions`.
    pub async fn openai_completion(
        &self,
        request: OpenAiCompletionRequest,
    ) -> Result<OpenAiOutput<OpenAiCompletion, OpenAiCompletionStream>> {
        if let Ok(Some(forwarding)) = self.forwarding(&request.model).await {
            return self.forward_completion(forwarding, request).await;
        }
        if request.n.is_some_and(|n| n != 1) {
            return Err(invalid_field("n", "only n = 1 is supported"));
        }
        let prompt = match &request.prompt {
            OpenAiPrompt::Text(s) => s.clone(),
            OpenAiPrompt::Texts(v) if v.len() == 1 => v[0].clone(),
            OpenAiPrompt::Texts(_) => {
                return Err(invalid_field(
                    "prompt",
                    "only one prompt per request is supported",
                ));
            }
            OpenAiPrompt::Tokens(_) | OpenAiPrompt::TokenLists(_) => {
                return Err(invalid_field(
                    "prompt",
                    "token-id prompts are not supported; send text",
                ));
            }
        };
        let classic = CompletionRequest {
            model_id: request.model.clone(),
            content: InterleavedContent::Text(prompt.clone()),
            sampling_params: Some(sampling(
                request.temperature,
                request.top_p,
                request.max_tokens,
                request.stop.clone(),
                request.seed,
            )?),
            response_format: None,
            stream: Some(true),
            logprobs: match request.logprobs {
                Some(n) if n > 5 => {
                    return Err(invalid_field("logprobs", "must be between 0 and 5"));
                }
                Some(n) => Some(LogProbConfig { top_k: Some(n) }),
                None => None,
            },
        };
        let top_logprobs = request.logprobs.map(|n| n as usize);
        let stream = self.completion(classic).await?;
        let echo = request.echo.unwrap_or(false).then_some(prompt);
        if request.stream.unwrap_or(false) {
            return Ok(OpenAiOutput::Stream(completion_chunks(
                stream,
                request.model,
                echo,
                top_logprobs,
            )));
        }
        let response = crate::ops::collect_completion(stream).await?;
        let usage = Usage::from_metrics(response.metrics.as_deref().unwrap_or(&[]));
        Ok(OpenAiOutput::Complete(OpenAiCompletion {
            id: format!("cmpl-{}", uuid::Uuid::new_v4()),
            object: "text_completion".into(),
            created: now(),
            model: request.model,
            choices: vec![OpenAiCompletionChoice {
                index: 0,
                logprobs: match (top_logprobs, &response.logprobs) {
                    (Some(top), Some(entries)) => Some(completion_logprobs(
                        entries,
                        top,
                        &mut echo.as_ref().map_or(0, |e| e.len()),
                    )),
                    _ => None,
                },
                text: echo.unwrap_or_default() + &response.content,
                finish_reason: Some(response.stop_reason.openai_finish_reason(false).into()),
            }],
            usage: Some(usage.into()),
        }))
    }
}

fn completion_chunks(
    stream: CompletionStream,
    model: String,
    echo: Option<String>,
    top_logprobs: Option<usize>,
) -> OpenAiCompletionStream {
    let id = format!("cmpl-{}", uuid::Uuid::new_v4());
    let created = now();
    let make =
        move |text: String, finish: Option<String>, usage: Option<OpenAiUsage>| OpenAiCompletion {
            id: id.clone(),
            object: "text_completion".into(),
            created,
            model: model.clone(),
            choices: vec![OpenAiCompletionChoice {
                index: 0,
                text,
                finish_reason: finish,
                logprobs: None,
            }],
            usage,
        };
    let mut echo = echo;
    let mut offset = echo.as_ref().map_or(0, |e| e.len());
    stream
        .map(move |item| {
            item.map(|chunk| {
                let mut text = echo.take().unwrap_or_default();
                text.push_str(&chunk.delta);
                let logprobs = match (top_logprobs, &chunk.logprobs) {
                    (Some(top), Some(entries)) => {
                        Some(completion_logprobs(entries, top, &mut offset))
                    }
                    _ => None,
                };
                let mut out = match chunk.stop_reason {
                    Some(reason) => {
                        let usage = Usage::from_metrics(chunk.metrics.as_deref().unwrap_or(&[]));
                        make(
                            text,
                            Some(reason.openai_finish_reason(false).into()),
                            Some(usage.into()),
                        )
                    }
                    None => make(text, None, None),
                };
                if let Some(choice) = out.choices.first_mut() {
                    choice.logprobs = logprobs;
                }
                out
            })
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> OpenAiChatCompletionRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn translates_messages_tools_and_sampling() {
        let r = request(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
            "temperature": 0.7, "top_p": 0.9, "max_tokens": 5, "stop": "END", "seed": 3,
            "some_future_field": true
        }));
        let c = chat_to_classic(&r).unwrap();
        assert_eq!(c.messages.len(), 4);
        assert!(matches!(&c.messages[3], Message::Tool { call_id, .. } if call_id == "c1"));
        match &c.messages[2] {
            Message::Assistant { tool_calls, .. } => {
                assert_eq!(tool_calls[0].arguments["city"], "Paris")
            }
            other => panic!("unexpected {other:?}"),
        }
        let tools = c.tools.unwrap();
        assert!(tools[0].parameters.as_ref().unwrap()["city"].required);
        let s = c.sampling_params.unwrap();
        assert_eq!(s.max_tokens, Some(5));
        assert_eq!(s.stop, Some(vec!["END".to_string()]));
        assert_eq!(s.seed, Some(3));
        assert!(matches!(s.strategy, SamplingStrategy::TopP { top_p, .. } if top_p == 0.9));
    }

    #[test]
    fn zero_temperature_is_greedy_and_bad_values_are_named() {
        let r = request(serde_json::json!({"model": "m", "messages": [], "temperature": 0}));
        assert_eq!(
            chat_to_classic(&r)
                .unwrap()
                .sampling_params
                .unwrap()
                .strategy,
            SamplingStrategy::Greedy
        );
        let r = request(serde_json::json!({"model": "m", "messages": [], "temperature": 5}));
        let err = chat_to_classic(&r).unwrap_err();
        assert!(err.message().contains("temperature"));
        let r = request(serde_json::json!({"model": "m", "messages": [], "n": 2}));
        assert!(chat_to_classic(&r).is_err());
    }
}
