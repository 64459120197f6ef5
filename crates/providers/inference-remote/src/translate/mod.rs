//! Translation between the classic inference API and the OpenAI protocol, both ways.

mod request;
mod response;

pub use request::{RequestOptions, chat_body, completion_body, embeddings_body, forwarded_body};
pub use response::{
    ChatTranslator, chat_answer, chat_events, completion_answer, completion_events, embeddings,
    openai_embeddings, stop_reason,
};

#[cfg(test)]
mod tests;
