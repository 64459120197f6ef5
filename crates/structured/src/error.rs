//! The one error type of the crate.

/// What went wrong while building a vocabulary, compiling a format or advancing a constraint.
///
/// [`Error::UnsupportedSchema`] and [`Error::InvalidFormat`] are the caller's request at fault
/// (an HTTP 400); the others are the server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The tokenizer cannot be read as a byte-level vocabulary.
    #[error("tokenizer cannot be used for constrained decoding: {0}")]
    Tokenizer(String),
    /// The JSON Schema uses a keyword (or a form of one) that cannot be enforced token by token.
    #[error(
        "response_format: JSON Schema {feature} at `{path}` is not supported for constrained \
         decoding; remove it or express it with the supported keywords (type, properties, \
         required, additionalProperties, items, minItems, maxItems, enum, const, anyOf, oneOf, \
         $ref, minLength, maxLength, pattern, minimum, maximum)"
    )]
    UnsupportedSchema {
        /// The keyword, quoted, or a description such as "a remote $ref".
        feature: String,
        /// JSON Pointer to the schema object that holds it (`` for the root).
        path: String,
    },
    /// The format is malformed: a schema that is not a schema, a grammar that does not parse,
    /// a schema no value can satisfy, or a `response_format` object of an unknown shape.
    #[error("response_format: {0}")]
    InvalidFormat(String),
    /// [`crate::Constraint::accept`] was given a token outside the current allowed set; the
    /// constraint is unchanged.
    #[error("token {token} is not allowed by the response format at this point")]
    TokenNotAllowed {
        /// The rejected token id.
        token: u32,
    },
    /// The constraint cannot go on (for example a parser resource limit was reached); the
    /// request should end with an error.
    #[error("constrained decoding failed: {0}")]
    Internal(String),
}

impl Error {
    /// Whether the request, not the server, is at fault.
    pub fn is_invalid_request(&self) -> bool {
        matches!(
            self,
            Error::UnsupportedSchema { .. } | Error::InvalidFormat(_)
        )
    }
}
