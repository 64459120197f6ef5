//! Turning a dialog into the Llama 3 prompt, as a sequence of special tokens
//! and text. Text pieces are tokenized one by one, never joined first, so the
//! token boundaries match the reference implementation's.

use chrono::NaiveDate;
use llama_stack_types::{ContentItem, InterleavedContent, Message, StopReason, ToolDefinition};

use crate::json_text::python_dumps;
use crate::special::{
    BEGIN_OF_TEXT, END_HEADER_ID, EOM_ID, EOT_ID, IMAGE, PYTHON_TAG, START_HEADER_ID,
    special_token_name,
};
use crate::system_prompt::prelude;
use crate::tool_calls::{CODE_INTERPRETER, encode_tool_call};

/// One part of a rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A special token id, such as [`BEGIN_OF_TEXT`].
    Special(u32),
    /// Text to tokenize without adding special tokens.
    Text(String),
}

/// Which prompt conventions a model follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFamily {
    /// Llama 3.1 (and 3.2 Vision): custom tools described in a user message,
    /// `json` tool calls by default, knowledge cut-off in the system message.
    Llama3_1,
    /// Llama 3.2 text and 3.3: custom tools described in the system message,
    /// `python_list` tool calls.
    Llama3_2,
}

impl ModelFamily {
    /// A guess from a model id such as `meta-llama/Llama-3.1-8B-Instruct` or
    /// `Llama3.2-3B-Instruct`. Vision models are Llama 3.2 by name but use the
    /// 3.1 conventions; anything unrecognised gets the newer ones. Llama Guard models
    /// take their prompt as a single user message with no system prelude, which the
    /// newer conventions give when there are no tools.
    pub fn from_model_id(model_id: &str) -> ModelFamily {
        let id = model_id.to_ascii_lowercase();
        if id.contains("guard") {
            ModelFamily::Llama3_2
        } else if id.contains("3.1") || id.contains("3-1") || id.contains("vision") {
            ModelFamily::Llama3_1
        } else {
            ModelFamily::Llama3_2
        }
    }

    /// The tool prompt format used when the request names none.
    pub fn default_tool_prompt_format(self) -> &'static str {
        match self {
            ModelFamily::Llama3_1 => "json",
            ModelFamily::Llama3_2 => "python_list",
        }
    }
}

/// Everything besides the messages that shapes the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderOptions {
    pub family: ModelFamily,
    /// Builtin tools are recognised by name (`brave_search`, `wolfram_alpha`,
    /// `photogen`, `code_interpreter`); all others are custom tools.
    pub tools: Vec<ToolDefinition>,
    /// `auto` (the default), `required`, `none`, or a tool name.
    pub tool_choice: Option<String>,
    /// `json`, `function_tag` or `python_list`; the family's default if unset.
    pub tool_prompt_format: Option<String>,
    /// `append` (the default) or `replace`; only the Llama 3.2 path uses it.
    pub system_message_behavior: Option<String>,
    /// The date written into the Llama 3.1 system message.
    pub today: NaiveDate,
}

impl RenderOptions {
    /// No tools, and today's local date.
    pub fn new(family: ModelFamily) -> RenderOptions {
        RenderOptions {
            family,
            tools: Vec::new(),
            tool_choice: None,
            tool_prompt_format: None,
            system_message_behavior: None,
            today: chrono::Local::now().date_naive(),
        }
    }

    pub fn effective_tool_prompt_format(&self) -> &str {
        match self.tool_prompt_format.as_deref() {
            Some(format @ ("json" | "function_tag" | "python_list")) => format,
            _ => self.family.default_tool_prompt_format(),
        }
    }
}

/// The full chat prompt: `<|begin_of_text|>`, the system and tool prelude,
/// each message framed by its header and end token, and the header that
/// invites the assistant's reply.
pub fn render_chat(messages: &[Message], options: &RenderOptions) -> Vec<Piece> {
    let (user_system, rest) = match messages.split_first() {
        Some((Message::System { content }, rest)) => (Some(content.as_text("\n")), rest),
        _ => (None, messages),
    };
    let prelude = prelude(user_system.as_deref(), options);
    let format = options.effective_tool_prompt_format();

    let mut pieces = vec![Piece::Special(BEGIN_OF_TEXT)];
    if let Some(system) = prelude.system {
        push_header(&mut pieces, "system");
        push_text(&mut pieces, &system);
        pieces.push(Piece::Special(EOT_ID));
    }
    if let Some(tools) = prelude.tools_user_message {
        push_header(&mut pieces, "user");
        push_text(&mut pieces, &tools);
        pieces.push(Piece::Special(EOT_ID));
    }
    for message in rest {
        push_message(&mut pieces, message, format);
    }
    push_header(&mut pieces, "assistant");
    pieces
}

/// The user message that asks for output matching a `json_schema` response
/// format; the caller appends it after the dialog's messages.
pub fn json_schema_message(json_schema: &serde_json::Value) -> Message {
    Message::user(&format!(
        "Please respond in JSON format with the schema: {}",
        python_dumps(json_schema)
    ))
}

/// A raw completion prompt: `<|begin_of_text|>` and the text.
pub fn render_completion(text: &str) -> Vec<Piece> {
    let mut pieces = vec![Piece::Special(BEGIN_OF_TEXT)];
    push_text(&mut pieces, text);
    pieces
}

/// The prompt as one string with the special tokens written out, for servers
/// that take prompt text and parse special tokens themselves, and for logs.
pub fn pieces_to_text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|piece| match piece {
            Piece::Special(id) => special_token_name(*id).unwrap_or_default(),
            Piece::Text(text) => text.clone(),
        })
        .collect()
}

/// Token ids for the prompt; `encode_text` must tokenize without adding
/// special tokens of its own.
pub fn encode_pieces(pieces: &[Piece], mut encode_text: impl FnMut(&str) -> Vec<u32>) -> Vec<u32> {
    let mut ids = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Special(id) => ids.push(*id),
            Piece::Text(text) => ids.extend(encode_text(text)),
        }
    }
    ids
}

fn push_header(pieces: &mut Vec<Piece>, role: &str) {
    pieces.push(Piece::Special(START_HEADER_ID));
    pieces.push(Piece::Text(role.to_string()));
    pieces.push(Piece::Special(END_HEADER_ID));
    pieces.push(Piece::Text("\n\n".to_string()));
}

fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    if !text.is_empty() {
        pieces.push(Piece::Text(text.to_string()));
    }
}

/// Images become `<|image|>`; a vision provider swaps in its own id, a text
/// provider should have refused the request before rendering.
fn push_content(pieces: &mut Vec<Piece>, content: &InterleavedContent) {
    for item in content.items() {
        match item {
            ContentItem::Text { text } => push_text(pieces, &text),
            ContentItem::Image { .. } => pieces.push(Piece::Special(IMAGE)),
        }
    }
}

fn push_message(pieces: &mut Vec<Piece>, message: &Message, format: &str) {
    let mut end = EOT_ID;
    match message {
        Message::System { content } => {
            push_header(pieces, "system");
            push_content(pieces, content);
        }
        Message::User { content, context } => {
            push_header(pieces, "user");
            push_content(pieces, content);
            if let Some(context) = context {
                push_text(pieces, "\n\n");
                push_content(pieces, context);
            }
        }
        // The models know tool results as the `ipython` role.
        Message::Tool { content, .. } => {
            push_header(pieces, "ipython");
            push_content(pieces, content);
        }
        Message::Assistant {
            content,
            stop_reason,
            tool_calls,
        } => {
            push_header(pieces, "assistant");
            if tool_calls
                .first()
                .is_some_and(|c| c.tool_name == CODE_INTERPRETER)
            {
                pieces.push(Piece::Special(PYTHON_TAG));
            }
            push_content(pieces, content);
            for call in tool_calls {
                push_text(pieces, &encode_tool_call(call, format));
            }
            if *stop_reason == StopReason::EndOfMessage {
                end = EOM_ID;
            }
        }
    }
    pieces.push(Piece::Special(end));
}

#[cfg(test)]
#[path = "prompt_tests.rs"]
mod tests;
