//! The gRPC transport (tonic): every API of `proto/llama_stack/v1/*.proto`, the standard
//! health service (`grpc.health.v1.Health`) and server reflection.
//!
//! Like the HTTP transport, its services only convert messages, call one `Stack` function (the
//! same one the HTTP handler calls) and map the result; domain errors become statuses in
//! [`status`]. This crate sees only the core and the wire types: it must never name a provider
//! or the distribution assembler.
//!
//! Entry points: [`router`] for the services alone, [`serve`] to run them on a listener.

mod auth;
mod convert;
mod health;
mod metrics;
mod provider_data;
mod quota;
mod services;
pub mod status;
mod stream;
mod trace;

use std::future::Future;
use std::sync::Arc;

use llama_stack_stack::Stack;
use tonic::service::Routes;

pub use provider_data::METADATA_KEY as PROVIDER_DATA_KEY;
pub use stream::ReplyStream;

/// The generated messages, servers (`*_server`) and clients (`*_client`).
pub mod pb {
    tonic::include_proto!("llama_stack.v1");
}

/// The protobuf package of the API.
pub const PACKAGE: &str = "llama_stack.v1";

/// The compiled descriptor set of `proto/` (with imports and comments): what reflection
/// serves, and what the compatibility guard compares with `proto/descriptor.binpb`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/llama_stack_descriptor.binpb"));

/// Largest message accepted or sent by default, as the HTTP transport's body limit.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The services over a built stack, with health and reflection. Each call runs with its
/// `x-llamastack-provider-data` metadata in scope.
pub fn router(stack: Arc<Stack>) -> Routes {
    router_with(stack, MAX_MESSAGE_BYTES)
}

/// [`router`] accepting messages up to `limit` bytes (`server.limits.max_body_bytes`).
pub fn router_with(stack: Arc<Stack>, limit: usize) -> Routes {
    routes_and_health(stack, limit).0
}

/// [`router_with`], and the reporter of its health service.
fn routes_and_health(stack: Arc<Stack>, limit: usize) -> (Routes, health::Health) {
    use pb::agents_service_server::AgentsServiceServer;
    use pb::inference_service_server::InferenceServiceServer;
    use pb::inspect_service_server::InspectServiceServer;
    use pb::models_service_server::ModelsServiceServer;
    use pb::rag_tool_service_server::RagToolServiceServer;
    use pb::responses_service_server::ResponsesServiceServer;
    use pb::safety_service_server::SafetyServiceServer;
    use pb::tool_groups_service_server::ToolGroupsServiceServer;
    use pb::vector_io_service_server::VectorIoServiceServer;
    use services::tools::ToolGroups;
    use services::vector_io::{RagTool, VectorIo};
    use services::{agents::Agents, inference::Inference};
    use services::{inspect::Inspect, models::Models, responses::Responses, safety::Safety};

    let mut routes = Routes::builder();
    macro_rules! add {
        ($server:ident, $service:expr) => {
            routes.add_service(provider_data::WithProviderData(
                $server::new($service)
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
            ))
        };
    }
    add!(InspectServiceServer, Inspect(stack.clone()));
    add!(ModelsServiceServer, Models(stack.clone()));
    add!(InferenceServiceServer, Inference(stack.clone()));
    add!(SafetyServiceServer, Safety(stack.clone()));
    add!(VectorIoServiceServer, VectorIo(stack.clone()));
    add!(RagToolServiceServer, RagTool(stack.clone()));
    add!(AgentsServiceServer, Agents(stack.clone()));
    add!(ResponsesServiceServer, Responses(stack.clone()));
    add!(ToolGroupsServiceServer, ToolGroups(stack.clone()));

    let (health, health_service) = health::Health::new(&stack);
    routes.add_service(health_service);
    match reflection_service() {
        Ok(reflection) => {
            routes.add_service(reflection);
        }
        // Only a broken build gets here; serving without reflection beats not serving.
        Err(err) => tracing::error!(error = %err, "Server reflection is off"),
    }
    // The older v1alpha protocol too: Python's grpcio-reflection, Postman and older grpcurl
    // speak only that.
    match reflection_builder().build_v1alpha() {
        Ok(reflection) => {
            routes.add_service(reflection);
        }
        Err(err) => tracing::error!(error = %err, "Server reflection v1alpha is off"),
    }
    (routes.routes(), health)
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then lets calls in flight finish.
/// From then on the health service reports the server and every service `NOT_SERVING`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stack: Arc<Stack>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    serve_incoming(incoming, stack, MAX_MESSAGE_BYTES, None, None, shutdown).await
}

/// Serves [`router`] on connections accepted elsewhere (plain TCP, or TLS streams whose
/// handshake is done), authenticating each call with `auth` and counting it against `quota`,
/// until `shutdown` resolves; then, as [`serve`], it reports `NOT_SERVING` while calls in flight
/// finish.
pub async fn serve_incoming<S, IO, E>(
    incoming: S,
    stack: Arc<Stack>,
    max_message_bytes: usize,
    auth: Option<Arc<llama_stack_auth::Authenticator>>,
    quota: Option<Arc<llama_stack_core::quota::Quota>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error>
where
    S: futures::Stream<Item = Result<IO, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
{
    let (routes, health) = routes_and_health(stack, max_message_bytes);
    // Health watchers hear of the drain before the listener closes: a Watch stream is a call in
    // flight, so it goes on after the server stops taking new connections and calls.
    let shutdown = async move {
        shutdown.await;
        health.drain().await;
    };
    // The first layer is the outermost: every call's log lines carry its ids, metrics see every
    // call, auth's and quota's refusals included, and quotas count the principal that auth found.
    tonic::transport::Server::builder()
        .layer(trace::TraceLayer)
        .layer(metrics::MetricsLayer)
        .layer(tower::util::option_layer(auth.map(auth::AuthLayer)))
        .layer(tower::util::option_layer(quota.map(quota::QuotaLayer)))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// `grpc.reflection.v1` over the compiled descriptor set.
fn reflection_service() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    reflection_builder().build_v1()
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
