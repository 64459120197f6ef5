//! One service per API. Each method extracts, calls the one `Stack` function its HTTP twin
//! calls, and maps the result: no logic lives here.

pub(crate) mod agents;
pub(crate) mod inference;
pub(crate) mod inspect;
pub(crate) mod models;
pub(crate) mod responses;
pub(crate) mod safety;
pub(crate) mod tools;
pub(crate) mod vector_io;
