//! OpenAI answers and stream chunks as classic responses: the event sequence of §1.2 (`start`,
//! `progress` deltas, tool calls with their parse status, `complete` with the stop reason and
//! the metrics), completion chunks, and embedding vectors.

use std::collections::BTreeMap;

use base64::Engine as _;
use futures::StreamExt;
use llama_stack_core::{Error, ErrorKind, Result};
use llama_stack_inference::{ChatStream, CompletionStream, Embeddings, JsonStream};
use llama_stack_types::openai::{
    OpenAiEmbedding, OpenAiEmbeddingUsage, OpenAiEmbeddingVector, OpenAiEmbeddingsResponse,
};
use llama_stack_types::{
    ChatCompletionResponseEvent, ChatCompletionResponseStreamChunk, ChatEventType,
    CompletionResponseStreamChunk, ContentDelta, MetricInResponse, StopReason, TokenLogProbs,
    ToolCall, ToolCallOrText, ToolCallParseStatus, Usage,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<UsageIn>,
}

/// A choice of a chat answer (`message`), a chat chunk (`delta`) or a completion (`text`).
#[derive(Debug, Default, Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<MessageIn>,
    #[serde(default)]
    delta: Option<MessageIn>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct MessageIn {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallIn>>,
}

#[derive(Debug, Default, Deserialize)]
struct ToolCallIn {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionIn>,
}

#[derive(Debug, Default, Deserialize)]
struct FunctionIn {
    #[serde(default)]
    name: Option<String>,
    /// A string by the spec; some servers send an object.
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct UsageIn {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

fn parse<T: serde::de::DeserializeOwned>(label: &str, value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| {
        Error::new(
            ErrorKind::Upstream,
            format!("{label} sent a {what} this server cannot read: {e}"),
        )
    })
}

/// OpenAI's `finish_reason` as a classic stop reason (§1.2).
pub fn stop_reason(finish_reason: &str) -> StopReason {
    match finish_reason {
        "length" => StopReason::OutOfTokens,
        "tool_calls" | "function_call" => StopReason::EndOfMessage,
        // `stop`, `eos`, `content_filter`, and whatever else a server invents: the turn is over.
        _ => StopReason::EndOfTurn,
    }
}

fn metrics(usage: Option<UsageIn>) -> Option<Vec<MetricInResponse>> {
    usage.map(|u| {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
        .metrics()
    })
}

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn number(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64)
}

/// Chat `logprobs.content` entries as classic per-token log-probabilities.
fn chat_logprobs(logprobs: Option<&Value>) -> Option<Vec<TokenLogProbs>> {
    let entries = logprobs?.get("content")?.as_array()?;
    let out: Vec<TokenLogProbs> = entries
        .iter()
        .filter_map(|entry| {
            let token = entry.get("token")?.as_str()?.to_string();
            let logprob = number(entry.get("logprob"))?;
            let mut by_token: BTreeMap<String, f64> = entry
                .get("top_logprobs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some((
                        t.get("token")?.as_str()?.to_string(),
                        number(t.get("logprob"))?,
                    ))
                })
                .collect();
            by_token.entry(token.clone()).or_insert(logprob);
            Some(TokenLogProbs {
                logprobs_by_token: by_token,
                chosen: Some((token, logprob)),
            })
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

/// Legacy completion `logprobs` (`tokens`, `token_logprobs`, `top_logprobs`) as classic
/// per-token log-probabilities.
fn completion_logprobs(logprobs: Option<&Value>) -> Option<Vec<TokenLogProbs>> {
    let logprobs = logprobs?;
    let tokens = logprobs.get("tokens")?.as_array()?;
    let chosen = logprobs.get("token_logprobs").and_then(Value::as_array);
    let top = logprobs.get("top_logprobs").and_then(Value::as_array);
    let out: Vec<TokenLogProbs> = tokens
        .iter()
        .enumerate()
        .filter_map(|(i, token)| {
            let token = token.as_str()?.to_string();
            let logprob = number(chosen.and_then(|c| c.get(i)))?;
            let mut by_token: BTreeMap<String, f64> = top
                .and_then(|t| t.get(i))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(t, l)| Some((t.clone(), l.as_f64()?)))
                .collect();
            by_token.entry(token.clone()).or_insert(logprob);
            Some(TokenLogProbs {
                logprobs_by_token: by_token,
                chosen: Some((token, logprob)),
            })
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

fn event(
    event_type: ChatEventType,
    delta: ContentDelta,
    stop_reason: Option<StopReason>,
) -> ChatCompletionResponseStreamChunk {
    ChatCompletionResponseStreamChunk {
        event: ChatCompletionResponseEvent {
            event_type,
            delta,
            logprobs: None,
            stop_reason,
        },
        metrics: None,
    }
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Builds the classic events of one chat answer from its OpenAI pieces, streamed or whole.
pub struct ChatTranslator {
    label: String,
    /// The names of the tools the request offered; a call of another is reported as failed.
    offered: Vec<String>,
    calls: BTreeMap<u32, PartialCall>,
    finish: Option<StopReason>,
    usage: Option<UsageIn>,
}

impl ChatTranslator {
    pub fn new(label: String, offered: Vec<String>) -> Self {
        ChatTranslator {
            label,
            offered,
            calls: BTreeMap::new(),
            finish: None,
            usage: None,
        }
    }

    /// The events for one stream chunk (or one whole answer): text deltas at once, tool calls
    /// gathered until [`finish`](Self::finish).
    pub fn on_chunk(&mut self, value: Value) -> Result<Vec<ChatCompletionResponseStreamChunk>> {
        let answer: Answer = parse(&self.label, value, "chat chunk")?;
        if answer.usage.is_some() {
            self.usage = answer.usage;
        }
        let mut out = Vec::new();
        // Only the first choice: classic responses have one.
        let Some(choice) = answer.choices.into_iter().next() else {
            return Ok(out);
        };
        let message = choice.delta.or(choice.message).unwrap_or_default();
        let text = text_of(message.content.as_ref());
        let logprobs = chat_logprobs(choice.logprobs.as_ref());
        if !text.is_empty() || logprobs.is_some() {
            let mut progress = event(ChatEventType::Progress, ContentDelta::text(text), None);
            progress.event.logprobs = logprobs;
            out.push(progress);
        }
        for (position, call) in message.tool_calls.into_iter().flatten().enumerate() {
            let index = call.index.unwrap_or(position as u32);
            let partial = self.calls.entry(index).or_default();
            if let Some(id) = call.id.filter(|id| !id.is_empty()) {
                partial.id = id;
            }
            if let Some(function) = call.function {
                // Streamed pieces append, as the OpenAI stream format defines.
                if let Some(name) = function.name {
                    partial.name.push_str(&name);
                }
                match function.arguments {
                    Some(Value::String(piece)) => partial.arguments.push_str(&piece),
                    Some(Value::Null) | None => {}
                    Some(object) => partial.arguments = object.to_string(),
                }
            }
        }
        if let Some(reason) = choice.finish_reason.as_deref() {
            self.finish = Some(stop_reason(reason));
        }
        Ok(out)
    }

    /// The tool calls and the `complete` event, once the upstream has finished.
    pub fn finish(self) -> Result<Vec<ChatCompletionResponseStreamChunk>> {
        let Some(reason) = self.finish else {
            return Err(Error::new(
                ErrorKind::Upstream,
                format!("{} ended its answer without a finish_reason", self.label),
            ));
        };
        let mut out = Vec::new();
        for (index, call) in self.calls {
            let raw = if call.arguments.trim().is_empty() {
                "{}".to_string()
            } else {
                call.arguments
            };
            let parsed = serde_json::from_str::<Value>(&raw)
                .ok()
                .filter(Value::is_object);
            let offered = self.offered.is_empty() || self.offered.contains(&call.name);
            let delta = match parsed {
                Some(arguments) if offered && !call.name.is_empty() => ContentDelta::ToolCall {
                    tool_call: ToolCallOrText::Call(ToolCall {
                        call_id: if call.id.is_empty() {
                            format!("call_{index}")
                        } else {
                            call.id
                        },
                        tool_name: call.name,
                        arguments,
                        arguments_json: Some(raw),
                    }),
                    parse_status: ToolCallParseStatus::Succeeded,
                },
                _ => ContentDelta::ToolCall {
                    tool_call: ToolCallOrText::Text(format!("{}({raw})", call.name)),
                    parse_status: ToolCallParseStatus::Failed,
                },
            };
            out.push(event(ChatEventType::Progress, delta, Some(reason)));
        }
        let mut complete = event(
            ChatEventType::Complete,
            ContentDelta::text(""),
            Some(reason),
        );
        complete.metrics = metrics(self.usage);
        out.push(complete);
        Ok(out)
    }
}

fn start() -> ChatCompletionResponseStreamChunk {
    event(ChatEventType::Start, ContentDelta::text(""), None)
}

/// The events of a whole (non-streamed) chat answer.
pub fn chat_answer(
    label: String,
    offered: Vec<String>,
    value: Value,
) -> Result<Vec<ChatCompletionResponseStreamChunk>> {
    let mut translator = ChatTranslator::new(label, offered);
    let mut out = vec![start()];
    out.extend(translator.on_chunk(value)?);
    out.extend(translator.finish()?);
    Ok(out)
}

/// Runs a translator over an upstream stream: `step` for each object, `end` once it ends.
fn translated<S, T>(
    upstream: JsonStream,
    state: S,
    step: fn(&mut S, Value) -> Result<Vec<T>>,
    end: fn(S) -> Result<Vec<T>>,
) -> futures::stream::BoxStream<'static, Result<T>>
where
    S: Send + 'static,
    T: Send + 'static,
{
    futures::stream::unfold(
        (upstream, Some(state)),
        move |(mut upstream, state)| async move {
            let mut state = state?;
            loop {
                let batch = match upstream.next().await {
                    Some(Ok(value)) => match step(&mut state, value) {
                        Ok(items) if items.is_empty() => continue,
                        Ok(items) => return Some((Ok(items), (upstream, Some(state)))),
                        Err(err) => Err(err),
                    },
                    Some(Err(err)) => Err(err),
                    None => end(state),
                };
                // After the end or an error, nothing more is read.
                return Some((batch, (upstream, None)));
            }
        },
    )
    .flat_map(|batch| {
        let items: Vec<Result<T>> = match batch {
            Ok(items) => items.into_iter().map(Ok).collect(),
            Err(err) => vec![Err(err)],
        };
        futures::stream::iter(items)
    })
    .boxed()
}

/// The classic event stream of a streamed chat answer.
pub fn chat_events(label: String, offered: Vec<String>, upstream: JsonStream) -> ChatStream {
    let body = translated(
        upstream,
        ChatTranslator::new(label, offered),
        ChatTranslator::on_chunk,
        ChatTranslator::finish,
    );
    futures::stream::once(async { Ok(start()) })
        .chain(body)
        .boxed()
}

/// Builds classic completion chunks from OpenAI completion pieces.
pub struct CompletionTranslator {
    label: String,
    finish: Option<StopReason>,
    usage: Option<UsageIn>,
}

impl CompletionTranslator {
    pub fn new(label: String) -> Self {
        CompletionTranslator {
            label,
            finish: None,
            usage: None,
        }
    }

    pub fn on_chunk(&mut self, value: Value) -> Result<Vec<CompletionResponseStreamChunk>> {
        let answer: Answer = parse(&self.label, value, "completion chunk")?;
        if answer.usage.is_some() {
            self.usage = answer.usage;
        }
        let Some(choice) = answer.choices.into_iter().next() else {
            return Ok(Vec::new());
        };
        if let Some(reason) = choice.finish_reason.as_deref() {
            self.finish = Some(stop_reason(reason));
        }
        let text = choice.text.unwrap_or_default();
        let logprobs = completion_logprobs(choice.logprobs.as_ref());
        if text.is_empty() && logprobs.is_none() {
            return Ok(Vec::new());
        }
        Ok(vec![CompletionResponseStreamChunk {
            delta: text,
            stop_reason: None,
            logprobs,
            metrics: None,
        }])
    }

    /// The last chunk: the stop reason and the metrics.
    pub fn finish(self) -> Result<Vec<CompletionResponseStreamChunk>> {
        let reason = self.finish.ok_or_else(|| {
            Error::new(
                ErrorKind::Upstream,
                format!(
                    "{} ended its completion without a finish_reason",
                    self.label
                ),
            )
        })?;
        Ok(vec![CompletionResponseStreamChunk {
            delta: String::new(),
            stop_reason: Some(reason),
            logprobs: None,
            metrics: metrics(self.usage),
        }])
    }
}

/// The chunks of a whole (non-streamed) completion.
pub fn completion_answer(
    label: String,
    value: Value,
) -> Result<Vec<CompletionResponseStreamChunk>> {
    let mut translator = CompletionTranslator::new(label);
    let mut out = translator.on_chunk(value)?;
    out.extend(translator.finish()?);
    Ok(out)
}

/// The classic chunk stream of a streamed completion.
pub fn completion_events(label: String, upstream: JsonStream) -> CompletionStream {
    translated(
        upstream,
        CompletionTranslator::new(label),
        CompletionTranslator::on_chunk,
        CompletionTranslator::finish,
    )
}

#[derive(Debug, Deserialize)]
struct EmbeddingsIn {
    #[serde(default)]
    data: Vec<EmbeddingIn>,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Option<UsageIn>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingIn {
    #[serde(default)]
    index: u32,
    embedding: OpenAiEmbeddingVector,
}

fn floats(label: &str, vector: OpenAiEmbeddingVector) -> Result<Vec<f32>> {
    match vector {
        OpenAiEmbeddingVector::Float(v) => Ok(v),
        OpenAiEmbeddingVector::Base64(text) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Upstream,
                        format!("{label} sent an embedding that is not base64: {e}"),
                    )
                })?;
            Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        }
    }
}

/// An embeddings answer as vectors in input order, checked against the number of inputs.
pub fn embeddings(label: &str, value: Value, inputs: usize) -> Result<Embeddings> {
    let mut answer: EmbeddingsIn = parse(label, value, "embeddings answer")?;
    answer.data.sort_by_key(|e| e.index);
    if answer.data.len() != inputs {
        return Err(Error::new(
            ErrorKind::Upstream,
            format!(
                "{label} returned {} embeddings for {inputs} inputs",
                answer.data.len()
            ),
        ));
    }
    Ok(Embeddings {
        vectors: answer
            .data
            .into_iter()
            .map(|e| floats(label, e.embedding))
            .collect::<Result<_>>()?,
        prompt_tokens: answer.usage.map_or(0, |u| u.prompt_tokens),
    })
}

/// An embeddings answer forwarded in the OpenAI shape, read leniently (servers differ on
/// `object` and `usage`).
pub fn openai_embeddings(label: &str, value: Value) -> Result<OpenAiEmbeddingsResponse> {
    let answer: EmbeddingsIn = parse(label, value, "embeddings answer")?;
    let usage = answer.usage.unwrap_or_default();
    Ok(OpenAiEmbeddingsResponse {
        object: "list".into(),
        data: answer
            .data
            .into_iter()
            .map(|e| OpenAiEmbedding {
                object: "embedding".into(),
                embedding: e.embedding,
                index: e.index,
            })
            .collect(),
        model: answer.model,
        usage: OpenAiEmbeddingUsage {
            prompt_tokens: usage.prompt_tokens,
            total_tokens: usage.prompt_tokens,
        },
    })
}
