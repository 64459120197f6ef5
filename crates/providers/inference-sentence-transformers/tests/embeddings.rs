//! Integration tests of `inline::sentence-transformers` through its `InferenceProvider`
//! interface, on the real all-MiniLM-L6-v2 weights (scripts/fetch-minilm.sh), one module per
//! topic.

#[path = "embeddings/minilm.rs"]
mod minilm;
#[path = "embeddings/model_dirs.rs"]
mod model_dirs;
#[path = "embeddings/support.rs"]
mod support;
