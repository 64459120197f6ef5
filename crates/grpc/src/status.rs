//! Domain errors as gRPC statuses: the twin of the HTTP transport's error mapping
//! (`llama_stack_http::error`).
//!
//! Unlike the classic HTTP routes, which answer 400 for an unknown resource because the Python
//! server does, gRPC answers `NOT_FOUND`: it has no older clients to stay compatible with, so
//! the code follows the domain kind, as the OpenAI-compatible HTTP routes do (404).

use std::time::Duration;

use llama_stack_core::{Error, ErrorKind};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key naming the error kind (`invalid_request_error`, ...), the tag HTTP error
/// bodies carry as `type`, for clients that need more than the status code.
pub const ERROR_KIND_KEY: &str = "x-llama-stack-error-kind";
/// Metadata key with seconds to wait before retrying, as the HTTP `Retry-After` header.
pub const RETRY_AFTER_KEY: &str = "retry-after";
/// Metadata key the gRPC retry policy reads (gRFC A6 server pushback), in milliseconds.
pub const RETRY_PUSHBACK_KEY: &str = "grpc-retry-pushback-ms";

/// The status code for each kind. No `_` arm: a new kind does not compile until mapped.
pub fn code_for(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidRequest => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Conflict => Code::AlreadyExists,
        ErrorKind::Unauthorized => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::RateLimited => Code::ResourceExhausted,
        // UNAVAILABLE is the code gRPC clients retry by default, which is what both overload
        // and a failed upstream call invite; the kind metadata tells them apart.
        ErrorKind::Overloaded => Code::Unavailable,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Upstream => Code::Unavailable,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status a client sees for `err`. Internal details are logged, never sent.
pub fn to_status(err: &Error) -> Status {
    let code = code_for(err.kind());
    // Over quota, a full queue, no credentials: counted, and logged at a bounded rate.
    let rejected = llama_stack_core::metrics::rejection("grpc", err);
    let message = match err.kind() {
        ErrorKind::Internal => {
            tracing::error!(kind = err.kind().as_str(), error = %err, "Request failed");
            "An unexpected error occurred.".to_string()
        }
        _ => {
            if !rejected {
                tracing::debug!(kind = err.kind().as_str(), error = %err, "Request rejected");
            }
            err.to_string()
        }
    };
    let mut status = Status::new(code, message);
    let metadata = status.metadata_mut();
    metadata.insert(
        ERROR_KIND_KEY,
        MetadataValue::from_static(err.kind().as_str()),
    );
    if let Some(after) = err.retry_after() {
        let (seconds, millis) = retry_values(after);
        metadata.insert(RETRY_AFTER_KEY, seconds.into());
        metadata.insert(RETRY_PUSHBACK_KEY, millis.into());
    }
    status
}

/// Whole seconds (at least 1, as HTTP sends) and milliseconds.
fn retry_values(after: Duration) -> (u64, u64) {
    (after.as_secs().max(1), after.as_millis().max(1) as u64)
}

/// [`to_status`] by value, for `map_err`.
pub(crate) fn status(err: Error) -> Status {
    to_status(&err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_an_error_code_with_its_tag() {
        for kind in ErrorKind::ALL {
            let status = to_status(&Error::new(kind, "m"));
            assert_ne!(status.code(), Code::Ok);
            assert_eq!(status.code(), code_for(kind));
            assert_eq!(
                status.metadata().get(ERROR_KIND_KEY).unwrap(),
                kind.as_str()
            );
        }
        assert_eq!(code_for(ErrorKind::NotFound), Code::NotFound);
        assert_eq!(code_for(ErrorKind::InvalidRequest), Code::InvalidArgument);
        assert_eq!(code_for(ErrorKind::Overloaded), Code::Unavailable);
        assert_eq!(code_for(ErrorKind::RateLimited), Code::ResourceExhausted);
        assert_eq!(code_for(ErrorKind::Unsupported), Code::Unimplemented);
    }

    #[test]
    fn retry_hints_travel_as_metadata() {
        let status = to_status(&Error::overloaded("busy", Duration::from_millis(2500)));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.metadata().get(RETRY_AFTER_KEY).unwrap(), "2");
        assert_eq!(status.metadata().get(RETRY_PUSHBACK_KEY).unwrap(), "2500");
        let status = to_status(&Error::overloaded("busy", Duration::from_millis(10)));
        assert_eq!(status.metadata().get(RETRY_AFTER_KEY).unwrap(), "1");
        let status = to_status(&Error::invalid("bad"));
        assert!(status.metadata().get(RETRY_AFTER_KEY).is_none());
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let status = to_status(&Error::internal("secret stack trace"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
        let status = to_status(&Error::not_found("Model 'x' not found").with_context("at", "y"));
        assert_eq!(status.message(), "Model 'x' not found (at: y)");
    }
}
