//! Interleaved content.

use llama_stack_core::{Error, Result};
use llama_stack_types as types;

use crate::pb;

pub(crate) fn content_from_pb(
    content: Option<pb::InterleavedContent>,
) -> Result<types::InterleavedContent> {
    use pb::interleaved_content::Content;
    match content.and_then(|c| c.content) {
        None => Ok(types::InterleavedContent::Text(String::new())),
        Some(Content::Text(text)) => Ok(types::InterleavedContent::Text(text)),
        Some(Content::Items(list)) => Ok(types::InterleavedContent::Items(
            list.items
                .into_iter()
                .map(item_from_pb)
                .collect::<Result<_>>()?,
        )),
    }
}

/// Absent stays absent (for optional content such as a user message's context).
pub(crate) fn opt_content_from_pb(
    content: Option<pb::InterleavedContent>,
) -> Result<Option<types::InterleavedContent>> {
    content.map(|c| content_from_pb(Some(c))).transpose()
}

pub(crate) fn item_from_pb(item: pb::ContentItem) -> Result<types::ContentItem> {
    use pb::content_item::Item;
    use pb::image_content::Source;
    match item.item {
        Some(Item::Text(text)) => Ok(types::ContentItem::Text { text }),
        Some(Item::Image(image)) => {
            let image = match image.source {
                Some(Source::Url(uri)) => types::ImageContent {
                    url: Some(types::Url { uri }),
                    data: None,
                },
                Some(Source::Data(data)) => types::ImageContent {
                    url: None,
                    data: Some(data),
                },
                None => return Err(Error::invalid("an image content item needs a url or data")),
            };
            Ok(types::ContentItem::Image { image })
        }
        None => Err(Error::invalid(
            "a content item needs text or an image; this one has neither",
        )),
    }
}

pub(crate) fn content_to_pb(content: types::InterleavedContent) -> pb::InterleavedContent {
    use pb::interleaved_content::Content;
    let content = match content {
        types::InterleavedContent::Text(text) => Content::Text(text),
        types::InterleavedContent::Item(item) => Content::Items(pb::ContentItemList {
            items: vec![item_to_pb(item)],
        }),
        types::InterleavedContent::Items(items) => Content::Items(pb::ContentItemList {
            items: items.into_iter().map(item_to_pb).collect(),
        }),
    };
    pb::InterleavedContent {
        content: Some(content),
    }
}

pub(crate) fn item_to_pb(item: types::ContentItem) -> pb::ContentItem {
    use pb::content_item::Item;
    use pb::image_content::Source;
    let item = match item {
        types::ContentItem::Text { text } => Item::Text(text),
        types::ContentItem::Image { image } => Item::Image(pb::ImageContent {
            source: match (image.url, image.data) {
                (Some(url), _) => Some(Source::Url(url.uri)),
                (None, Some(data)) => Some(Source::Data(data)),
                (None, None) => None,
            },
        }),
    };
    pb::ContentItem { item: Some(item) }
}

/// Content the core keeps as JSON (chunks, RAG results), read as interleaved content.
pub(crate) fn json_content_to_pb(value: serde_json::Value) -> Result<pb::InterleavedContent> {
    let content: types::InterleavedContent = serde_json::from_value(value)
        .map_err(|e| Error::internal(format!("stored content is not interleaved content: {e}")))?;
    Ok(content_to_pb(content))
}

pub(crate) fn content_to_json(content: &types::InterleavedContent) -> serde_json::Value {
    serde_json::to_value(content).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_and_unset_reads_as_empty_text() {
        let items = types::InterleavedContent::Items(vec![
            types::ContentItem::Text { text: "a".into() },
            types::ContentItem::Image {
                image: types::ImageContent {
                    url: Some(types::Url {
                        uri: "http://x/i.png".into(),
                    }),
                    data: None,
                },
            },
        ]);
        assert_eq!(
            content_from_pb(Some(content_to_pb(items.clone()))).unwrap(),
            items
        );
        assert_eq!(
            content_from_pb(None).unwrap(),
            types::InterleavedContent::Text(String::new())
        );
        let empty_item = pb::InterleavedContent {
            content: Some(pb::interleaved_content::Content::Items(
                pb::ContentItemList {
                    items: vec![pb::ContentItem { item: None }],
                },
            )),
        };
        assert!(content_from_pb(Some(empty_item)).is_err());
    }
}
