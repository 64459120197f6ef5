//! `server.quota` on gRPC: every call counts against its client's budget before it is served,
//! as on HTTP; over the budget the call ends with `RESOURCE_EXHAUSTED` and `retry-after`.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use llama_stack_core::quota::{Quota, QuotaClient};
use tonic::codegen::http;
use tonic::transport::server::TcpConnectInfo;

#[derive(Clone)]
pub struct QuotaLayer(pub Arc<Quota>);

impl<S> tower::Layer<S> for QuotaLayer {
    type Service = QuotaService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        QuotaService {
            inner,
            quota: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct QuotaService<S> {
    inner: S,
    quota: Arc<Quota>,
}

impl<S, B> tower::Service<http::Request<B>> for QuotaService<S>
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
        // The clone that was made ready serves this call; a fresh clone waits for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let quota = self.quota.clone();
        Box::pin(async move {
            let ip = request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|addr| addr.ip())
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
            let client = match llama_stack_core::access::current_user() {
                Some(user) => QuotaClient::Principal(user.principal),
                None => QuotaClient::Anonymous(ip),
            };
            match quota.admit(&client).await {
                Ok(()) => inner.call(request).await,
                Err(err) => Ok(crate::status::status(err).into_http()),
            }
        })
    }
}
