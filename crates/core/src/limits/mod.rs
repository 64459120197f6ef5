//! `server.limits`: the sizes a request may have, checked before any work is done for it, each
//! refused with a 4xx that names the limit and the run.yaml key that sets it.

mod body;

pub use body::{check_body, check_embedding_inputs};

/// The limits, with the defaults a distribution gets when it sets none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimits {
    /// A JSON request body, in bytes (413 past it).
    pub max_body_bytes: usize,
    /// A file upload (multipart body), in bytes (413 past it).
    pub max_upload_bytes: usize,
    /// Nesting of arrays and objects in a JSON body.
    pub max_json_depth: usize,
    /// `max_tokens`, `max_completion_tokens`, `max_output_tokens` and
    /// `sampling_params.max_tokens`.
    pub max_tokens: u64,
    /// Inputs of one embeddings request (`input`, `contents`).
    pub max_embedding_inputs: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: 16 * 1024 * 1024,
            max_upload_bytes: 512 * 1024 * 1024,
            max_json_depth: 64,
            max_tokens: 131_072,
            max_embedding_inputs: 2048,
        }
    }
}

impl RequestLimits {
    /// The run.yaml keys, for messages and validation.
    pub const KEYS: [&'static str; 5] = [
        "max_body_bytes",
        "max_upload_bytes",
        "max_json_depth",
        "max_tokens",
        "max_embedding_inputs",
    ];

    /// Sets one limit by its run.yaml key; false for an unknown key.
    pub fn set(&mut self, key: &str, value: u64) -> bool {
        let size = usize::try_from(value).unwrap_or(usize::MAX);
        match key {
            "max_body_bytes" => self.max_body_bytes = size,
            "max_upload_bytes" => self.max_upload_bytes = size,
            "max_json_depth" => self.max_json_depth = size,
            "max_tokens" => self.max_tokens = value,
            "max_embedding_inputs" => self.max_embedding_inputs = size,
            _ => return false,
        }
        true
    }
}

/// The deepest nesting of arrays and objects in a JSON text (strings skipped), stopping early
/// once `limit` is passed: cheap enough to run on every body before it is parsed.
pub fn json_depth(bytes: &[u8], limit: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > limit {
                        return deepest;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_skips_brackets_inside_strings() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": "[[[{"}]}"#, 64), 3);
        assert_eq!(json_depth(br#""\"[[""#, 64), 0);
        let deep = "[".repeat(1000);
        assert_eq!(json_depth(deep.as_bytes(), 64), 65);
    }

    #[test]
    fn limits_are_set_by_key() {
        let mut limits = RequestLimits::default();
        assert!(limits.set("max_tokens", 10));
        assert_eq!(limits.max_tokens, 10);
        assert!(!limits.set("max_colour", 1));
    }
}
