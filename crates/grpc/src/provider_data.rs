//! `x-llamastack-provider-data` metadata: per-request provider secrets, in scope while a call
//! is handled, as the HTTP header of the same name.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use llama_stack_core::request_context::{ProviderData, with_provider_data};
use tonic::server::NamedService;

/// The metadata key (the HTTP header's name).
pub const METADATA_KEY: &str = "x-llamastack-provider-data";

/// A service whose calls run with their provider data in scope. It keeps the inner service's
/// name, so it routes like it.
#[derive(Clone)]
pub(crate) struct WithProviderData<S>(pub S);

impl<S: NamedService> NamedService for WithProviderData<S> {
    const NAME: &'static str = S::NAME;
}

/// A value that is not a JSON object is ignored, as upstream does; it is never logged, since it
/// carries secrets.
fn read<B>(request: &http::Request<B>) -> ProviderData {
    match request.headers().get(METADATA_KEY) {
        None => ProviderData::default(),
        Some(value) => ProviderData::from_header(value.as_bytes()).unwrap_or_else(|| {
            tracing::warn!(
                "Ignoring x-llamastack-provider-data metadata that is not a JSON object"
            );
            ProviderData::default()
        }),
    }
}

impl<S, B> tower::Service<http::Request<B>> for WithProviderData<S>
where
    S: tower::Service<http::Request<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let data = read(&request);
        let future = self.0.call(request);
        Box::pin(with_provider_data(data, future))
    }
}
