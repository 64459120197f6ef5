//! `vector_dbs` and `tool_groups`: registered at startup like models.

use llama_stack_core::Api;
use llama_stack_types::{RegisterToolGroupRequest, RegisterVectorDbRequest};
use serde_json::Value;

use super::{Checker, Status, child};

impl Checker<'_> {
    /// Checks `vector_dbs` entries; returns those to register.
    pub(super) fn vector_dbs(&mut self, value: Option<&Value>) -> Vec<Value> {
        let mut kept = Vec::new();
        for (i, item) in self.list("vector_dbs", value).iter().enumerate() {
            let path = format!("vector_dbs[{i}]");
            if self.resource_entry(&path, "vector_db_id", item).is_none() {
                continue;
            }
            let Some(entry) = self.parse::<RegisterVectorDbRequest>(&path, item) else {
                continue;
            };
            let provider_id = match &entry.provider_id {
                Some(id) => id.clone(),
                None => match self.only_provider(Api::VectorIo) {
                    Ok(id) => id,
                    Err(message) => {
                        self.problem(child(&path, "provider_id"), message);
                        continue;
                    }
                },
            };
            if self.registrable(&path, Api::VectorIo, &provider_id, &entry.vector_db_id) {
                kept.push(item.clone());
            }
        }
        kept
    }

    /// Checks `tool_groups` entries; returns those to register.
    pub(super) fn tool_groups(&mut self, value: Option<&Value>) -> Vec<Value> {
        let mut kept = Vec::new();
        for (i, item) in self.list("tool_groups", value).iter().enumerate() {
            let path = format!("tool_groups[{i}]");
            if self.resource_entry(&path, "toolgroup_id", item).is_none() {
                continue;
            }
            let Some(entry) = self.parse::<RegisterToolGroupRequest>(&path, item) else {
                continue;
            };
            if self.registrable(
                &path,
                Api::ToolRuntime,
                &entry.provider_id,
                &entry.toolgroup_id,
            ) {
                kept.push(item.clone());
            }
        }
        kept
    }

    /// Whether an entry's provider reference holds and the provider will be built.
    fn registrable(&mut self, path: &str, api: Api, provider_id: &str, id: &str) -> bool {
        match self.reference(api, provider_id) {
            Ok(Status::Buildable) => true,
            Ok(Status::NotImplemented) => {
                self.notices.push(format!(
                    "{path}: `{id}` is not registered because its provider `{provider_id}` is not implemented yet"
                ));
                false
            }
            Ok(Status::Broken) => false,
            Err(message) => {
                self.problem(child(path, "provider_id"), message);
                false
            }
        }
    }
}
