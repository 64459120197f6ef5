//! Checks and defaults applied to an agent's config when it is created.

use std::collections::HashSet;

use llama_stack_core::{Error, Result};
use llama_stack_types::{AgentConfig, ToolConfig};

/// Folds the deprecated `tool_choice` / `tool_prompt_format` into `tool_config`, refusing a
/// config that sets both ways differently (as upstream does).
pub(crate) fn fold_tool_config(config: &mut AgentConfig) -> Result<()> {
    let mut tool_config = config.tool_config.clone().unwrap_or(ToolConfig {
        tool_choice: None,
        tool_prompt_format: None,
        system_message_behavior: None,
    });
    for (old, new, name) in [
        (
            &config.tool_choice,
            &mut tool_config.tool_choice,
            "tool_choice",
        ),
        (
            &config.tool_prompt_format,
            &mut tool_config.tool_prompt_format,
            "tool_prompt_format",
        ),
    ] {
        match (old, &new) {
            (Some(old), Some(new)) if old != new => {
                return Err(Error::invalid(format!(
                    "{name} is deprecated. Use {name} in tool_config instead."
                )));
            }
            (Some(old), None) => *new = Some(old.clone()),
            _ => {}
        }
    }
    if tool_config.tool_choice.is_none() {
        tool_config.tool_choice = Some("auto".into());
    }
    if tool_config.system_message_behavior.is_none() {
        tool_config.system_message_behavior = Some("append".into());
    }
    config.tool_config = Some(tool_config);
    Ok(())
}

/// Client tool names must be unique.
pub(crate) fn check_client_tools(config: &AgentConfig) -> Result<()> {
    let mut seen = HashSet::new();
    for tool in config.client_tools.iter().flatten() {
        if !seen.insert(tool.name.as_str()) {
            return Err(Error::invalid(format!("Tool {} already exists", tool.name)));
        }
    }
    Ok(())
}
