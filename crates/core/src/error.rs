//! The one domain error every library crate returns.

use std::fmt;
use std::time::Duration;

/// What went wrong, in terms a transport can map to a status code.
///
/// Deliberately not `#[non_exhaustive]`: every transport maps it with an exhaustive `match`, so a
/// new kind does not compile until each transport says how to present it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something invalid.
    InvalidRequest,
    /// A named resource (model, provider, ...) does not exist.
    NotFound,
    /// The resource already exists with different content.
    Conflict,
    Unauthorized,
    Forbidden,
    /// A per-client rate limit was hit.
    RateLimited,
    /// The server has too much work queued; try again shortly.
    Overloaded,
    Timeout,
    /// An upstream service failed.
    Upstream,
    /// The operation is not implemented by this server or provider.
    Unsupported,
    /// A bug or an unexpected failure; details are logged, not sent.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests that check each one is mapped and documented.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::InvalidRequest,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::RateLimited,
        ErrorKind::Overloaded,
        ErrorKind::Timeout,
        ErrorKind::Upstream,
        ErrorKind::Unsupported,
        ErrorKind::Internal,
    ];

    /// A stable snake_case tag used in error bodies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Conflict => "conflict_error",
            ErrorKind::Unauthorized => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::Unsupported => "not_implemented_error",
            ErrorKind::Internal => "internal_error",
        }
    }
}

/// A domain error: a kind, a message saying what to do, context, and retry hints.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<(&'static str, String)>,
    temporary: bool,
    retry_after: Option<Duration>,
    /// For validation errors: the location of the bad field (`["body", "messages", 0]`).
    location: Option<Vec<serde_json::Value>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            context: Vec::new(),
            temporary: matches!(kind, ErrorKind::RateLimited | ErrorKind::Overloaded),
            retry_after: None,
            location: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A 403: the caller is known but may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// A 401: no valid credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    pub fn overloaded(message: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(ErrorKind::Overloaded, message).with_retry_after(retry_after)
    }

    /// The same error with another kind, for a caller that knows better what it means (a
    /// missing resource named in a request body is the request's problem, but still a 404).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.context.push((key, value.into()));
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self.temporary = true;
        self
    }

    pub fn with_location(mut self, location: Vec<serde_json::Value>) -> Self {
        self.location = Some(location);
        self
    }

    pub fn set_temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn context(&self) -> &[(&'static str, String)] {
        &self.context
    }

    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    pub fn location(&self) -> Option<&[serde_json::Value]> {
        self.location.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        for (k, v) in &self.context {
            write!(f, " ({k}: {v})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
