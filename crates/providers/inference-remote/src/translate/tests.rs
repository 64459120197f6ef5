use futures::StreamExt;
use llama_stack_types::{
    ChatCompletionRequest, ChatCompletionResponseStreamChunk, ChatEventType, CompletionRequest,
    ContentDelta, ContentItem, ImageContent, InterleavedContent, LogProbConfig, Message,
    SamplingParams, SamplingStrategy, StopReason, ToolCall, ToolCallOrText, ToolCallParseStatus,
    ToolConfig, ToolDefinition, ToolParamDefinition, Url,
};
use serde_json::{Value, json};

use super::*;

fn chat(messages: Vec<Message>) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model_id: "up/model".into(),
        messages,
        sampling_params: None,
        tools: None,
        tool_choice: None,
        tool_prompt_format: None,
        response_format: None,
        stream: None,
        logprobs: None,
        tool_config: None,
    }
}

fn forecast_tool() -> ToolDefinition {
    let mut parameters = std::collections::BTreeMap::new();
    parameters.insert(
        "hourly".to_string(),
        ToolParamDefinition {
            param_type: "bool".into(),
            description: Some("per hour".into()),
            required: true,
            default: None,
        },
    );
    parameters.insert(
        "days".to_string(),
        ToolParamDefinition {
            param_type: "int".into(),
            description: None,
            required: false,
            default: Some(json!(3)),
        },
    );
    ToolDefinition {
        tool_name: "get_forecast".into(),
        description: Some("Weather forecast".into()),
        parameters: Some(parameters),
    }
}

const OPEN: RequestOptions = RequestOptions {
    extra_sampling: true,
    default_max_tokens: None,
};
const STRICT: RequestOptions = RequestOptions {
    extra_sampling: false,
    default_max_tokens: Some(4096),
};

#[test]
fn messages_of_every_role_with_images_and_tool_calls() {
    let request = chat(vec![
        Message::system("be brief"),
        Message::User {
            content: InterleavedContent::Items(vec![
                ContentItem::Text {
                    text: "what is".into(),
                },
                ContentItem::Image {
                    image: ImageContent {
                        url: Some(Url {
                            uri: "https://example.com/cat.png".into(),
                        }),
                        data: None,
                    },
                },
                ContentItem::Image {
                    image: ImageContent {
                        url: None,
                        data: Some("/9j/4AAQSkZJRg==".into()),
                    },
                },
            ]),
            context: Some("ctx".into()),
        },
        Message::Assistant {
            content: InterleavedContent::Text(String::new()),
            stop_reason: StopReason::EndOfMessage,
            tool_calls: vec![ToolCall {
                call_id: "c1".into(),
                tool_name: "get_forecast".into(),
                arguments: json!({"hourly": true}),
                arguments_json: None,
            }],
        },
        Message::Tool {
            call_id: "c1".into(),
            content: "sunny".into(),
            tool_name: None,
        },
    ]);
    let body = chat_body(&request, false, OPEN).unwrap();
    let m = &body["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(
        m[1]["content"][0],
        json!({"type": "text", "text": "what is"})
    );
    assert_eq!(
        m[1]["content"][1]["image_url"]["url"],
        "https://example.com/cat.png"
    );
    assert_eq!(
        m[1]["content"][2]["image_url"]["url"],
        "data:image/jpeg;base64,/9j/4AAQSkZJRg=="
    );
    assert_eq!(m[1]["content"][3], json!({"type": "text", "text": "ctx"}));
    assert_eq!(m[2]["content"], Value::Null);
    assert_eq!(m[2]["tool_calls"][0]["id"], "c1");
    assert_eq!(
        m[2]["tool_calls"][0]["function"]["arguments"],
        r#"{"hourly":true}"#
    );
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
    );
    assert!(body.get("stream").is_none());
}

#[test]
fn sampling_tools_format_and_logprobs() {
    let mut request = chat(vec![Message::user("hi")]);
    request.sampling_params = Some(SamplingParams {
        strategy: SamplingStrategy::TopK { top_k: 5 },
        max_tokens: Some(0),
        repetition_penalty: Some(1.2),
        stop: Some(vec!["END".into()]),
        seed: Some(7),
    });
    request.tools = Some(vec![forecast_tool()]);
    request.tool_config = Some(ToolConfig {
        tool_choice: Some("get_forecast".into()),
        tool_prompt_format: None,
        system_message_behavior: None,
    });
    request.response_format = Some(json!({"type": "json_schema",
        "json_schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}));
    request.logprobs = Some(LogProbConfig { top_k: Some(3) });
    let body = chat_body(&request, true, OPEN).unwrap();
    assert_eq!(body["top_k"], 5);
    assert_eq!(body["repetition_penalty"], 1.2);
    assert!(
        body.get("max_tokens").is_none(),
        "0 leaves it to the provider"
    );
    assert_eq!(body["stop"], json!(["END"]));
    assert_eq!(body["seed"], 7);
    let function = &body["tools"][0]["function"];
    assert_eq!(function["name"], "get_forecast");
    assert_eq!(
        function["parameters"]["properties"]["hourly"]["type"],
        "bool"
    );
    assert_eq!(function["parameters"]["properties"]["days"]["default"], 3);
    assert_eq!(function["parameters"]["required"], json!(["hourly"]));
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "get_forecast"}})
    );
    assert_eq!(body["response_format"]["json_schema"]["name"], "response");
    assert_eq!(
        body["response_format"]["json_schema"]["schema"]["properties"]["a"]["type"],
        "integer"
    );
    assert_eq!(body["logprobs"], true);
    assert_eq!(body["top_logprobs"], 3);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);

    // An upstream without the extra sampling fields gets none of them, and the configured
    // default length.
    let body = chat_body(&request, false, STRICT).unwrap();
    assert!(body.get("top_k").is_none() && body.get("repetition_penalty").is_none());
    assert_eq!(body["max_tokens"], 4096);
}

#[test]
fn greedy_is_temperature_zero_and_top_p_keeps_both_values() {
    let mut request = chat(vec![Message::user("hi")]);
    let body = chat_body(&request, false, OPEN).unwrap();
    assert_eq!(body["temperature"], 0.0);
    request.sampling_params = Some(SamplingParams {
        strategy: SamplingStrategy::TopP {
            temperature: Some(0.7),
            top_p: 0.9,
        },
        max_tokens: Some(12),
        ..SamplingParams::default()
    });
    let body = chat_body(&request, false, OPEN).unwrap();
    assert_eq!(body["temperature"], 0.7);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["max_tokens"], 12);
}

#[test]
fn grammar_formats_and_image_prompts_are_refused_with_a_reason() {
    let mut request = chat(vec![Message::user("hi")]);
    request.response_format = Some(json!({"type": "grammar", "bnf": {}}));
    let err = chat_body(&request, false, OPEN).unwrap_err();
    assert!(err.message().contains("json_schema"), "{err}");
    let completion = CompletionRequest {
        model_id: "m".into(),
        content: InterleavedContent::Item(ContentItem::Image {
            image: ImageContent {
                url: Some(Url { uri: "x".into() }),
                data: None,
            },
        }),
        sampling_params: None,
        response_format: None,
        stream: None,
        logprobs: None,
    };
    assert!(completion_body(&completion, false, OPEN).is_err());
}

#[test]
fn forwarded_bodies_leave_out_what_the_client_left_out() {
    let request: llama_stack_types::openai::OpenAiChatCompletionRequest = serde_json::from_value(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                      "vendor_field": {"x": 1}}),
    )
    .unwrap();
    let body = forwarded_body(&request).unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["messages", "model", "vendor_field"]);
}

fn kinds(events: &[ChatCompletionResponseStreamChunk]) -> Vec<ChatEventType> {
    events.iter().map(|e| e.event.event_type).collect()
}

#[test]
fn finish_reasons_map_as_the_spec_says() {
    assert_eq!(stop_reason("stop"), StopReason::EndOfTurn);
    assert_eq!(stop_reason("eos"), StopReason::EndOfTurn);
    assert_eq!(stop_reason("length"), StopReason::OutOfTokens);
    assert_eq!(stop_reason("tool_calls"), StopReason::EndOfMessage);
}

#[test]
fn a_whole_answer_becomes_the_classic_event_sequence() {
    let answer = json!({
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello"},
                     "logprobs": {"content": [{"token": "Hello", "logprob": -0.5,
                        "top_logprobs": [{"token": "Hello", "logprob": -0.5},
                                         {"token": "Hi", "logprob": -1.5}]}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    });
    let events = chat_answer("p".into(), vec![], answer).unwrap();
    assert_eq!(
        kinds(&events),
        [
            ChatEventType::Start,
            ChatEventType::Progress,
            ChatEventType::Complete
        ]
    );
    assert_eq!(events[1].event.delta, ContentDelta::text("Hello"));
    let logprobs = events[1].event.logprobs.as_ref().unwrap();
    assert_eq!(logprobs[0].logprobs_by_token["Hi"], -1.5);
    assert_eq!(logprobs[0].chosen, Some(("Hello".to_string(), -0.5)));
    let last = &events[2];
    assert_eq!(last.event.stop_reason, Some(StopReason::EndOfTurn));
    let metrics = last.metrics.as_ref().unwrap();
    assert_eq!(metrics[0].metric, "prompt_tokens");
    assert_eq!(metrics[0].value, 9.0);
    assert_eq!(metrics[2].value, 10.0);
}

fn upstream(chunks: Vec<Value>) -> llama_stack_inference::JsonStream {
    futures::stream::iter(chunks.into_iter().map(Ok)).boxed()
}

#[tokio::test]
async fn streamed_tool_call_pieces_become_one_parsed_call() {
    let chunks = vec![
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1",
            "type": "function", "function": {"name": "get_forecast", "arguments": ""}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": "{\"hourly\": "}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"arguments": "true}"}}]}}]}),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 8}}),
    ];
    let events: Vec<_> = chat_events("p".into(), vec!["get_forecast".into()], upstream(chunks))
        .collect()
        .await;
    let events: Vec<_> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        kinds(&events),
        [
            ChatEventType::Start,
            ChatEventType::Progress,
            ChatEventType::Complete
        ]
    );
    match &events[1].event.delta {
        ContentDelta::ToolCall {
            tool_call: ToolCallOrText::Call(call),
            parse_status: ToolCallParseStatus::Succeeded,
        } => {
            assert_eq!(call.call_id, "call_1");
            assert_eq!(call.tool_name, "get_forecast");
            assert_eq!(call.arguments, json!({"hourly": true}));
            assert_eq!(call.arguments_json.as_deref(), Some("{\"hourly\": true}"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(events[2].event.stop_reason, Some(StopReason::EndOfMessage));
    assert_eq!(events[2].metrics.as_ref().unwrap()[1].value, 8.0);
}

#[tokio::test]
async fn unparseable_or_unoffered_calls_fail_and_text_streams_through() {
    let chunks = vec![
        json!({"choices": [{"delta": {"content": "Let me"}}]}),
        json!({"choices": [{"delta": {"content": " check."}}]}),
        json!({"choices": [{"delta": {"tool_calls": [
            {"index": 0, "id": "a", "function": {"name": "get_forecast", "arguments": "{not json"}},
            {"index": 1, "id": "b", "function": {"name": "launch_rocket", "arguments": "{}"}}
        ]}, "finish_reason": "tool_calls"}]}),
    ];
    let events: Vec<_> = chat_events("p".into(), vec!["get_forecast".into()], upstream(chunks))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(events[1].event.delta, ContentDelta::text("Let me"));
    assert_eq!(events[2].event.delta, ContentDelta::text(" check."));
    let statuses: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event.delta {
            ContentDelta::ToolCall { parse_status, .. } => Some(*parse_status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [ToolCallParseStatus::Failed, ToolCallParseStatus::Failed]
    );
    assert!(
        events.last().unwrap().metrics.is_none(),
        "no usage, no metrics"
    );
}

#[tokio::test]
async fn a_stream_cut_before_its_finish_ends_with_an_error() {
    let chunks = vec![json!({"choices": [{"delta": {"content": "Hel"}}]})];
    let events: Vec<_> = chat_events("provider 'p'".into(), vec![], upstream(chunks))
        .collect()
        .await;
    assert_eq!(events.len(), 3);
    let err = events[2].as_ref().unwrap_err();
    assert!(err.message().contains("provider 'p'"), "{err}");
}

#[tokio::test]
async fn completion_chunks_and_legacy_logprobs() {
    let chunks = vec![
        json!({"choices": [{"text": "Hel", "logprobs": {"tokens": ["Hel"], "token_logprobs": [-0.1],
               "top_logprobs": [{"Hel": -0.1, "He": -2.0}]}}]}),
        json!({"choices": [{"text": "lo", "finish_reason": "length"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ];
    let out: Vec<_> = completion_events("p".into(), upstream(chunks))
        .map(Result::unwrap)
        .collect()
        .await;
    let text: String = out.iter().map(|c| c.delta.as_str()).collect();
    assert_eq!(text, "Hello");
    assert_eq!(
        out[0].logprobs.as_ref().unwrap()[0].logprobs_by_token["He"],
        -2.0
    );
    let last = out.last().unwrap();
    assert_eq!(last.stop_reason, Some(StopReason::OutOfTokens));
    assert_eq!(last.metrics.as_ref().unwrap()[2].value, 5.0);

    let whole = completion_answer(
        "p".into(),
        json!({"choices": [{"text": "Hi", "finish_reason": "stop"}]}),
    )
    .unwrap();
    assert_eq!(whole[0].delta, "Hi");
    assert_eq!(whole[1].stop_reason, Some(StopReason::EndOfTurn));
}

#[test]
fn embeddings_in_input_order_from_floats_or_base64() {
    let b64 = {
        use base64::Engine as _;
        let bytes: Vec<u8> = [1.0f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let answer = json!({"data": [
        {"index": 1, "embedding": b64},
        {"index": 0, "embedding": [0.5, 0.25]}
    ], "usage": {"prompt_tokens": 4, "total_tokens": 4}});
    let out = embeddings("p", answer.clone(), 2).unwrap();
    assert_eq!(out.vectors, vec![vec![0.5, 0.25], vec![1.0, -2.0]]);
    assert_eq!(out.prompt_tokens, 4);
    let err = embeddings("provider 'p'", answer, 3).unwrap_err();
    assert!(err.message().contains("2 embeddings for 3 inputs"), "{err}");
}
