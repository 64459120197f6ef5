//! Request ids and trace context over gRPC: the call's `x-request-id` comes back in the initial
//! metadata, and the canned upstream receives the caller's trace id in `traceparent`.

use llama_stack_core::trace::parse_traceparent;
use llama_stack_grpc::pb;

use crate::support::{self, LLM, user};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn chat() -> pb::ChatCompletionRequest {
    pb::ChatCompletionRequest {
        model_id: LLM.into(),
        messages: vec![user("Where is Paris?")],
        ..Default::default()
    }
}

#[tokio::test]
async fn calls_answer_their_request_id_and_propagate_the_trace() {
    let h = support::start().await;
    let mut request = tonic::Request::new(chat());
    let metadata = request.metadata_mut();
    metadata.insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    metadata.insert("x-request-id", "grpc-req-7".parse().unwrap());
    let reply = h.inference().chat_completion(request).await.unwrap();
    assert_eq!(reply.metadata().get("x-request-id").unwrap(), "grpc-req-7");
    let sent = h.upstream.seen.traceparent.lock().unwrap().clone().unwrap();
    let sent = parse_traceparent(&sent).unwrap();
    assert_eq!(sent.trace_id, TRACE_ID);
    assert_ne!(sent.parent_id, "00f067aa0ba902b7");

    // Without either, both are made: a fresh trace reaches the upstream.
    let reply = h.inference().chat_completion(chat()).await.unwrap();
    let id = reply
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(!id.is_empty() && id != "grpc-req-7");
    let sent = h.upstream.seen.traceparent.lock().unwrap().clone().unwrap();
    assert_ne!(parse_traceparent(&sent).unwrap().trace_id, TRACE_ID);
}
