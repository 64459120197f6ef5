//! Interleaved content: a string, one item, or a list of items.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `InterleavedContent` = `string` | `Item` | `[Item]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum InterleavedContent {
    Text(String),
    Item(ContentItem),
    Items(Vec<ContentItem>),
}

impl Default for InterleavedContent {
    fn default() -> Self {
        InterleavedContent::Text(String::new())
    }
}

impl From<&str> for InterleavedContent {
    fn from(s: &str) -> Self {
        InterleavedContent::Text(s.to_string())
    }
}

impl InterleavedContent {
    /// The text parts joined with `sep`; images render as `<image>`.
    pub fn as_text(&self, sep: &str) -> String {
        match self {
            InterleavedContent::Text(s) => s.clone(),
            InterleavedContent::Item(item) => item.as_text(),
            InterleavedContent::Items(items) => items
                .iter()
                .map(ContentItem::as_text)
                .collect::<Vec<_>>()
                .join(sep),
        }
    }

    pub fn items(&self) -> Vec<ContentItem> {
        match self {
            InterleavedContent::Text(s) => vec![ContentItem::Text { text: s.clone() }],
            InterleavedContent::Item(item) => vec![item.clone()],
            InterleavedContent::Items(items) => items.clone(),
        }
    }
}

/// One item of interleaved content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentItem {
    Text { text: String },
    Image { image: ImageContent },
}

impl ContentItem {
    pub fn as_text(&self) -> String {
        match self {
            ContentItem::Text { text } => text.clone(),
            ContentItem::Image { .. } => "<image>".to_string(),
        }
    }
}

/// An image given by URL (a `data:` URL works too) or as base64 data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Url {
    pub uri: String,
}
