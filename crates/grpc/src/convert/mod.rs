//! Proto messages ⇄ the wire types the core takes and returns. Requests convert fallibly
//! (a malformed message is an invalid request); responses convert infallibly.

pub(crate) mod agents;
pub(crate) mod content;
pub(crate) mod inference;
pub(crate) mod json;
pub(crate) mod memory;
pub(crate) mod safety;

use llama_stack_core::{Error, Result};

/// A proto enum field's value; a number the proto does not define is an invalid request.
pub(crate) fn enum_value<E: TryFrom<i32>>(value: i32, field: &str) -> Result<E> {
    E::try_from(value)
        .map_err(|_| Error::invalid(format!("{field}: {value} is not one of its enum values")))
}

/// Proto lists cannot be absent; an empty one reads as absent.
pub(crate) fn none_if_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}
