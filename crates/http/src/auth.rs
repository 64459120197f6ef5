//! `server.auth` on HTTP: the bearer token is checked before anything else runs, the route
//! policy is applied, and the request is served as its caller (`llama_stack_core::access`),
//! so the shared service code judges every resource it touches.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llama_stack_auth::{Authenticator, Credentials};
use llama_stack_core::Error;
use llama_stack_core::access::{self, Caller};

use crate::{PeerAddr, error};

/// `router` with every request but the health and version checks authenticated first. Apply
/// it after [`crate::with_quota`], so that quotas count principals.
pub fn with_auth(router: Router, auth: Arc<Authenticator>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(auth, authenticate))
}

fn refuse(err: Error) -> Response {
    let unauthorized = err.kind() == llama_stack_core::ErrorKind::Unauthorized;
    let mut response = error::OpenAiError::from(err).into_response();
    if unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if llama_stack_auth::is_public(&path) {
        return next.run(request).await;
    }
    let token = match request.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match value.to_str().ok().and_then(bearer) {
            Some(token) => Some(token.to_string()),
            // Where the token is not even read, a gateway header may still identify the caller.
            None if auth.authenticates() && needs_bearer(&auth) => {
                return refuse(Error::unauthorized("Invalid Authorization header format"));
            }
            None => None,
        },
    };
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(name, _)| *name != header::AUTHORIZATION)
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|info| info.0.0.ip());
    let credentials = Credentials {
        token: token.as_deref(),
        path: &path,
        query: request.uri().query(),
        headers: &headers,
        peer,
    };
    let user = match auth.authenticate(&credentials).await {
        Ok(user) => user,
        Err(err) => {
            tracing::debug!(path = %path, reason = %err.message(), "Authentication failed");
            return refuse(err);
        }
    };
    if !auth.route_allowed(&path, user.as_ref()) {
        return refuse(Error::forbidden(format!(
            "Access denied: insufficient permissions for route {path}"
        )));
    }
    let Some(user) = user else {
        return next.run(request).await;
    };
    let caller = Caller::User(user);
    let response = access::with_caller(caller.clone(), next.run(request)).await;
    // A streamed answer (an agent turn, a response) keeps working after this returns: its
    // polls must still run as the caller.
    if response.body().size_hint().exact().is_some() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let stream = access::scoped_stream(Some(caller), body.into_data_stream());
    Response::from_parts(parts, Body::from_stream(stream))
}

fn needs_bearer(auth: &Authenticator) -> bool {
    !matches!(
        auth.settings().provider,
        Some(llama_stack_auth::ProviderConfig::UpstreamHeader { .. })
    )
}

fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
