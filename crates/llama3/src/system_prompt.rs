//! The messages put in front of the dialog: the system message (environment,
//! knowledge cut-off, tool descriptions, tool choice) and, on the Llama 3.1
//! path, a user message describing the custom tools.

use std::sync::OnceLock;

use llama_stack_types::ToolDefinition;
use regex::Regex;
use serde_json::{Map, Value};

use crate::json_text::{JsonNode, python_dumps};
use crate::prompt::{ModelFamily, RenderOptions};
use crate::tool_calls::{CODE_INTERPRETER, is_builtin_tool};

/// What goes before the caller's own messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prelude {
    pub system: Option<String>,
    /// Llama 3.1 reads custom tool descriptions from a user turn placed right
    /// after the system message.
    pub tools_user_message: Option<String>,
}

const KNOWLEDGE_CUTOFF: &str = "Cutting Knowledge Date: December 2023";
const JSON_TOOLS_HEADER: &str = "Answer the user's question by making use of the following functions if needed.\n\
If none of the function can be used, please say so.\n\
Here is a list of functions in JSON format:";
const JSON_TOOLS_FOOTER: &str = "Return function calls in JSON format.";
const TOOL_CHOICE_REQUIRED: &str =
    "You MUST use one of the provided functions/tools to answer the user query.";

/// The default `python_list` system prompt. `{{function_definitions}}` is
/// where the function list goes, the same marker a caller's replacement prompt
/// uses.
pub const PYTHON_LIST_DEFAULT_PROMPT: &str = "You are a helpful assistant. You have access to functions, \
but use them only when the question needs them.\n\
You are given a question and a set of functions. Decide whether answering it takes a function call.\n\
\n\
If you decide to invoke any of the function(s), you MUST put it in the format of \
[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n\
When you call a function, reply with the call alone and no other text.\n\
Write boolean arguments as `True` or `False`, capitalised.\n\
\n\
\n\
{{function_definitions}}";

/// Builds the prelude for `options`, given the text of the caller's leading
/// system message if there was one.
pub fn prelude(user_system: Option<&str>, options: &RenderOptions) -> Prelude {
    // With tool_choice "none" the model must not see the tools at all; the
    // reference prompt code assumes they were removed before it runs.
    let tools: &[ToolDefinition] = if options.tool_choice.as_deref() == Some("none") {
        &[]
    } else {
        &options.tools
    };
    let (builtin, custom): (Vec<&ToolDefinition>, Vec<&ToolDefinition>) =
        tools.iter().partition(|t| is_builtin_tool(&t.tool_name));
    let format = options.effective_tool_prompt_format();
    let choice = if tools.is_empty() {
        None
    } else {
        tool_choice_line(options.tool_choice.as_deref())
    };

    match options.family {
        ModelFamily::Llama3_1 => {
            let mut system = String::new();
            if !tools.is_empty() {
                system.push_str(&environment_header(&builtin));
            }
            system.push_str(KNOWLEDGE_CUTOFF);
            system.push('\n');
            system.push_str(&format!(
                "Today Date: {}\n",
                options.today.format("%d %B %Y")
            ));
            if let Some(user_system) = user_system {
                system.push('\n');
                system.push_str(user_system);
            }
            push_line(&mut system, choice.as_deref());
            Prelude {
                system: Some(system),
                tools_user_message: (!custom.is_empty())
                    .then(|| custom_tools_prompt(format, &custom, None)),
            }
        }
        ModelFamily::Llama3_2 => {
            let replace = options.system_message_behavior.as_deref() == Some("replace");
            let mut system = String::new();
            if !builtin.is_empty() {
                system.push_str(&environment_header(&builtin));
            }
            if !custom.is_empty() {
                let template = user_system.filter(|_| replace);
                system.push_str(&custom_tools_prompt(format, &custom, template));
                system.push('\n');
            }
            if let Some(user_system) = user_system.filter(|_| custom.is_empty() || !replace) {
                system.push_str(user_system);
            }
            push_line(&mut system, choice.as_deref());
            let system = system.trim_matches('\n');
            Prelude {
                system: (!system.is_empty()).then(|| system.to_string()),
                tools_user_message: None,
            }
        }
    }
}

/// `Environment: ipython` turns on the code interpreter by itself, so only
/// the other builtins are listed.
fn environment_header(builtin: &[&ToolDefinition]) -> String {
    let mut header = String::from("Environment: ipython\n");
    let listed: Vec<&str> = builtin
        .iter()
        .map(|t| t.tool_name.as_str())
        .filter(|&name| name != CODE_INTERPRETER)
        .collect();
    if !listed.is_empty() {
        header.push_str(&format!("Tools: {}\n", listed.join(", ")));
    }
    header
}

fn tool_choice_line(tool_choice: Option<&str>) -> Option<String> {
    match tool_choice? {
        "auto" | "none" | "" => None,
        "required" => Some(TOOL_CHOICE_REQUIRED.to_string()),
        name => Some(format!(
            "You MUST use the tool `{name}` to answer the user query."
        )),
    }
}

/// Appends `line` on a line of its own.
fn push_line(text: &mut String, line: Option<&str>) {
    if let Some(line) = line {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line);
    }
}

/// The description of the custom tools in the given tool prompt format.
/// `template` replaces the default `python_list` prompt.
pub fn custom_tools_prompt(
    format: &str,
    tools: &[&ToolDefinition],
    template: Option<&str>,
) -> String {
    match format {
        "python_list" => {
            let definitions = python_list_definitions(tools);
            let template = template.unwrap_or(PYTHON_LIST_DEFAULT_PROMPT);
            definitions_marker()
                .replace_all(template, regex::NoExpand(&definitions))
                .into_owned()
        }
        "function_tag" => function_tag_prompt(tools),
        _ => json_prompt(tools),
    }
}

/// Accepts both spellings: the API documents `function_definitions`, while
/// the reference templates use `function_description`.
fn definitions_marker() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\{\{\s*function_(?:definitions|description)\s*\}\}").expect("valid regex")
    })
}

fn description(tool: &ToolDefinition) -> &str {
    tool.description.as_deref().unwrap_or("")
}

fn required_names(tool: &ToolDefinition) -> JsonNode {
    let names = tool.parameters.iter().flatten().filter(|(_, p)| p.required);
    JsonNode::List(names.map(|(name, _)| JsonNode::string(name)).collect())
}

fn json_prompt(tools: &[&ToolDefinition]) -> String {
    let mut out = format!("{JSON_TOOLS_HEADER}\n");
    for tool in tools {
        // Each parameter is its own one-key object in a list, and every type
        // reads "object": this is the layout of Meta's reference prompt.
        let properties = tool.parameters.iter().flatten().map(|(name, param)| {
            let described = JsonNode::object([
                ("type", JsonNode::string("object")),
                (
                    "description",
                    JsonNode::string(param.description.as_deref().unwrap_or("")),
                ),
            ]);
            JsonNode::Object(vec![(name.clone(), described)])
        });
        let node = JsonNode::object([
            ("type", JsonNode::string("function")),
            (
                "function",
                JsonNode::object([
                    ("name", JsonNode::string(&tool.tool_name)),
                    ("description", JsonNode::string(description(tool))),
                    (
                        "parameters",
                        JsonNode::object([
                            ("type", JsonNode::string("object")),
                            ("properties", JsonNode::List(properties.collect())),
                            ("required", required_names(tool)),
                        ]),
                    ),
                ]),
            ),
        ]);
        out.push_str(&node.pretty());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(JSON_TOOLS_FOOTER);
    out
}

fn function_tag_prompt(tools: &[&ToolDefinition]) -> String {
    let mut out = String::from("You have access to the following functions:\n\n");
    for tool in tools {
        // Defaults are left out, as in the reference prompt. Keys are sorted, as the
        // reference's `tojson` sorts them, whatever order serde_json keeps.
        let mut names: Vec<&String> = tool.parameters.iter().flatten().map(|(n, _)| n).collect();
        names.sort();
        let mut params = Map::new();
        for name in names {
            let p = &tool
                .parameters
                .as_ref()
                .expect("names come from the parameters")[name];
            let mut fields = Map::new();
            if let Some(d) = &p.description {
                fields.insert("description".into(), Value::String(d.clone()));
            }
            fields.insert("param_type".into(), Value::String(p.param_type.clone()));
            fields.insert("required".into(), Value::Bool(p.required));
            params.insert(name.clone(), Value::Object(fields));
        }
        out.push_str(&format!(
            "Function '{}': {}\n{{\"name\": {}, \"description\": {}, \"parameters\": {}}}\n\n",
            tool.tool_name,
            description(tool),
            python_dumps(&Value::String(tool.tool_name.clone())),
            python_dumps(&Value::String(description(tool).to_string())),
            python_dumps(&Value::Object(params)),
        ));
    }
    out.push_str(
        "Think before deciding to call a function.\n\
         To call one, reply with the call alone, with nothing before or after it, in this format:\n\
         \n\
         <function=example_function_name>{\"example_name\": \"example_value\"}</function>\n\
         \n\
         Reminder:\n\
         - For real-time information, prefer these functions over brave_search\n\
         - A call starts with <function= and ends with </function>, exactly as shown\n\
         - Give every required parameter\n\
         - Call one function at a time\n\
         - Keep the whole call on one line",
    );
    out
}

fn python_list_definitions(tools: &[&ToolDefinition]) -> String {
    let entries = tools.iter().map(|tool| {
        let properties = tool.parameters.iter().flatten().map(|(name, param)| {
            let mut fields = vec![
                ("type".to_string(), JsonNode::string(&param.param_type)),
                (
                    "description".to_string(),
                    JsonNode::string(param.description.as_deref().unwrap_or("")),
                ),
            ];
            if let Some(default) = param.default.as_ref().filter(|d| !d.is_null()) {
                fields.push(("default".to_string(), JsonNode::value(default)));
            }
            (name.clone(), JsonNode::Object(fields))
        });
        JsonNode::object([
            ("name", JsonNode::string(&tool.tool_name)),
            ("description", JsonNode::string(description(tool))),
            (
                "parameters",
                JsonNode::object([
                    ("type", JsonNode::string("dict")),
                    ("required", required_names(tool)),
                    ("properties", JsonNode::Object(properties.collect())),
                ]),
            ),
        ])
    });
    format!(
        "The functions you can invoke, as a JSON list:\n\n{}\n\n\
         You can answer general questions directly or call functions when they help.\n\
         When a function returns a result, use it in your answer.",
        JsonNode::List(entries.collect()).pretty()
    )
}

#[cfg(test)]
#[path = "system_prompt_tests.rs"]
mod tests;
