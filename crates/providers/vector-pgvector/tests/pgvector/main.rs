//! `remote::pgvector` against a throwaway PostgreSQL with pgvector (see
//! `llama-stack-pg-test-server`): the shared conformance suite, connection and setup errors,
//! and what is particular to PostgreSQL.

mod conformance;
mod setup;
mod specifics;
mod support;
