//! Inference: the same answers as HTTP, streaming, error codes, cancellation and deadlines.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use llama_stack_grpc::pb;
use serde_json::json;
use tonic::Code;

use crate::support::{self, EMBEDDER, LLM, text_of, user};
use crate::upstream::ANSWER;

fn chat(message: &str) -> pb::ChatCompletionRequest {
    pb::ChatCompletionRequest {
        model_id: LLM.into(),
        messages: vec![user(message)],
        ..Default::default()
    }
}

#[tokio::test]
async fn chat_completion_gives_the_http_answer() {
    let h = support::start().await;
    let reply = h
        .inference()
        .chat_completion(chat("Where is Paris?"))
        .await
        .unwrap()
        .into_inner();
    let message = reply.completion_message.unwrap();
    assert_eq!(text_of(&message.content), ANSWER);
    assert_eq!(message.stop_reason(), pb::StopReason::EndOfTurn);
    let (status, http) = h
        .post(
            "/v1/inference/chat-completion",
            json!({"model_id": LLM, "messages": [{"role": "user", "content": "Where is Paris?"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(http["completion_message"]["content"], ANSWER);
    let metric = |name: &str| {
        reply
            .metrics
            .iter()
            .find(|m| m.metric == name)
            .unwrap()
            .value
    };
    assert_eq!(
        metric("completion_tokens"),
        http["metrics"][1]["value"].as_f64().unwrap()
    );
}

#[tokio::test]
async fn streamed_chat_carries_the_sse_events() {
    let h = support::start().await;
    let mut stream = h
        .inference()
        .stream_chat_completion(chat("Where is Paris?"))
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(chunk) = stream.next().await {
        events.push(chunk.unwrap().event.unwrap());
    }
    assert_eq!(
        events.first().unwrap().event_type(),
        pb::ChatEventType::Start
    );
    let last = events.last().unwrap();
    assert_eq!(last.event_type(), pb::ChatEventType::Complete);
    assert_eq!(last.stop_reason(), pb::StopReason::EndOfTurn);
    let grpc_text: String = events
        .iter()
        .filter_map(|e| match e.delta.as_ref()?.delta.as_ref()? {
            pb::content_delta::Delta::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();

    let sse = h
        .post_sse(
            "/v1/inference/chat-completion",
            json!({"model_id": LLM, "stream": true,
                   "messages": [{"role": "user", "content": "Where is Paris?"}]}),
        )
        .await;
    let http_text: String = sse
        .iter()
        .filter_map(|e| e["event"]["delta"]["text"].as_str())
        .collect();
    assert_eq!(grpc_text, ANSWER);
    assert_eq!(grpc_text, http_text);
    assert_eq!(events.len(), sse.len());
}

#[tokio::test]
async fn completion_unary_and_streamed() {
    let h = support::start().await;
    let request = pb::CompletionRequest {
        model_id: LLM.into(),
        content: support::text("COUNT=4"),
        ..Default::default()
    };
    let whole = h
        .inference()
        .completion(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.content, "tok0 tok1 tok2 tok3 ");
    let (_, http) = h
        .post(
            "/v1/inference/completion",
            json!({"model_id": LLM, "content": "COUNT=4"}),
        )
        .await;
    assert_eq!(http["content"], whole.content);

    let mut stream = h
        .inference()
        .stream_completion(request)
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    let mut stop = pb::StopReason::Unspecified;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        text.push_str(&chunk.delta);
        if chunk.stop_reason() != pb::StopReason::Unspecified {
            stop = chunk.stop_reason();
        }
    }
    assert_eq!(text, whole.content);
    assert_eq!(stop, pb::StopReason::EndOfTurn);
}

#[tokio::test]
async fn embeddings_match_http() {
    let h = support::start().await;
    let item = |t: &str| pb::ContentItem {
        item: Some(pb::content_item::Item::Text(t.into())),
    };
    let reply = h
        .inference()
        .embeddings(pb::EmbeddingsRequest {
            model_id: EMBEDDER.into(),
            contents: vec![item("red apples"), item("green pears")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (_, http) = h
        .post(
            "/v1/inference/embeddings",
            json!({"model_id": EMBEDDER, "contents": ["red apples", "green pears"]}),
        )
        .await;
    let http: Vec<Vec<f32>> = serde_json::from_value(http["embeddings"].clone()).unwrap();
    let grpc: Vec<Vec<f32>> = reply.embeddings.into_iter().map(|e| e.values).collect();
    assert_eq!(grpc, http);
    assert_eq!(grpc[0].len(), crate::upstream::DIMENSION);
}

#[tokio::test]
async fn errors_map_to_status_codes() {
    let h = support::start().await;
    let mut inference = h.inference();
    let mut unknown = chat("hi");
    unknown.model_id = "no-such-model".into();
    let err = inference
        .chat_completion(unknown.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("no-such-model"), "{}", err.message());
    assert_eq!(
        err.metadata()
            .get(llama_stack_grpc::status::ERROR_KIND_KEY)
            .unwrap(),
        "not_found_error"
    );
    let err = inference.stream_chat_completion(unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let mut empty = chat("hi");
    empty.messages.clear();
    let err = inference.chat_completion(empty).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let (status, _) = h
        .post(
            "/v1/inference/chat-completion",
            json!({"model_id": LLM, "messages": []}),
        )
        .await;
    assert_eq!(status, 400);

    let mut no_role = chat("hi");
    no_role.messages.push(pb::Message { message: None });
    let err = inference.chat_completion(no_role).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // An LLM asked for embeddings.
    let err = inference
        .embeddings(pb::EmbeddingsRequest {
            model_id: LLM.into(),
            contents: vec![pb::ContentItem {
                item: Some(pb::content_item::Item::Text("x".into())),
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn an_overloaded_upstream_is_unavailable_with_a_retry_hint() {
    let h = support::start().await;
    let err = h
        .inference()
        .chat_completion(chat("OVERLOAD please"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.metadata().get("retry-after").unwrap(), "3");
    assert_eq!(
        err.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "3000"
    );
    let reply = h
        .client
        .post(format!("{}/v1/inference/chat-completion", h.http))
        .json(
            &json!({"model_id": LLM, "messages": [{"role": "user", "content": "OVERLOAD please"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 503);
    assert_eq!(reply.headers()["retry-after"], "3");
}

/// Waits until the upstream has seen `n` slow streams dropped.
async fn dropped(h: &support::Harness, n: usize) {
    for _ in 0..250 {
        if h.upstream.seen.dropped.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the upstream never saw the stream dropped");
}

#[tokio::test]
async fn cancelling_a_stream_stops_upstream_generation() {
    let h = support::start().await;
    let mut stream = h
        .inference()
        .stream_chat_completion(chat("SLOW please"))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    dropped(&h, 1).await;
    let sent = h.upstream.seen.slow_tokens.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.upstream.seen.slow_tokens.load(Ordering::SeqCst) <= sent + 1);
}

#[tokio::test]
async fn a_deadline_ends_the_stream_and_generation() {
    let h = support::start().await;
    let mut request = tonic::Request::new(chat("SLOW please"));
    request.set_timeout(Duration::from_millis(400));
    let mut stream = h
        .inference()
        .stream_chat_completion(request)
        .await
        .unwrap()
        .into_inner();
    let mut items = 0;
    let end = loop {
        match stream.next().await {
            Some(Ok(_)) => items += 1,
            Some(Err(status)) => break status,
            None => panic!("the stream ended without a status"),
        }
    };
    assert!(items > 0);
    assert!(
        matches!(end.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{end:?}"
    );
    dropped(&h, 1).await;

    // Completions stop the same way.
    let mut request = tonic::Request::new(pb::CompletionRequest {
        model_id: LLM.into(),
        content: support::text("SLOW"),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(300));
    let mut stream = h
        .inference()
        .stream_completion(request)
        .await
        .unwrap()
        .into_inner();
    while let Some(Ok(_)) = stream.next().await {}
    dropped(&h, 2).await;
}

#[tokio::test]
async fn provider_data_metadata_reaches_the_provider() {
    let h = support::start().await;
    let mut request = tonic::Request::new(chat("hi"));
    request.metadata_mut().insert(
        llama_stack_grpc::PROVIDER_DATA_KEY,
        r#"{"openai_compat_api_key": "sk-from-metadata"}"#.parse().unwrap(),
    );
    h.inference().chat_completion(request).await.unwrap();
    let seen = h.upstream.seen.authorization.lock().unwrap().clone();
    assert_eq!(seen.as_deref(), Some("Bearer sk-from-metadata"));
}

#[tokio::test]
async fn server_limits_hold_on_grpc_as_on_http() {
    let h = support::start().await;
    let mut inference = h.inference();
    let mut greedy = chat("hi");
    greedy.sampling_params = Some(pb::SamplingParams {
        max_tokens: Some(500_000),
        ..Default::default()
    });
    for err in [
        inference.chat_completion(greedy.clone()).await.unwrap_err(),
        inference.stream_chat_completion(greedy).await.unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("server.limits.max_tokens"),
            "{}",
            err.message()
        );
    }
    let many = pb::EmbeddingsRequest {
        model_id: EMBEDDER.into(),
        contents: vec![
            pb::ContentItem {
                item: Some(pb::content_item::Item::Text("x".into())),
            };
            3000
        ],
        ..Default::default()
    };
    let err = inference.embeddings(many).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("max_embedding_inputs"),
        "{}",
        err.message()
    );
}
