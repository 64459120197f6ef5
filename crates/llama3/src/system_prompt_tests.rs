use std::collections::BTreeMap;

use chrono::NaiveDate;
use llama_stack_types::{ToolDefinition, ToolParamDefinition};
use serde_json::json;

use super::*;

fn options(family: ModelFamily) -> RenderOptions {
    RenderOptions {
        today: NaiveDate::from_ymd_opt(2024, 9, 21).unwrap(),
        ..RenderOptions::new(family)
    }
}

fn builtin(name: &str) -> ToolDefinition {
    ToolDefinition {
        tool_name: name.to_string(),
        description: None,
        parameters: None,
    }
}

fn get_weather() -> ToolDefinition {
    let param = |ty: &str, desc: &str, required: bool, default: Option<serde_json::Value>| {
        ToolParamDefinition {
            param_type: ty.to_string(),
            description: Some(desc.to_string()),
            required,
            default,
        }
    };
    let mut params = BTreeMap::new();
    params.insert("city".to_string(), param("string", "The city", true, None));
    params.insert(
        "metric".to_string(),
        param(
            "string",
            "celsius or fahrenheit",
            false,
            Some(json!("celsius")),
        ),
    );
    ToolDefinition {
        tool_name: "get_weather".to_string(),
        description: Some("Get the weather".to_string()),
        parameters: Some(params),
    }
}

const CUTOFF_AND_DATE: &str =
    "Cutting Knowledge Date: December 2023\nToday Date: 21 September 2024\n";

#[test]
fn llama31_without_tools_or_system_message() {
    let p = prelude(None, &options(ModelFamily::Llama3_1));
    assert_eq!(p.system.as_deref(), Some(CUTOFF_AND_DATE));
    assert_eq!(p.tools_user_message, None);
}

#[test]
fn llama31_date_is_zero_padded() {
    let mut o = options(ModelFamily::Llama3_1);
    o.today = NaiveDate::from_ymd_opt(2025, 1, 5).unwrap();
    let system = prelude(None, &o).system.unwrap();
    assert!(
        system.ends_with("Today Date: 05 January 2025\n"),
        "{system}"
    );
}

#[test]
fn llama31_with_tools_and_tool_choice_required() {
    let mut o = options(ModelFamily::Llama3_1);
    o.tools = vec![
        builtin("brave_search"),
        builtin("wolfram_alpha"),
        builtin("code_interpreter"),
        get_weather(),
    ];
    o.tool_choice = Some("required".to_string());
    let p = prelude(Some("You are a helpful assistant."), &o);
    assert_eq!(
        p.system.as_deref(),
        Some(
            "Environment: ipython\n\
             Tools: brave_search, wolfram_alpha\n\
             Cutting Knowledge Date: December 2023\n\
             Today Date: 21 September 2024\n\
             \n\
             You are a helpful assistant.\n\
             You MUST use one of the provided functions/tools to answer the user query."
        )
    );
    let expected_tools = r#"Answer the user's question by making use of the following functions if needed.
If none of the function can be used, please say so.
Here is a list of functions in JSON format:
{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "object",
            "properties": [
                {
                    "city": {
                        "type": "object",
                        "description": "The city"
                    }
                },
                {
                    "metric": {
                        "type": "object",
                        "description": "celsius or fahrenheit"
                    }
                }
            ],
            "required": ["city"]
        }
    }
}

Return function calls in JSON format."#;
    assert_eq!(p.tools_user_message.as_deref(), Some(expected_tools));
}

#[test]
fn llama31_custom_tools_only_and_named_tool_choice() {
    let mut o = options(ModelFamily::Llama3_1);
    o.tools = vec![get_weather()];
    o.tool_choice = Some("get_weather".to_string());
    let system = prelude(None, &o).system.unwrap();
    assert_eq!(
        system,
        format!(
            "Environment: ipython\n{CUTOFF_AND_DATE}You MUST use the tool `get_weather` to answer the user query."
        )
    );
}

#[test]
fn llama31_code_interpreter_only() {
    let mut o = options(ModelFamily::Llama3_1);
    o.tools = vec![builtin("code_interpreter")];
    let p = prelude(None, &o);
    assert_eq!(
        p.system,
        Some(format!("Environment: ipython\n{CUTOFF_AND_DATE}"))
    );
    assert_eq!(p.tools_user_message, None);
}

#[test]
fn tool_choice_none_hides_the_tools() {
    let mut o = options(ModelFamily::Llama3_1);
    o.tools = vec![builtin("brave_search"), get_weather()];
    o.tool_choice = Some("none".to_string());
    assert_eq!(
        prelude(None, &o),
        prelude(None, &options(ModelFamily::Llama3_1))
    );
}

#[test]
fn llama31_function_tag_prompt() {
    let mut o = options(ModelFamily::Llama3_1);
    o.tools = vec![get_weather()];
    o.tool_prompt_format = Some("function_tag".to_string());
    let tools = prelude(None, &o).tools_user_message.unwrap();
    assert!(
        tools.starts_with("You have access to the following functions:\n\n"),
        "{tools}"
    );
    assert!(tools.contains(
        r#"{"name": "get_weather", "description": "Get the weather", "parameters": {"city": {"description": "The city", "param_type": "string", "required": true}, "metric": {"description": "celsius or fahrenheit", "param_type": "string", "required": false}}}"#
    ), "{tools}");
    assert!(tools.contains(
        "\n<function=example_function_name>{\"example_name\": \"example_value\"}</function>\n"
    ));
    assert!(tools.contains("\nReminder:\n- "));
}

#[test]
fn llama32_without_tools() {
    let o = options(ModelFamily::Llama3_2);
    assert_eq!(prelude(None, &o), Prelude::default());
    let p = prelude(Some("Be brief."), &o);
    assert_eq!(p.system.as_deref(), Some("Be brief."));
    assert_eq!(p.tools_user_message, None);
}

const FORMAT_SENTENCE: &str = "If you decide to invoke any of the function(s), you MUST put it in the format of \
[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]";

const WEATHER_LIST: &str = r#"[
    {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {
            "type": "dict",
            "required": ["city"],
            "properties": {
                "city": {
                    "type": "string",
                    "description": "The city"
                },
                "metric": {
                    "type": "string",
                    "description": "celsius or fahrenheit",
                    "default": "celsius"
                }
            }
        }
    }
]"#;

#[test]
fn llama32_custom_tools_go_in_the_system_message() {
    let mut o = options(ModelFamily::Llama3_2);
    o.tools = vec![get_weather()];
    let p = prelude(Some("Answer in French."), &o);
    assert_eq!(p.tools_user_message, None);
    let system = p.system.unwrap();
    assert!(
        system.starts_with("You are a helpful assistant. You have access to functions"),
        "{system}"
    );
    assert!(system.contains(FORMAT_SENTENCE), "{system}");
    assert!(system.contains(WEATHER_LIST), "{system}");
    assert!(system.ends_with("\nAnswer in French."), "{system}");
    assert!(!system.contains("Cutting Knowledge"));
    assert!(!system.contains("{{"));
}

#[test]
fn llama32_replace_uses_the_callers_template() {
    let mut o = options(ModelFamily::Llama3_2);
    o.tools = vec![get_weather()];
    o.system_message_behavior = Some("replace".to_string());
    let p = prelude(Some("Tools:\n{{function_definitions}}\nBe brief."), &o);
    let system = p.system.unwrap();
    assert!(
        system.starts_with("Tools:\nThe functions you can invoke"),
        "{system}"
    );
    assert!(system.contains(WEATHER_LIST));
    assert!(system.ends_with("Be brief."));
    assert!(!system.contains("You are a helpful assistant"));
    assert_eq!(system.matches("Be brief.").count(), 1);
}

#[test]
fn llama32_builtins_and_tool_choice() {
    let mut o = options(ModelFamily::Llama3_2);
    o.tools = vec![builtin("brave_search"), get_weather()];
    o.tool_choice = Some("required".to_string());
    let system = prelude(None, &o).system.unwrap();
    assert!(
        system
            .starts_with("Environment: ipython\nTools: brave_search\nYou are a helpful assistant.")
    );
    assert!(
        system.ends_with(
            "\nYou MUST use one of the provided functions/tools to answer the user query."
        )
    );
}
