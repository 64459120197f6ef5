pub mod files;
pub mod inference;
pub mod inspect;
pub mod memory;
pub mod models;
pub mod openai;
pub mod safety;
pub mod vector_stores;
