//! Every gRPC call is counted by method and status code, and timed.

use llama_stack_grpc::pb;
use tonic::Code;

use crate::support;

/// The value of the sample `name{labels}` in `/metrics`, labels written as rendered.
fn sample(name: &str, labels: &str) -> Option<f64> {
    let text = llama_stack_core::metrics::render();
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn calls_are_counted_by_method_and_code() {
    let h = support::start().await;
    h.inspect().health(pb::HealthRequest {}).await.unwrap();
    let missing = h
        .models()
        .get_model(pb::GetModelRequest {
            model_id: "no-such-model".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // The trailers, where the status of an answered call is, may arrive just after the reply.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let health = "method=\"/llama_stack.v1.InspectService/Health\"";
    assert!(
        sample(
            "llama_stack_grpc_requests_total",
            &format!("{health},code=\"OK\"")
        )
        .is_some_and(|n| n >= 1.0),
        "{}",
        llama_stack_core::metrics::render()
    );
    assert!(
        sample(
            "llama_stack_grpc_requests_total",
            "method=\"/llama_stack.v1.ModelsService/GetModel\",code=\"NOT_FOUND\""
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        sample("llama_stack_grpc_request_duration_seconds_count", health).is_some_and(|n| n >= 1.0)
    );
}
