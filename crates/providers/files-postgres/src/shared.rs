//! What every files provider whose storage replicas share needs, whatever holds the bytes:
//! generated ids, the stored record, expiry, paging a listing held in memory, and config values
//! that environment substitution may have turned into numbers or booleans. `remote::postgres`
//! and `remote::s3` both build on it.

use llama_stack_core::{Error, Result};
use llama_stack_memory::files::{FileListQuery, FileObject, FilePage, NewFile};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Default page size of a listing, as upstream.
pub const DEFAULT_LIST_LIMIT: usize = 10_000;

/// A new id: `file-` and 32 lowercase hex digits.
pub fn new_file_id() -> String {
    format!("file-{}", uuid::Uuid::new_v4().simple())
}

/// Whether `id` has the shape [`new_file_id`] gives. Only such ids reach storage, so no client
/// input becomes an object key or a query on someone else's data.
pub fn is_file_id(id: &str) -> bool {
    id.strip_prefix("file-").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Now, in Unix seconds and nanoseconds.
pub fn now() -> (i64, i64) {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let nanos = i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX);
    (since_epoch.as_secs() as i64, nanos)
}

pub fn is_expired(file: &FileObject, now_secs: i64) -> bool {
    file.expires_at.is_some_and(|at| at <= now_secs)
}

/// `ttl_secs` of a config as an expiry: absent or 0 is never.
pub fn default_expiry_secs(ttl_secs: Option<u64>) -> Option<i64> {
    ttl_secs
        .filter(|&secs| secs > 0)
        .map(|secs| secs.min(i64::MAX as u64) as i64)
}

/// What is stored per file: the OpenAI object (owner included) plus a nanosecond creation time,
/// so listings keep upload order among files created in the same second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    #[serde(flatten)]
    pub file: FileObject,
    pub created_at_ns: i64,
}

impl StoredFile {
    /// The record of an upload under a fresh id; the upload's own expiry, else
    /// `default_expiry_secs`.
    pub fn new(file: &NewFile, default_expiry_secs: Option<i64>) -> Result<StoredFile> {
        let expires_after = file.expires_after_seconds.or(default_expiry_secs);
        if let Some(secs) = expires_after
            && secs < 0
        {
            return Err(Error::invalid(format!(
                "expires_after seconds must not be negative; got {secs}"
            )));
        }
        let (created_at, created_at_ns) = now();
        Ok(StoredFile {
            file: FileObject {
                object: "file".into(),
                id: new_file_id(),
                bytes: file.content.len() as u64,
                created_at,
                expires_at: expires_after.map(|secs| created_at.saturating_add(secs)),
                filename: file.filename.clone(),
                purpose: file.purpose.clone(),
                owner: file.owner.clone(),
            },
            created_at_ns,
        })
    }

    /// Upload order: creation time, then id.
    pub fn order_key(&self) -> (i64, &str) {
        (self.created_at_ns, &self.file.id)
    }
}

/// The answer for an `after` that is not in the listing.
pub fn unknown_after(after: &str) -> Error {
    Error::invalid(format!(
        "after: no file '{after}' in this listing; pass the last_id of the previous page"
    ))
    .with_location(vec!["query".into(), "after".into()])
}

/// One page of `live` (files not expired) for `query`: purpose filter, upload order (newest
/// first when `order_desc`), the files after `after`, at most `limit`.
pub fn page(mut live: Vec<StoredFile>, query: &FileListQuery) -> Result<FilePage> {
    live.retain(|r| query.purpose.as_ref().is_none_or(|p| &r.file.purpose == p));
    live.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    if query.order_desc {
        live.reverse();
    }
    let start = match &query.after {
        None => 0,
        Some(after) => {
            live.iter()
                .position(|r| &r.file.id == after)
                .ok_or_else(|| unknown_after(after))?
                + 1
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    let rest = live.len().saturating_sub(start);
    let data = live
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|r| r.file)
        .collect();
    Ok(FilePage {
        data,
        has_more: rest > limit,
    })
}

// Environment substitution turns `"5432"` into 5432 and `"true"` into true, so strings accept
// numbers and booleans, and numbers and booleans accept their strings.

pub fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, got {other}"
        ))),
    }
}

/// As [`lenient_string`]; null (an unset `${env.X:=}`) and `""` are absent.
pub fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        other => lenient_string(other)
            .map(|s| Some(s).filter(|s| !s.trim().is_empty()))
            .map_err(serde::de::Error::custom),
    }
}

pub fn lenient_integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let value = Value::deserialize(d)?;
    let parsed = match &value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {value}")))
}

/// As [`lenient_integer`], for a non-negative count that may be absent.
pub fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = Value::deserialize(d)?;
    let parsed = match &value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a whole number of seconds, got {value}"))
    })
}

/// null (an unset `${env.X:=}`) is false.
pub fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let value = Value::deserialize(d)?;
    match &value {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
        _ => Err(serde::de::Error::custom(format!(
            "expected true or false, got {value}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: &str, ns: i64, purpose: &str) -> StoredFile {
        StoredFile {
            file: FileObject {
                object: "file".into(),
                id: id.into(),
                bytes: 0,
                created_at: 0,
                expires_at: None,
                filename: "f".into(),
                purpose: purpose.into(),
                owner: None,
            },
            created_at_ns: ns,
        }
    }

    #[test]
    fn only_generated_ids_pass() {
        assert!(is_file_id(&new_file_id()));
        for bad in [
            "file-../../etc/passwd",
            "file-0123456789ABCDEF0123456789abcdef",
            "file-0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef",
            "file-0123456789abcdef0123456789abcdef/",
        ] {
            assert!(!is_file_id(bad), "{bad}");
        }
    }

    #[test]
    fn pages_follow_upload_order_then_id() {
        let all = vec![
            stored("c", 2, "assistants"),
            stored("a", 1, "assistants"),
            stored("b", 2, "batch"),
        ];
        let ids = |page: FilePage| page.data.into_iter().map(|f| f.id).collect::<Vec<_>>();
        let query = FileListQuery {
            limit: Some(2),
            ..Default::default()
        };
        let first = page(all.clone(), &query).unwrap();
        assert!(first.has_more);
        assert_eq!(ids(first), ["a", "b"]);
        let next = FileListQuery {
            after: Some("b".into()),
            ..query.clone()
        };
        let second = page(all.clone(), &next).unwrap();
        assert!(!second.has_more);
        assert_eq!(ids(second), ["c"]);
        let desc = FileListQuery {
            order_desc: true,
            purpose: Some("assistants".into()),
            ..Default::default()
        };
        assert_eq!(ids(page(all.clone(), &desc).unwrap()), ["c", "a"]);
        let stray = FileListQuery {
            after: Some("b".into()),
            ..desc
        };
        assert!(page(all, &stray).unwrap_err().message().contains("'b'"));
    }

    #[test]
    fn negative_expiry_is_refused_and_ttl_applies() {
        let mut upload = NewFile {
            filename: "f".into(),
            purpose: "assistants".into(),
            expires_after_seconds: None,
            content: b"abc".to_vec(),
            owner: None,
        };
        let record = StoredFile::new(&upload, default_expiry_secs(Some(60))).unwrap();
        assert_eq!(record.file.expires_at, Some(record.file.created_at + 60));
        assert_eq!(record.file.bytes, 3);
        assert_eq!(default_expiry_secs(Some(0)), None);
        upload.expires_after_seconds = Some(-1);
        assert!(StoredFile::new(&upload, None).is_err());
    }
}
