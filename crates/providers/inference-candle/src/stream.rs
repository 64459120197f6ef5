//! Turning engine token events into the classic chunk sequence: incremental detokenization,
//! stop strings, the `<|python_tag|>` tool-call deltas, stop reasons and metrics.

use std::sync::Arc;

use llama_stack_core::{Error, Result};
use llama_stack_llama3::{EOM_ID, EOT_ID, PYTHON_TAG};
use llama_stack_types::{
    ChatCompletionResponseStreamChunk, ChatEventType, CompletionResponseStreamChunk, ContentDelta,
    StopReason, TokenLogProbs, ToolCallOrText, ToolCallParseStatus, ToolDefinition, Usage,
};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

use crate::engine::{EngineEvent, TokenLogprobs};

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

    pub fn tokenizer(&self) -> Arc<Tokenizer> {
        self.tokenizer.clone()
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

/// What the engine did next.
enum Next {
    Token(u32, Option<TokenLogprobs>),
    End(StopReason),
}

/// Log-probabilities of tokens whose text has not been released yet; they travel with the
/// chunk that releases it.
struct PendingLogprobs {
    tokenizer: Arc<Tokenizer>,
    entries: Vec<TokenLogProbs>,
}

impl PendingLogprobs {
    fn new(tokenizer: Arc<Tokenizer>) -> Self {
        PendingLogprobs {
            tokenizer,
            entries: Vec::new(),
        }
    }

    fn text(&self, id: u32) -> String {
        self.tokenizer.decode(&[id], false).unwrap_or_default()
    }

    fn push(&mut self, id: u32, logprobs: Option<TokenLogprobs>) {
        let Some(lp) = logprobs else { return };
        let chosen = (self.text(id), lp.logprob as f64);
        let mut by_token: std::collections::BTreeMap<String, f64> = lp
            .top
            .iter()
            .map(|(t, l)| (self.text(*t), *l as f64))
            .collect();
        by_token.insert(chosen.0.clone(), chosen.1);
        self.entries.push(TokenLogProbs {
            logprobs_by_token: by_token,
            chosen: Some(chosen),
        });
    }

    fn take(&mut self) -> Option<Vec<TokenLogProbs>> {
        (!self.entries.is_empty()).then(|| std::mem::take(&mut self.entries))
    }
}

async fn next(events: &mut mpsc::UnboundedReceiver<EngineEvent>) -> Result<Next> {
    loop {
        return match events.recv().await {
            None => Err(Error::internal("the inference engine stopped unexpectedly")),
            Some(EngineEvent::Prefilled { .. }) => continue,
            Some(EngineEvent::Token { id, logprobs }) => Ok(Next::Token(id, logprobs)),
            Some(EngineEvent::Failed(message)) => {
                Err(Error::internal(format!("generation failed: {message}")))
            }
            Some(other) => Ok(Next::End(stop_reason_for(&other))),
        };
    }
}

/// The engine's next step; an engine failure is passed on to the consumer and ends the stream
/// (`None`).
async fn next_token<T>(
    events: &mut mpsc::UnboundedReceiver<EngineEvent>,
    out: &mpsc::Sender<Result<T>>,
) -> Option<Next> {
    match next(events).await {
        Ok(step) => Some(step),
        Err(err) => {
            send(out, Err(err)).await;
            None
        }
    }
}

/// Sends one item; false when the consumer is gone.
async fn send<T>(out: &mpsc::Sender<Result<T>>, item: Result<T>) -> bool {
    out.send(item).await.is_ok()
}

/// The text of a chat reply, as a text delta, or as raw tool-call text after `<|python_tag|>`.
fn text_delta(text: String, python_tag: bool) -> ContentDelta {
    if python_tag {
        ContentDelta::ToolCall {
            tool_call: ToolCallOrText::Text(text),
            parse_status: ToolCallParseStatus::InProgress,
        }
    } else {
        ContentDelta::text(text)
    }
}

/// Pumps engine events into classic chat chunks until the generation ends or the consumer
/// goes away (dropping `events` then stops the engine's work on this request).
pub(crate) async fn pump_chat(
    mut events: mpsc::UnboundedReceiver<EngineEvent>,
    out: mpsc::Sender<Result<ChatCompletionResponseStreamChunk>>,
    mut text: TextAssembler,
    tools: Vec<ToolDefinition>,
    prompt_tokens: usize,
) {
    if !send(
        &out,
        Ok(chunk(ChatEventType::Start, ContentDelta::text(""))),
    )
    .await
    {
        return;
    }
    let mut generated = 0usize;
    let mut python_tag = false;
    let mut logprobs = PendingLogprobs::new(text.tokenizer());
    let finish = loop {
        let id = match next_token(&mut events, &out).await {
            Some(Next::Token(id, lp)) => {
                logprobs.push(id, lp);
                id
            }
            Some(Next::End(reason)) => break reason,
            None => return,
        };
        generated += 1;
        if id == PYTHON_TAG && generated == 1 {
            python_tag = true;
            let started = ContentDelta::ToolCall {
                tool_call: ToolCallOrText::Text(String::new()),
                parse_status: ToolCallParseStatus::Started,
            };
            if !send(&out, Ok(chunk(ChatEventType::Progress, started))).await {
                return;
            }
            continue;
        }
        match text.push(id) {
            Ok(piece) if piece.is_empty() => {}
            Ok(piece) => {
                let mut c = chunk(ChatEventType::Progress, text_delta(piece, python_tag));
                c.event.logprobs = logprobs.take();
                if !send(&out, Ok(c)).await {
                    return;
                }
            }
            Err(err) => {
                send(&out, Err(err)).await;
                return;
            }
        }
        if text.stop_hit {
            break StopReason::EndOfTurn;
        }
    };
    // Let the engine move on at once: nothing more is needed from it.
    drop(events);
    let rest = text.finish();
    if !rest.is_empty() {
        let mut c = chunk(ChatEventType::Progress, text_delta(rest, python_tag));
        c.event.logprobs = logprobs.take();
        if !send(&out, Ok(c)).await {
            return;
        }
    }
    if python_tag || !tools.is_empty() {
        for delta in tool_call_deltas(text.full_text(), python_tag, &tools) {
            let mut c = chunk(ChatEventType::Progress, delta);
            c.event.stop_reason = Some(finish);
            if !send(&out, Ok(c)).await {
                return;
            }
        }
    }
    let mut last = chunk(ChatEventType::Complete, ContentDelta::text(""));
    last.event.stop_reason = Some(finish);
    last.event.logprobs = logprobs.take();
    last.metrics = Some(usage(prompt_tokens, generated).metrics());
    send(&out, Ok(last)).await;
}

fn usage(prompt_tokens: usize, generated: usize) -> Usage {
    Usage {
        prompt_tokens: prompt_tokens as u32,
        completion_tokens: generated as u32,
    }
}

/// The final tool-call deltas: `succeeded` for each call of a requested tool, `failed` when a
/// tool call was announced or attempted but cannot be used.
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
            if tools.iter().any(|t| t.tool_name == call.tool_name) {
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
    mut events: mpsc::UnboundedReceiver<EngineEvent>,
    out: mpsc::Sender<Result<CompletionResponseStreamChunk>>,
    mut text: TextAssembler,
    prompt_tokens: usize,
) {
    let delta = |d: String, logprobs: Option<Vec<TokenLogProbs>>| CompletionResponseStreamChunk {
        delta: d,
        stop_reason: None,
        logprobs,
        metrics: None,
    };
    let mut generated = 0usize;
    let mut logprobs = PendingLogprobs::new(text.tokenizer());
    let finish = loop {
        let id = match next_token(&mut events, &out).await {
            Some(Next::Token(id, lp)) => {
                logprobs.push(id, lp);
                id
            }
            Some(Next::End(reason)) => break reason,
            None => return,
        };
        generated += 1;
        match text.push(id) {
            Ok(piece) if piece.is_empty() => {}
            Ok(piece) => {
                if !send(&out, Ok(delta(piece, logprobs.take()))).await {
                    return;
                }
            }
            Err(err) => {
                send(&out, Err(err)).await;
                return;
            }
        }
        if text.stop_hit {
            break StopReason::EndOfTurn;
        }
    };
    drop(events);
    let rest = text.finish();
    if !rest.is_empty() && !send(&out, Ok(delta(rest, logprobs.take()))).await {
        return;
    }
    send(
        &out,
        Ok(CompletionResponseStreamChunk {
            delta: String::new(),
            stop_reason: Some(finish),
            logprobs: logprobs.take(),
            metrics: Some(usage(prompt_tokens, generated).metrics()),
        }),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str) -> ToolDefinition {
        ToolDefinition {
            tool_name: name.into(),
            description: None,
            parameters: None,
        }
    }

    #[test]
    fn a_call_of_a_requested_tool_succeeds() {
        let deltas = tool_call_deltas(
            r#"{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}"#,
            false,
            &[tool("get_weather")],
        );
        match deltas.as_slice() {
            [
                ContentDelta::ToolCall {
                    tool_call: ToolCallOrText::Call(call),
                    parse_status: ToolCallParseStatus::Succeeded,
                },
            ] => {
                assert_eq!(call.tool_name, "get_weather");
                assert_eq!(call.arguments["city"], "Paris");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_call_of_an_unrequested_tool_fails() {
        let deltas = tool_call_deltas("[book_flight(to=\"Rome\")]", false, &[tool("get_weather")]);
        assert!(matches!(
            deltas.as_slice(),
            [ContentDelta::ToolCall {
                parse_status: ToolCallParseStatus::Failed,
                ..
            }]
        ));
    }

    #[test]
    fn plain_text_without_python_tag_has_no_tool_deltas() {
        assert!(tool_call_deltas("Hello there.", false, &[tool("get_weather")]).is_empty());
    }

    #[test]
    fn engine_events_map_to_stop_reasons() {
        use llama_stack_llama3::END_OF_TEXT;
        assert_eq!(
            stop_reason_for(&EngineEvent::Stopped(EOT_ID)),
            StopReason::EndOfTurn
        );
        assert_eq!(
            stop_reason_for(&EngineEvent::Stopped(EOM_ID)),
            StopReason::EndOfMessage
        );
        assert_eq!(
            stop_reason_for(&EngineEvent::Stopped(END_OF_TEXT)),
            StopReason::EndOfTurn
        );
        assert_eq!(
            stop_reason_for(&EngineEvent::Length),
            StopReason::OutOfTokens
        );
    }
}
