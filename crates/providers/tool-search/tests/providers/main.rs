//! The three runtimes against an in-process HTTP server standing in for each API: what goes
//! over the wire (path, query, key), what comes back, and how failures and bad configs are
//! reported.

mod brave;
mod configs;
mod support;
mod tavily;
mod wolfram;
