pub mod inference;
pub mod inspect;
pub mod models;
pub mod openai;
