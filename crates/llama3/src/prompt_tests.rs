use chrono::NaiveDate;
use llama_stack_types::{ContentItem, ImageContent, ToolCall, Url};
use serde_json::json;

use super::*;

fn options(family: ModelFamily) -> RenderOptions {
    RenderOptions {
        today: NaiveDate::from_ymd_opt(2024, 9, 21).unwrap(),
        ..RenderOptions::new(family)
    }
}

fn assistant(content: &str, stop_reason: StopReason, tool_calls: Vec<ToolCall>) -> Message {
    Message::Assistant {
        content: content.into(),
        stop_reason,
        tool_calls,
    }
}

fn tool_call(name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        call_id: "c1".to_string(),
        tool_name: name.to_string(),
        arguments,
        arguments_json: None,
    }
}

#[test]
fn model_family_from_id() {
    for id in [
        "Llama3.1-8B-Instruct",
        "meta-llama/Llama-3.1-70B-Instruct",
        "llama-3-1-8b",
        "Llama3.2-11B-Vision-Instruct",
    ] {
        assert_eq!(
            ModelFamily::from_model_id(id),
            ModelFamily::Llama3_1,
            "{id}"
        );
    }
    for id in [
        "Llama3.2-3B-Instruct",
        "meta-llama/Llama-3.3-70B-Instruct",
        "something-else",
        "meta-llama/Llama-Guard-3-1B",
        "Llama-Guard-3-11B-Vision",
    ] {
        assert_eq!(
            ModelFamily::from_model_id(id),
            ModelFamily::Llama3_2,
            "{id}"
        );
    }
}

#[test]
fn llama31_system_and_user() {
    let messages = [
        Message::system("You are a helpful assistant"),
        Message::user("Who are you?"),
    ];
    let text = pieces_to_text(&render_chat(&messages, &options(ModelFamily::Llama3_1)));
    assert_eq!(
        text,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
         Cutting Knowledge Date: December 2023\nToday Date: 21 September 2024\n\nYou are a helpful assistant\
         <|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn llama32_without_system_message() {
    let pieces = render_chat(&[Message::user("Hi")], &options(ModelFamily::Llama3_2));
    assert_eq!(
        pieces,
        vec![
            Piece::Special(BEGIN_OF_TEXT),
            Piece::Special(START_HEADER_ID),
            Piece::Text("user".into()),
            Piece::Special(END_HEADER_ID),
            Piece::Text("\n\n".into()),
            Piece::Text("Hi".into()),
            Piece::Special(EOT_ID),
            Piece::Special(START_HEADER_ID),
            Piece::Text("assistant".into()),
            Piece::Special(END_HEADER_ID),
            Piece::Text("\n\n".into()),
        ]
    );
}

#[test]
fn builtin_tool_round_trip_dialog() {
    let mut o = options(ModelFamily::Llama3_1);
    o.tools = vec![llama_stack_types::ToolDefinition {
        tool_name: "brave_search".into(),
        description: None,
        parameters: None,
    }];
    let messages = [
        Message::user("Gold price?"),
        assistant(
            "",
            StopReason::EndOfMessage,
            vec![tool_call("brave_search", json!({"query": "gold price"}))],
        ),
        Message::Tool {
            call_id: "c1".into(),
            content: "{\"price\": 2000}".into(),
            tool_name: None,
        },
    ];
    let text = pieces_to_text(&render_chat(&messages, &o));
    assert!(text.starts_with(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nTools: brave_search\n"
    ));
    assert!(text.ends_with(
        "<|start_header_id|>user<|end_header_id|>\n\nGold price?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nbrave_search.call(query=\"gold price\")<|eom_id|>\
         <|start_header_id|>ipython<|end_header_id|>\n\n{\"price\": 2000}<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    ));
}

#[test]
fn code_interpreter_call_gets_python_tag() {
    let messages = [assistant(
        "",
        StopReason::EndOfMessage,
        vec![tool_call("code_interpreter", json!({"code": "print(7)"}))],
    )];
    let pieces = render_chat(&messages, &options(ModelFamily::Llama3_2));
    let expected = [
        Piece::Special(PYTHON_TAG),
        Piece::Text("print(7)".into()),
        Piece::Special(EOM_ID),
    ];
    assert!(pieces.windows(3).any(|w| w == expected), "{pieces:?}");
}

#[test]
fn custom_calls_use_the_effective_format() {
    let call = vec![tool_call("get_weather", json!({"city": "SF"}))];
    let messages = [assistant("", StopReason::EndOfTurn, call)];
    let text = pieces_to_text(&render_chat(&messages, &options(ModelFamily::Llama3_2)));
    assert!(
        text.contains("\n\n[get_weather(city=\"SF\")]<|eot_id|>"),
        "{text}"
    );
    let text = pieces_to_text(&render_chat(&messages, &options(ModelFamily::Llama3_1)));
    assert!(
        text.contains("\n\n{\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": {\"city\": \"SF\"}}<|eot_id|>"),
        "{text}"
    );
    let mut o = options(ModelFamily::Llama3_1);
    o.tool_prompt_format = Some("function_tag".into());
    let text = pieces_to_text(&render_chat(&messages, &o));
    assert!(
        text.contains("<function=get_weather>{\"city\": \"SF\"}</function><|eot_id|>"),
        "{text}"
    );
}

#[test]
fn user_context_and_images() {
    let messages = [Message::User {
        content: InterleavedContent::Items(vec![
            ContentItem::Text {
                text: "Look:".into(),
            },
            ContentItem::Image {
                image: ImageContent {
                    url: Some(Url {
                        uri: "data:image/png;base64,AA==".into(),
                    }),
                    data: None,
                },
            },
        ]),
        context: Some("Retrieved facts".into()),
    }];
    let pieces = render_chat(&messages, &options(ModelFamily::Llama3_2));
    let expected = [
        Piece::Text("Look:".into()),
        Piece::Special(IMAGE),
        Piece::Text("\n\n".into()),
        Piece::Text("Retrieved facts".into()),
        Piece::Special(EOT_ID),
    ];
    assert!(pieces.windows(5).any(|w| w == expected), "{pieces:?}");
}

#[test]
fn tools_user_message_follows_the_system_message() {
    let mut o = options(ModelFamily::Llama3_1);
    o.tools = vec![llama_stack_types::ToolDefinition {
        tool_name: "get_weather".into(),
        description: Some("Weather".into()),
        parameters: None,
    }];
    let text = pieces_to_text(&render_chat(&[Message::user("Hi")], &o));
    let system_end = text.find("<|eot_id|>").unwrap();
    let rest = &text[system_end..];
    assert!(rest.starts_with(
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnswer the user's question by making use of the following functions if needed."
    ));
    assert!(rest.contains("Return function calls in JSON format.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"));
}

#[test]
fn completion_and_encoding() {
    assert_eq!(
        render_completion("Once upon"),
        vec![
            Piece::Special(BEGIN_OF_TEXT),
            Piece::Text("Once upon".into())
        ]
    );
    let ids = encode_pieces(&render_completion("ab"), |t| {
        t.bytes().map(u32::from).collect()
    });
    assert_eq!(ids, vec![BEGIN_OF_TEXT, 97, 98]);
}

#[test]
fn effective_format_falls_back_to_the_family_default() {
    let mut o = options(ModelFamily::Llama3_1);
    assert_eq!(o.effective_tool_prompt_format(), "json");
    o.tool_prompt_format = Some("bogus".into());
    assert_eq!(o.effective_tool_prompt_format(), "json");
    o.tool_prompt_format = Some("python_list".into());
    assert_eq!(o.effective_tool_prompt_format(), "python_list");
    assert_eq!(
        options(ModelFamily::Llama3_2).effective_tool_prompt_format(),
        "python_list"
    );
}

#[test]
fn json_schema_message_text() {
    let message = json_schema_message(&json!({"type": "object"}));
    assert_eq!(
        message,
        Message::user(r#"Please respond in JSON format with the schema: {"type": "object"}"#)
    );
}
