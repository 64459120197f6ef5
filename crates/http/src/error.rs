//! Domain errors as HTTP responses, in the two body shapes clients expect: classic routes
//! answer `{"error":{"detail":...}}`, OpenAI-compatible routes `{"error":{"message",...}}`.

use std::marker::PhantomData;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use llama_stack_core::limits::RequestLimits;
use llama_stack_core::{Error, ErrorKind};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The status a classic route answers for each kind. Upstream raises `ValueError` for unknown
/// resources, which the classic server turns into 400, so not-found is 400 here.
pub fn classic_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::Conflict => {
            StatusCode::BAD_REQUEST
        }
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status an OpenAI-compatible route answers for each kind.
pub fn openai_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The message a client may see: internal details are logged, never sent.
fn public_message(err: &Error) -> String {
    match err.kind() {
        ErrorKind::Internal => "An unexpected error occurred.".to_string(),
        _ => err.to_string(),
    }
}

fn log(err: &Error, status: StatusCode) {
    // Over quota, a full queue, no credentials: expected under load, counted and logged at a
    // bounded rate rather than as an error line per request.
    if llama_stack_core::metrics::rejection("http", err) {
        return;
    }
    if status.is_server_error() {
        tracing::error!(kind = err.kind().as_str(), error = %err, "Request failed");
    } else {
        tracing::debug!(kind = err.kind().as_str(), error = %err, "Request rejected");
    }
}

fn with_retry_after(mut response: Response, err: &Error) -> Response {
    if let Some(after) = err.retry_after() {
        let secs = after.as_secs().max(1).to_string();
        if let Ok(value) = HeaderValue::from_str(&secs) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

/// How a route family shapes its errors.
pub trait ErrorFlavor: Send + Sync + 'static {
    fn response(err: &Error) -> Response;
}

/// Classic routes: `{"error":{"detail":...}}`.
pub struct Classic;
/// OpenAI-compatible routes: `{"error":{"message","type","param","code"}}`.
pub struct OpenAi;

impl ErrorFlavor for Classic {
    fn response(err: &Error) -> Response {
        let status = classic_status(err.kind());
        log(err, status);
        let detail = match (err.kind(), err.location()) {
            (ErrorKind::InvalidRequest, Some(loc)) => json!({"errors": [{
                "loc": loc, "msg": err.message(), "type": "value_error"
            }]}),
            (ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::Conflict, None) => {
                json!(format!("Invalid value: {err}"))
            }
            (ErrorKind::Unsupported, _) => json!(format!("Not implemented: {err}")),
            (ErrorKind::Internal, _) => {
                json!("Internal server error: An unexpected error occurred.")
            }
            _ => json!(public_message(err)),
        };
        with_retry_after(
            (status, axum::Json(json!({"error": {"detail": detail}}))).into_response(),
            err,
        )
    }
}

impl ErrorFlavor for OpenAi {
    fn response(err: &Error) -> Response {
        let status = openai_status(err.kind());
        log(err, status);
        let param = err
            .location()
            .and_then(|loc| loc.get(1))
            .and_then(|p| p.as_str())
            .map(str::to_string);
        let body = json!({"error": {
            "message": public_message(err),
            "type": err.kind().as_str(),
            "param": param,
            "code": status.as_u16().to_string(),
        }});
        with_retry_after((status, axum::Json(body)).into_response(), err)
    }
}

/// Anthropic's Messages routes: `{"type":"error","error":{"type","message"}}`.
pub struct Anthropic;

impl ErrorFlavor for Anthropic {
    fn response(err: &Error) -> Response {
        let status = openai_status(err.kind());
        log(err, status);
        let kind = match err.kind() {
            ErrorKind::InvalidRequest | ErrorKind::Conflict | ErrorKind::Unsupported => {
                "invalid_request_error"
            }
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Unauthorized => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Timeout | ErrorKind::Upstream | ErrorKind::Internal => "api_error",
        };
        let body = json!({"type": "error",
                          "error": {"type": kind, "message": public_message(err)}});
        with_retry_after((status, axum::Json(body)).into_response(), err)
    }
}

/// A handler error rendered in the flavor `F`.
pub struct ApiError<F: ErrorFlavor>(pub Error, PhantomData<F>);

impl<F: ErrorFlavor> From<Error> for ApiError<F> {
    fn from(err: Error) -> Self {
        ApiError(err, PhantomData)
    }
}

impl<F: ErrorFlavor> IntoResponse for ApiError<F> {
    fn into_response(self) -> Response {
        F::response(&self.0)
    }
}

impl Classic {
    /// The classic error response for `err`.
    pub fn response_for(err: &Error) -> Response {
        <Classic as ErrorFlavor>::response(err)
    }
}

pub type ClassicError = ApiError<Classic>;
pub type OpenAiError = ApiError<OpenAi>;

/// A JSON body whose rejections (malformed JSON, wrong field types, size limit) use the
/// route's error shape and name the offending field.
pub struct ApiJson<T, F>(pub T, pub PhantomData<F>);

impl<T, F, S> FromRequest<S> for ApiJson<T, F>
where
    T: DeserializeOwned,
    F: ErrorFlavor,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limits = req
            .extensions()
            .get::<std::sync::Arc<RequestLimits>>()
            .cloned()
            .unwrap_or_default();
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(rejection) => {
                let status = rejection.status();
                let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    format!(
                        "The request body is larger than the server accepts ({} bytes, server.limits.max_body_bytes)",
                        limits.max_body_bytes
                    )
                } else {
                    rejection.body_text()
                };
                let mut response = F::response(&Error::invalid(message));
                *response.status_mut() = status;
                return Err(response);
            }
        };
        if let Err(err) = crate::limits::check_body(&bytes, &limits) {
            return Err(F::response(&err));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Ok(value) => Ok(ApiJson(value, PhantomData)),
            Err(err) => {
                let inner = err.inner();
                if inner.is_syntax() || inner.is_eof() {
                    return Err(F::response(&Error::invalid(format!(
                        "The request body is not valid JSON: {inner}"
                    ))));
                }
                let mut location = vec![serde_json::Value::from("body")];
                for segment in err.path().iter() {
                    match segment {
                        serde_path_to_error::Segment::Seq { index } => {
                            location.push((*index).into())
                        }
                        serde_path_to_error::Segment::Map { key } => {
                            location.push(key.clone().into())
                        }
                        serde_path_to_error::Segment::Enum { variant } => {
                            location.push(variant.clone().into())
                        }
                        serde_path_to_error::Segment::Unknown => {}
                    }
                }
                // A missing field is reported at its parent; name the field, as pydantic does.
                let text = inner.to_string();
                if let Some(field) = text
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next())
                {
                    location.push(field.into());
                }
                let path = err.path().to_string();
                let message = if path == "." {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                };
                Err(F::response(
                    &Error::invalid(message).with_location(location),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_an_error_status() {
        for kind in ErrorKind::ALL {
            assert!(classic_status(kind).as_u16() >= 400);
            assert!(openai_status(kind).as_u16() >= 400);
        }
        assert_eq!(classic_status(ErrorKind::NotFound), StatusCode::BAD_REQUEST);
        assert_eq!(openai_status(ErrorKind::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            classic_status(ErrorKind::Overloaded),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            classic_status(ErrorKind::Unsupported),
            StatusCode::NOT_IMPLEMENTED
        );
    }

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn classic_bodies_follow_the_upstream_shapes() {
        let r = Classic::response(&Error::not_found("Model 'x' not found"));
        assert_eq!(r.status(), 400);
        assert_eq!(
            body_json(r).await,
            json!({"error": {"detail": "Invalid value: Model 'x' not found"}})
        );
        let r = Classic::response(&Error::internal("secret stack trace"));
        let body = body_json(r).await;
        assert!(!body.to_string().contains("secret"));
        let r = Classic::response(&Error::overloaded(
            "busy",
            std::time::Duration::from_secs(2),
        ));
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }

    #[tokio::test]
    async fn openai_bodies_carry_message_type_and_param() {
        let err = Error::invalid("bad").with_location(vec!["body".into(), "messages".into()]);
        let body = body_json(OpenAi::response(&err)).await;
        assert_eq!(body["error"]["message"], "bad");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "messages");
    }
}
