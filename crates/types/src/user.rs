//! The authenticated caller, and the owner recorded on every resource it creates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A principal and its access attributes (`roles`, `teams`, `projects`, `namespaces`), as an
/// authentication provider reports them. Stored as a resource's `owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, Vec<String>>>,
}

impl User {
    pub fn new(principal: impl Into<String>) -> Self {
        User {
            principal: principal.into(),
            attributes: None,
        }
    }

    /// The values of one attribute (empty when the user has none).
    pub fn attribute(&self, name: &str) -> &[String] {
        self.attributes
            .as_ref()
            .and_then(|a| a.get(name))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}
