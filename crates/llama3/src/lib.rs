//! The Llama 3.x model family's text conventions: special tokens, chat prompt
//! rendering (system prompt assembly and tool descriptions included), parsing
//! tool calls out of generated text, and converting Meta's tiktoken tokenizer
//! into a Hugging Face `tokenizer.json`.
//!
//! This crate sits just above the wire types. It knows nothing of how a model
//! runs or how requests arrive: it must not depend on providers, storage or
//! transports, so every inference provider that serves Llama 3 models can
//! share it.

mod json_text;
mod prompt;
mod python_literal;
mod special;
mod system_prompt;
mod tokenizer;
mod tool_calls;

pub use prompt::{
    ModelFamily, Piece, RenderOptions, encode_pieces, json_schema_message, pieces_to_text,
    render_chat, render_completion,
};
pub use special::*;
pub use system_prompt::PYTHON_LIST_DEFAULT_PROMPT;
pub use tokenizer::{
    LLAMA3_SPLIT_PATTERN, MODEL_MAX_LENGTH, TokenizerError, hf_tokenizer_json_from_gguf,
    hf_tokenizer_json_from_tiktoken, tiktoken_ranks, tokenizer_config_json,
};
pub use tool_calls::{
    BUILTIN_TOOLS, CODE_INTERPRETER, DecodedAssistantMessage, decode_assistant_content,
    encode_tool_call, is_builtin_tool, new_tool_call, parse_tool_calls,
};
