//! `server.auth` on gRPC: the token is read from the `authorization` metadata, checked by the
//! same authenticator as HTTP, and the call is served as its caller. `route_policy` paths are
//! matched against the gRPC method path (`/llama_stack.v1.ModelsService/ListModels`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use llama_stack_auth::{Authenticator, Credentials};
use llama_stack_core::Error;
use llama_stack_core::access::{self, Caller};
use tonic::codegen::http;
use tonic::transport::server::TcpConnectInfo;

#[derive(Clone)]
pub struct AuthLayer(pub Arc<Authenticator>);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let auth = self.auth.clone();
        Box::pin(async move {
            let path = request.uri().path().to_string();
            if llama_stack_auth::is_public(&path) {
                return inner.call(request).await;
            }
            let refuse = |err: Error| Ok(crate::status::status(err).into_http());
            let token = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim().to_string());
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .filter(|(name, _)| *name != http::header::AUTHORIZATION)
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let peer = request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|addr| addr.ip());
            let credentials = Credentials {
                token: token.as_deref(),
                path: &path,
                query: None,
                headers: &headers,
                peer,
            };
            let user = match auth.authenticate(&credentials).await {
                Ok(user) => user,
                Err(err) => return refuse(err),
            };
            if !auth.route_allowed(&path, user.as_ref()) {
                return refuse(Error::forbidden(format!(
                    "Access denied: insufficient permissions for route {path}"
                )));
            }
            let Some(user) = user else {
                return inner.call(request).await;
            };
            let caller = Caller::User(user);
            let response = access::with_caller(caller.clone(), inner.call(request)).await?;
            // Server-streaming calls keep producing after this returns, still as the caller.
            Ok(response.map(|body| {
                tonic::body::Body::new(ScopedBody {
                    inner: body,
                    caller,
                })
            }))
        })
    }
}

struct ScopedBody {
    inner: tonic::body::Body,
    caller: Caller,
}

impl http_body::Body for ScopedBody {
    type Data = <tonic::body::Body as http_body::Body>::Data;
    type Error = <tonic::body::Body as http_body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        access::sync_scope(&this.caller, || Pin::new(&mut this.inner).poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
