use super::*;
use serde_json::json;

fn single(text: &str, had_python_tag: bool) -> ToolCall {
    let mut calls = parse_tool_calls(text, had_python_tag);
    assert_eq!(
        calls.len(),
        1,
        "expected one call in {text:?}, got {calls:?}"
    );
    calls.remove(0)
}

fn call(name: &str, arguments: Value) -> ToolCall {
    new_tool_call(name.to_string(), arguments)
}

#[test]
fn function_tag() {
    let c = single(r#"<function=get_weather>{"city": "SF"}</function>"#, false);
    assert_eq!(c.tool_name, "get_weather");
    assert_eq!(c.arguments, json!({"city": "SF"}));
    assert_eq!(c.arguments_json.as_deref(), Some(r#"{"city": "SF"}"#));
    assert!(uuid::Uuid::parse_str(&c.call_id).is_ok());
}

#[test]
fn function_tag_with_single_quotes_and_nesting() {
    let c = single("<function=f>{'a': 'b'}</function>", false);
    assert_eq!(c.arguments, json!({"a": "b"}));
    let c = single(
        r#"<function=f>{"opts": {"deep": 1}, "note": "it's"}</function>"#,
        false,
    );
    assert_eq!(c.arguments, json!({"opts": {"deep": 1}, "note": "it's"}));
}

#[test]
fn broken_function_tag_falls_through_to_builtin_only() {
    assert!(parse_tool_calls("<function=f>{not json}</function>", false).is_empty());
    // The unreadable tag still leaves the python_tag fallback.
    let c = single("<function=f>{oops}</function>", true);
    assert_eq!(c.tool_name, CODE_INTERPRETER);
}

#[test]
fn json_object() {
    let c = single(
        r#"{"type": "function", "name": "trending_songs", "parameters": {"n": "10", "genre": "all"}}"#,
        true,
    );
    assert_eq!(c.tool_name, "trending_songs");
    assert_eq!(c.arguments, json!({"n": "10", "genre": "all"}));
    let c = single("\n{\"name\": \"f\", \"parameters\": {}}\n", false);
    assert_eq!((c.tool_name.as_str(), c.arguments), ("f", json!({})));
}

#[test]
fn json_that_is_not_a_call() {
    assert!(parse_tool_calls(r#"{"answer": 42}"#, false).is_empty());
    assert!(parse_tool_calls(r#"{"name": "Bob"}"#, false).is_empty());
    assert!(parse_tool_calls(r#"["not", "an", "object"]"#, false).is_empty());
    assert!(parse_tool_calls(r#"{"type": "function", "name": 3}"#, false).is_empty());
}

#[test]
fn python_list_uses_the_first_call() {
    let c = single(
        r#"[get_weather(city="San Francisco", metric="celsius"), get_weather(city="Seattle")]"#,
        false,
    );
    assert_eq!(c.tool_name, "get_weather");
    assert_eq!(
        c.arguments,
        json!({"city": "San Francisco", "metric": "celsius"})
    );
}

#[test]
fn python_list_failures() {
    for text in [
        "[get_weather('SF')]",
        "[]",
        "I would call [get_weather(city='SF')]",
        "[get_weather(city=unknown_name)]",
    ] {
        assert!(parse_tool_calls(text, false).is_empty(), "{text}");
    }
}

#[test]
fn builtin_in_custom_form_gets_query() {
    let c = single(r#"[brave_search(q="gold price")]"#, false);
    assert_eq!(c.tool_name, "brave_search");
    assert_eq!(c.arguments, json!({"query": "gold price"}));
    let c = single(
        r#"{"type": "function", "name": "wolfram_alpha", "parameters": {"input": "2+2"}}"#,
        false,
    );
    assert_eq!(c.arguments, json!({"query": "2+2"}));
}

#[test]
fn builtin_call() {
    let c = single(
        r#"brave_search.call(query="latest price of 1oz gold")"#,
        true,
    );
    assert_eq!(c.tool_name, "brave_search");
    assert_eq!(c.arguments, json!({"query": "latest price of 1oz gold"}));
    assert_eq!(
        c.arguments_json.as_deref(),
        Some(r#"{"query": "latest price of 1oz gold"}"#)
    );
    let c = single(
        r#"Let me check. wolfram_alpha.call(query="100th decimal of pi")"#,
        false,
    );
    assert_eq!(c.tool_name, "wolfram_alpha");
}

#[test]
fn builtin_call_failures() {
    assert!(parse_tool_calls("brave_search.call(q=\"x\")", false).is_empty());
    assert!(parse_tool_calls("brave_search.call(query='x')", false).is_empty());
}

#[test]
fn python_tag_fallback_is_code() {
    let code = "def is_prime(n):\n    return n > 1\n\nprint(is_prime(7))";
    let c = single(code, true);
    assert_eq!(c.tool_name, CODE_INTERPRETER);
    assert_eq!(c.arguments, json!({"code": code}));
    assert!(parse_tool_calls(code, false).is_empty());
}

#[test]
fn plain_text_has_no_calls() {
    assert!(parse_tool_calls("The capital of France is Paris.", false).is_empty());
    assert!(parse_tool_calls("", false).is_empty());
}

#[test]
fn decode_strips_markers_and_sets_stop_reason() {
    let d = decode_assistant_content("<|python_tag|>brave_search.call(query=\"x\")<|eom_id|>");
    assert_eq!(d.stop_reason, Some(StopReason::EndOfMessage));
    assert_eq!(d.content, "");
    assert_eq!(d.tool_calls[0].tool_name, "brave_search");

    let d = decode_assistant_content("Hello there.<|eot_id|>");
    assert_eq!(d.stop_reason, Some(StopReason::EndOfTurn));
    assert_eq!(d.content, "Hello there.");
    assert!(d.tool_calls.is_empty());

    let d = decode_assistant_content("<|start_header_id|>assistant<|end_header_id|>\n\nHi");
    assert_eq!((d.content.as_str(), d.stop_reason), ("Hi", None));

    let d = decode_assistant_content("<|python_tag|>print(1)<|eom_id|>");
    assert_eq!(d.tool_calls[0].arguments, json!({"code": "print(1)"}));
}

#[test]
fn encode_builtins_and_code() {
    let c = call("brave_search", json!({"query": "gold"}));
    assert_eq!(
        encode_tool_call(&c, "json"),
        r#"brave_search.call(query="gold")"#
    );
    let c = call("photogen", json!({"query": "a cat"}));
    assert_eq!(
        encode_tool_call(&c, "python_list"),
        r#"photogen.call(query="a cat")"#
    );
    let c = call(CODE_INTERPRETER, json!({"code": "print(1)"}));
    assert_eq!(encode_tool_call(&c, "json"), "print(1)");
}

#[test]
fn encode_custom_formats() {
    let c = call("get_weather", json!({"city": "SF", "days": 3}));
    assert_eq!(
        encode_tool_call(&c, "json"),
        r#"{"type": "function", "name": "get_weather", "parameters": {"city": "SF", "days": 3}}"#
    );
    assert_eq!(
        encode_tool_call(&c, "function_tag"),
        r#"<function=get_weather>{"city": "SF", "days": 3}</function>"#
    );
    assert_eq!(
        encode_tool_call(&c, "python_list"),
        r#"[get_weather(city="SF", days=3)]"#
    );
    assert_eq!(
        encode_tool_call(&c, "something_else"),
        encode_tool_call(&c, "json")
    );
}

#[test]
fn encoded_calls_parse_back() {
    let args = json!({"s": "say \"hi\"\n", "b": true, "n": null, "l": [1, 2.5], "d": {"k": "v"}});
    let c = call("do_thing", args.clone());
    for format in ["json", "function_tag", "python_list"] {
        let text = encode_tool_call(&c, format);
        let back = single(&text, false);
        assert_eq!(back.tool_name, "do_thing", "{format}");
        assert_eq!(back.arguments, args, "{format}: {text}");
    }
}

#[test]
fn string_arguments_are_unwrapped() {
    let c = call("f", Value::String(r#"{"a": 1}"#.into()));
    assert_eq!(encode_tool_call(&c, "python_list"), "[f(a=1)]");
}
