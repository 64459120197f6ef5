//! Cursor pages of OpenAI list objects (`{"object": "list", "data", "first_id", "last_id",
//! "has_more"}`), as the routes over stored objects (responses, conversation items, stored chat
//! completions) answer them.

use serde_json::{Value, json};

use crate::{Error, Result};

/// What a list route was asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageRequest<'a> {
    /// Items per page, 1 to 100.
    pub limit: Option<usize>,
    /// `asc` or `desc`.
    pub order: Option<&'a str>,
    /// Start after this id.
    pub after: Option<&'a str>,
    /// Stop before this id.
    pub before: Option<&'a str>,
}

fn query_error(field: &str, message: String) -> Error {
    Error::invalid(message).with_location(vec!["query".into(), field.into()])
}

/// One page of `items` (stored oldest first), each with an `id`.
pub fn page(
    mut items: Vec<Value>,
    request: PageRequest<'_>,
    default_limit: usize,
    default_order: &str,
) -> Result<Value> {
    let limit = request.limit.unwrap_or(default_limit);
    if !(1..=100).contains(&limit) {
        return Err(query_error(
            "limit",
            format!("limit must be between 1 and 100, got {limit}"),
        ));
    }
    match request.order.unwrap_or(default_order) {
        "desc" => items.reverse(),
        "asc" => {}
        other => {
            return Err(query_error(
                "order",
                format!("order must be 'asc' or 'desc', got '{other}'"),
            ));
        }
    }
    let id_of = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_string);
    if let Some(after) = request.after {
        let at = items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(after))
            .ok_or_else(|| query_error("after", format!("after names no item: '{after}'")))?;
        items.drain(..=at);
    }
    if let Some(before) = request.before {
        let at = items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(before))
            .ok_or_else(|| query_error("before", format!("before names no item: '{before}'")))?;
        items.truncate(at);
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(json!({
        "object": "list",
        "first_id": items.first().and_then(id_of),
        "last_id": items.last().and_then(id_of),
        "has_more": has_more,
        "data": items,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_order_and_cursor() {
        let items: Vec<Value> = (1..=5).map(|i| json!({"id": format!("i{i}")})).collect();
        let desc = page(
            items.clone(),
            PageRequest {
                limit: Some(2),
                ..PageRequest::default()
            },
            20,
            "desc",
        )
        .unwrap();
        assert_eq!(
            (desc["first_id"].as_str(), desc["last_id"].as_str()),
            (Some("i5"), Some("i4"))
        );
        assert_eq!(desc["has_more"], true);
        let asc = page(
            items.clone(),
            PageRequest {
                after: Some("i3"),
                ..PageRequest::default()
            },
            20,
            "asc",
        )
        .unwrap();
        assert_eq!(asc["data"].as_array().unwrap().len(), 2);
        assert_eq!(asc["has_more"], false);
        let bad = PageRequest {
            order: Some("up"),
            ..PageRequest::default()
        };
        assert!(
            page(items.clone(), bad, 20, "asc")
                .unwrap_err()
                .message()
                .contains("order")
        );
        let unknown = PageRequest {
            after: Some("nope"),
            ..PageRequest::default()
        };
        assert!(page(items, unknown, 20, "asc").is_err());
    }
}
