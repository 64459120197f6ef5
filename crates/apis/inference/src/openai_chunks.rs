//! Classic chat streams as OpenAI chunks, for the OpenAI-compatible routes over providers that
//! speak the classic API.

use futures::StreamExt;
use llama_stack_types::openai::*;
use llama_stack_types::{
    ChatEventType, ContentDelta, StopReason, ToolCallOrText, ToolCallParseStatus, Usage,
};

use crate::openai_compat::{OpenAiChatStream, chat_logprobs, now, openai_tool_call};
use crate::provider::ChatStream;
use llama_stack_core::Result;

/// Text that may be the start of a Llama tool call (JSON, the pythonic list, `<|python_tag|>`)
/// is held back while tools are offered: a provider that formats tool calls as text streams it
/// before parsing the call, and an OpenAI client must see a tool call, not its text.
#[derive(Default)]
struct HeldText {
    text: String,
    /// `Some(true)` once the text is known to be an answer, `Some(false)` once it may be a call.
    streaming: Option<bool>,
}

impl HeldText {
    /// What to send now of `piece`.
    fn push(&mut self, piece: String) -> Option<String> {
        match self.streaming {
            Some(true) => return Some(piece),
            Some(false) => {
                self.text.push_str(&piece);
                return None;
            }
            None => self.text.push_str(&piece),
        }
        let start = self.text.trim_start();
        const TAG: &str = "<|python_tag|>";
        if start.is_empty() || TAG.starts_with(start) {
            return None;
        }
        if start.starts_with('{') || start.starts_with('[') || start.starts_with(TAG) {
            self.streaming = Some(false);
            return None;
        }
        self.streaming = Some(true);
        Some(std::mem::take(&mut self.text))
    }

    /// What is left once the reply ends without a tool call.
    fn rest(&mut self) -> Option<String> {
        Some(std::mem::take(&mut self.text)).filter(|t| !t.is_empty())
    }
}

/// Translates a classic chat stream into OpenAI chunks.
pub(crate) fn chat_chunks(
    stream: ChatStream,
    model: String,
    include_usage: bool,
    top_logprobs: Option<usize>,
    tools_offered: bool,
) -> OpenAiChatStream {
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4());
    let created = now();
    let make =
        move |delta: OpenAiChunkDelta, finish: Option<String>, usage: Option<OpenAiUsage>| {
            OpenAiChatCompletionChunk {
                id: id.clone(),
                object: "chat.completion.chunk".into(),
                created,
                model: model.clone(),
                choices: if usage.is_some() {
                    Vec::new()
                } else {
                    vec![OpenAiChunkChoice {
                        index: 0,
                        delta,
                        finish_reason: finish,
                        logprobs: None,
                    }]
                },
                usage,
            }
        };
    let mut tool_index = 0u32;
    let mut held = HeldText {
        streaming: (!tools_offered).then_some(true),
        ..HeldText::default()
    };
    stream
        .flat_map(move |item| {
            let out: Vec<Result<OpenAiChatCompletionChunk>> = match item {
                Err(e) => vec![Err(e)],
                Ok(chunk) => {
                    let event = chunk.event;
                    let logprobs = match (top_logprobs, &event.logprobs) {
                        (Some(top), Some(entries)) => Some(chat_logprobs(entries, top)),
                        _ => None,
                    };
                    let empty = |content: Option<String>| OpenAiChunkDelta {
                        role: None,
                        content,
                        tool_calls: None,
                    };
                    match (event.event_type, event.delta) {
                        (ChatEventType::Start, _) => vec![Ok(make(
                            OpenAiChunkDelta {
                                role: Some("assistant".into()),
                                content: Some(String::new()),
                                tool_calls: None,
                            },
                            None,
                            None,
                        ))],
                        (ChatEventType::Progress, ContentDelta::Text { text }) => {
                            match held.push(text) {
                                Some(text) => {
                                    let mut c = make(empty(Some(text)), None, None);
                                    if let Some(choice) = c.choices.first_mut() {
                                        choice.logprobs = logprobs;
                                    }
                                    vec![Ok(c)]
                                }
                                None => vec![],
                            }
                        }
                        (
                            ChatEventType::Progress,
                            ContentDelta::ToolCall {
                                tool_call: ToolCallOrText::Call(call),
                                parse_status: ToolCallParseStatus::Succeeded,
                            },
                        ) => {
                            let delta = OpenAiChunkDelta {
                                role: None,
                                content: None,
                                tool_calls: Some(vec![openai_tool_call(tool_index, &call)]),
                            };
                            tool_index += 1;
                            // The call's own text is not part of the answer.
                            held.text.clear();
                            vec![Ok(make(delta, None, None))]
                        }
                        (ChatEventType::Progress, _) => vec![],
                        (ChatEventType::Complete, _) => {
                            let reason = event
                                .stop_reason
                                .unwrap_or(StopReason::EndOfTurn)
                                .openai_finish_reason(tool_index > 0);
                            let mut out = Vec::new();
                            if let Some(rest) = held.rest() {
                                out.push(Ok(make(empty(Some(rest)), None, None)));
                            }
                            out.push(Ok(make(empty(None), Some(reason.to_string()), None)));
                            if include_usage {
                                let usage =
                                    Usage::from_metrics(chunk.metrics.as_deref().unwrap_or(&[]));
                                out.push(Ok(make(empty(None), None, Some(usage.into()))));
                            }
                            out
                        }
                    }
                }
            };
            futures::stream::iter(out)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_may_be_a_tool_call_is_held_back() {
        let mut held = HeldText::default();
        assert_eq!(held.push(" ".into()), None);
        assert_eq!(held.push("{\"name\"".into()), None);
        assert_eq!(held.push(": 1}".into()), None);
        assert_eq!(held.rest().as_deref(), Some(" {\"name\": 1}"));
        let mut tag = HeldText::default();
        assert_eq!(tag.push("<|python".into()), None);
        assert_eq!(tag.push("_tag|>x".into()), None);
        let mut answer = HeldText::default();
        assert_eq!(answer.push("\n".into()), None);
        assert_eq!(answer.push("Hi".into()).as_deref(), Some("\nHi"));
        assert_eq!(answer.push(" there".into()).as_deref(), Some(" there"));
        assert_eq!(answer.rest(), None);
    }
}
