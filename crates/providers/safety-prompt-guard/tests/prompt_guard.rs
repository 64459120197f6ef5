//! Integration tests of `inline::prompt-guard` through its `SafetyProvider` interface and the
//! real DeBERTa-v2 forward pass, on a tiny model the tests write (support.rs), one module per
//! topic.

#[path = "prompt_guard/model_folder.rs"]
mod model_folder;
#[path = "prompt_guard/moderation.rs"]
mod moderation;
#[path = "prompt_guard/shield.rs"]
mod shield;
#[path = "prompt_guard/support.rs"]
mod support;
