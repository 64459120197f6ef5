//! Inspect, the standard health service and server reflection.

use futures::StreamExt;
use llama_stack_grpc::pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::support;

#[tokio::test]
async fn inspect_answers_as_the_http_routes_do() {
    let h = support::start().await;
    let mut inspect = h.inspect();
    let health = inspect
        .health(pb::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), pb::HealthStatus::Ok);
    let version = inspect
        .version(pb::VersionRequest {})
        .await
        .unwrap()
        .into_inner();
    let (_, http_version) = h.get("/v1/version").await;
    assert_eq!(version.version, http_version["version"]);

    let routes = inspect
        .list_routes(pb::ListRoutesRequest {})
        .await
        .unwrap()
        .into_inner();
    let chat = routes
        .data
        .iter()
        .find(|r| r.route == "/llama_stack.v1.InferenceService/StreamChatCompletion")
        .expect("the streaming chat route is listed");
    assert_eq!(chat.method, "server_streaming");
    assert_eq!(chat.provider_types, ["remote::openai-compat"]);
    assert!(
        routes
            .data
            .iter()
            .any(|r| r.route == "/llama_stack.v1.AgentsService/CreateTurn")
    );

    let providers = inspect
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner();
    let (_, http_providers) = h.get("/v1/providers").await;
    let ids: Vec<&str> = providers
        .data
        .iter()
        .map(|p| p.provider_id.as_str())
        .collect();
    let http_ids: Vec<&str> = http_providers["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, http_ids);
    let one = inspect
        .get_provider(pb::GetProviderRequest {
            provider_id: "sqlite-vec".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.provider_type, "inline::sqlite-vec");
    assert!(one.config.unwrap().fields.contains_key("db_path"));
    let missing = inspect
        .get_provider(pb::GetProviderRequest {
            provider_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn the_standard_health_service_answers_per_service() {
    let h = support::start().await;
    let mut health = HealthClient::new(h.channel.clone());
    for service in [
        "",
        "llama_stack.v1.InferenceService",
        "llama_stack.v1.AgentsService",
    ] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_the_services_and_describes_them() {
    let h = support::start().await;
    // A client that knows nothing but the address, as grpcurl does.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let ask = |request: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let requests = futures::stream::iter(vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "llama_stack.v1.AgentsService".into(),
        )),
    ]);
    let mut replies = reflection
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        replies.next().await.unwrap().unwrap().message_response
    else {
        panic!("the first answer lists services");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "llama_stack.v1.InferenceService",
        "llama_stack.v1.SafetyService",
        "llama_stack.v1.VectorIoService",
        "llama_stack.v1.RagToolService",
        "llama_stack.v1.AgentsService",
        "llama_stack.v1.ModelsService",
        "llama_stack.v1.InspectService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        replies.next().await.unwrap().unwrap().message_response
    else {
        panic!("the second answer carries file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn reflection_also_speaks_v1alpha() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;

    let h = support::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", h.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut replies = Alpha::new(channel)
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(AlphaResponse::ListServicesResponse(list)) =
        replies.next().await.unwrap().unwrap().message_response
    else {
        panic!("the answer lists services");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "llama_stack.v1.ResponsesService"),
        "{:?}",
        list.service
    );
}

#[tokio::test]
async fn serve_stops_when_its_shutdown_future_resolves() {
    let h = support::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(llama_stack_grpc::serve(listener, h.stack.clone(), async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut inspect = pb::inspect_service_client::InspectServiceClient::new(channel);
    inspect.version(pb::VersionRequest {}).await.unwrap();
    drop(inspect);
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
}
