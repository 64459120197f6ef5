//! Turning engine token events into the classic chunk sequence: incremental detokenization,
//! stop strings, the `<|python_tag|>` tool-call deltas, stop reasons and metrics.

use std::sync::Arc;

use llama_stack_core::{Error, Result};
use llama_stack_llama3::{EOM_ID, EOT_ID, PYTHON_TAG};
use llama_stack_types::{
    ChatCompletionResponseStreamChunk, ChatEventType, CompletionResponseStreamChunk, ContentDelta,
    StopReason, ToolCallOrText, ToolCallParseStatus, ToolDefinition, Usage,
};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

use crate::engine::EngineEvent;

/// Incremental detokenizer with stop-string detection.
///
/// Text is released only when it decodes to whole characters and cannot be the start of a stop
/// string, so a client never sees part of a stop string or half of a multi-byte character.
pub(crate) struct TextAssembler {
    tokenizer: Arc<Tokenizer>,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    text: String,
    emitted: usize,
    stops: Vec<String>,
    pub stop_hit: bool,
}

impl TextAssembler {
    pub fn new(tokenizer: Arc<Tokenizer>, stops: Vec<String>) -> Self {
        TextAssembler {
            tokenizer,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
            text: String::new(),
            emitted: 0,
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            stop_hit: false,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::internal(format!("detokenization failed: {e}")))
    }

    /// Adds a token; returns the text that may be released now.
    pub fn push(&mut self, id: u32) -> Result<String> {
        let before = self.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        self.ids.push(id);
        let after = self.decode(&self.ids[self.prefix_offset..])?;
        if after.len() > before.len() && !after.ends_with('\u{FFFD}') {
            self.text.push_str(&after[before.len()..]);
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
        }
        Ok(self.release(false))
    }

    /// Releases whatever is left at the end of generation.
    pub fn finish(&mut self) -> String {
        self.release(true)
    }

    pub fn full_text(&self) -> &str {
        &self.text
    }

    fn release(&mut self, at_end: bool) -> String {
        if self.stop_hit {
            return String::new();
        }
        let search_from = self.emitted.saturating_sub(self.max_stop_len());
        let hit = self
            .stops
            .iter()
            .filter_map(|s| {
                self.text[search_from..]
                    .find(s.as_str())
                    .map(|p| p + search_from)
            })
            .min();
        let mut end = match hit {
            Some(pos) => {
                self.stop_hit = true;
                self.text.truncate(pos);
                pos
            }
            None if at_end => self.text.len(),
            None => self
                .text
                .len()
                .saturating_sub(self.max_stop_len().saturating_sub(1)),
        };
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        if end <= self.emitted {
            return String::new();
        }
        let out = self.text[self.emitted..end].to_string();
        self.emitted = end;
        out
    }

    fn max_stop_len(&self) -> usize {
        self.stops.iter().map(String::len).max().unwrap_or(0)
    }
}

pub(crate) fn stop_reason_for(event: &EngineEvent) -> StopReason {
    match event {
        EngineEvent::Stopped(id) if *id == EOM_ID => StopReason::EndOfMessage,
        EngineEvent::Stopped(id) if *id == EOT_ID => StopReason::EndOfTurn,
        EngineEvent::Length => StopReason::OutOfTokens,
        _ => StopReason::EndOfTurn,
    }
}

fn chunk(event_type: ChatEventType, delta: ContentDelta) -> ChatCompletionResponseStreamChunk {
    ChatCompletionResponseStreamChunk::new(event_type, delta)
}

/// Pumps engine events into classic chat chunks until the generation ends or the consumer
/// goes away (dropping `events` then stops the engine's work on this request).
pub(crate) async fn pump_chat(
    mut events: mpsc::Receiver<EngineEvent>,
    out: mpsc::Sender<Result<ChatCompletionResponseStreamChunk>>,
    mut text: TextAssembler,
    tools: Vec<ToolDefinition>,
    prompt_tokens: usize,
) {
    if out
        .send(Ok(chunk(ChatEventType::Start, ContentDelta::text(""))))
        .await
        .is_err()
    {
        return;
    }
    let mut generated = 0usize;
    let mut python_tag = false;
    let mut tool_buffer_started = false;
    let finish = loop {
        let Some(event) = events.recv().await else {
            let _ = out
                .send(Err(Error::internal(
                    "the inference engine stopped unexpectedly",
                )))
                .await;
            return;
        };
        match event {
            EngineEvent::Token(id) => {
                generated += 1;
                if id == PYTHON_TAG && generated == 1 {
                    python_tag = true;
                    continue;
                }
                let piece = match text.push(id) {
                    Ok(p) => p,
                    Err(err) => {
                        let _ = out.send(Err(err)).await;
                        return;
                    }
                };
                if !piece.is_empty() {
                    let delta = if python_tag {
                        let status = if tool_buffer_started {
                            ToolCallParseStatus::InProgress
                        } else {
                            ToolCallParseStatus::Started
                        };
                        if !tool_buffer_started {
                            tool_buffer_started = true;
                            let started = ContentDelta::ToolCall {
                                tool_call: ToolCallOrText::Text(String::new()),
                                parse_status: status,
                            };
                            if out
                                .send(Ok(chunk(ChatEventType::Progress, started)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        ContentDelta::ToolCall {
                            tool_call: ToolCallOrText::Text(piece),
                            parse_status: ToolCallParseStatus::InProgress,
                        }
                    } else {
                        ContentDelta::text(piece)
                    };
                    if out
                        .send(Ok(chunk(ChatEventType::Progress, delta)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if text.stop_hit {
                    break StopReason::EndOfTurn;
                }
            }
            EngineEvent::Failed(message) => {
                let _ = out
                    .send(Err(Error::internal(format!(
                        "generation failed: {message}"
                    ))))
                    .await;
                return;
            }
            other => break stop_reason_for(&other),
        }
    };
    // Let the engine move on at once: nothing more is needed from it.
    drop(events);
    let rest = text.finish();
    if !rest.is_empty() {
        let delta = if python_tag {
            ContentDelta::ToolCall {
                tool_call: ToolCallOrText::Text(rest),
                parse_status: ToolCallParseStatus::InProgress,
            }
        } else {
            ContentDelta::text(rest)
        };
        if out
            .send(Ok(chunk(ChatEventType::Progress, delta)))
            .await
            .is_err()
        {
            return;
        }
    }
    if python_tag || !tools.is_empty() {
        for delta in tool_call_deltas(text.full_text(), python_tag, &tools) {
            let mut c = chunk(ChatEventType::Progress, delta);
            c.event.stop_reason = Some(finish);
            if out.send(Ok(c)).await.is_err() {
                return;
            }
        }
    }
    let usage = Usage {
        prompt_tokens: prompt_tokens as u32,
        completion_tokens: generated as u32,
    };
    let mut last = chunk(ChatEventType::Complete, ContentDelta::text(""));
    last.event.stop_reason = Some(finish);
    last.metrics = Some(usage.metrics());
    let _ = out.send(Ok(last)).await;
}

/// The final tool-call deltas: `succeeded` for each call of a requested (or builtin) tool,
/// `failed` when a tool call was announced or attempted but cannot be used.
fn tool_call_deltas(text: &str, python_tag: bool, tools: &[ToolDefinition]) -> Vec<ContentDelta> {
    let calls = llama_stack_llama3::parse_tool_calls(text, python_tag);
    if calls.is_empty() {
        return if python_tag {
            vec![ContentDelta::ToolCall {
                tool_call: ToolCallOrText::Text(text.to_string()),
                parse_status: ToolCallParseStatus::Failed,
            }]
        } else {
            Vec::new()
        };
    }
    calls
        .into_iter()
        .map(|call| {
            let known = tools.iter().any(|t| t.tool_name == call.tool_name);
            if known {
                ContentDelta::ToolCall {
                    tool_call: ToolCallOrText::Call(call),
                    parse_status: ToolCallParseStatus::Succeeded,
                }
            } else {
                ContentDelta::ToolCall {
                    tool_call: ToolCallOrText::Text(String::new()),
                    parse_status: ToolCallParseStatus::Failed,
                }
            }
        })
        .collect()
}

/// Pumps engine events into raw completion chunks.
pub(crate) async fn pump_completion(
    mut events: mpsc::Receiver<EngineEvent>,
    out: mpsc::Sender<Result<CompletionResponseStreamChunk>>,
    mut text: TextAssembler,
    prompt_tokens: usize,
) {
    let mut generated = 0usize;
    let delta = |d: String| CompletionResponseStreamChunk {
        delta: d,
        stop_reason: None,
        logprobs: None,
        metrics: None,
    };
    let finish = loop {
        let Some(event) = events.recv().await else {
            let _ = out
                .send(Err(Error::internal(
                    "the inference engine stopped unexpectedly",
                )))
                .await;
            return;
        };
        match event {
            EngineEvent::Token(id) => {
                generated += 1;
                match text.push(id) {
                    Ok(piece) if !piece.is_empty() => {
                        if out.send(Ok(delta(piece))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let _ = out.send(Err(err)).await;
                        return;
                    }
                }
                if text.stop_hit {
                    break StopReason::EndOfTurn;
                }
            }
            EngineEvent::Failed(message) => {
                let _ = out
                    .send(Err(Error::internal(format!(
                        "generation failed: {message}"
                    ))))
                    .await;
                return;
            }
            other => break stop_reason_for(&other),
        }
    };
    drop(events);
    let rest = text.finish();
    if !rest.is_empty() && out.send(Ok(delta(rest))).await.is_err() {
        return;
    }
    let usage = Usage {
        prompt_tokens: prompt_tokens as u32,
        completion_tokens: generated as u32,
    };
    let _ = out
        .send(Ok(CompletionResponseStreamChunk {
            delta: String::new(),
            stop_reason: Some(finish),
            logprobs: None,
            metrics: Some(usage.metrics()),
        }))
        .await;
}
