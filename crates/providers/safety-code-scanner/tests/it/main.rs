//! Integration tests of `inline::code-scanner`.

mod corpus;
mod detections;
mod provider;
