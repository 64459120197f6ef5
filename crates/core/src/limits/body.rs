//! `server.limits` on JSON bodies, before the body is parsed into its request type: nesting
//! depth, token budgets and the number of embedding inputs. Each refusal is a 400 that names
//! the field and the run.yaml key of the limit. HTTP checks the body it received; gRPC checks
//! the JSON form of the request it decoded, so both transports hold one limit.

use std::fmt;

use super::{RequestLimits, json_depth};
use crate::Error;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};

/// How many items a field holds: a list's length, or 1 for anything else. Items are skipped,
/// not built.
#[derive(Default)]
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count(1))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(1))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Count, E> {
                Ok(Count(1))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Count, E> {
                Ok(Count(1))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
                Ok(Count(1))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
                Ok(Count(1))
            }
            fn visit_unit<E>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields the limits look at; everything else in the body is skipped.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Probe {
    max_tokens: Option<serde_json::Value>,
    max_completion_tokens: Option<serde_json::Value>,
    max_output_tokens: Option<serde_json::Value>,
    sampling_params: Option<SamplingProbe>,
    contents: Count,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct SamplingProbe {
    max_tokens: Option<serde_json::Value>,
}

fn too_many(location: Vec<serde_json::Value>, message: String) -> Error {
    Error::invalid(message).with_location(location)
}

/// Checks a JSON body against the limits. A body that is not JSON passes: its parser says why.
pub fn check_body(bytes: &[u8], limits: &RequestLimits) -> Result<(), Error> {
    let depth = json_depth(bytes, limits.max_json_depth);
    if depth > limits.max_json_depth {
        return Err(too_many(
            vec!["body".into()],
            format!(
                "The request body nests arrays and objects deeper than {} levels (server.limits.max_json_depth)",
                limits.max_json_depth
            ),
        ));
    }
    let Ok(probe) = serde_json::from_slice::<Probe>(bytes) else {
        return Ok(());
    };
    let tokens = [
        ("max_tokens", probe.max_tokens.as_ref(), None),
        (
            "max_completion_tokens",
            probe.max_completion_tokens.as_ref(),
            None,
        ),
        ("max_output_tokens", probe.max_output_tokens.as_ref(), None),
        (
            "max_tokens",
            probe
                .sampling_params
                .as_ref()
                .and_then(|s| s.max_tokens.as_ref()),
            Some("sampling_params"),
        ),
    ];
    for (field, value, parent) in tokens {
        let asked = value.and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        });
        if let Some(asked) = asked
            && asked > limits.max_tokens
        {
            let mut location = vec!["body".into()];
            location.extend(parent.map(Into::into));
            location.push(field.into());
            return Err(too_many(
                location,
                format!(
                    "{field} is {asked}; this server generates at most {} tokens per request (server.limits.max_tokens)",
                    limits.max_tokens
                ),
            ));
        }
    }
    // Only embeddings requests send `contents`; `input` is also a chat or response input, so
    // the embeddings routes check it themselves.
    if probe.contents.0 > limits.max_embedding_inputs {
        return Err(too_many(
            vec!["body".into(), "contents".into()],
            format!(
                "contents has {} items; one request may embed at most {} (server.limits.max_embedding_inputs)",
                probe.contents.0, limits.max_embedding_inputs
            ),
        ));
    }
    Ok(())
}

/// The embeddings routes also hold `input` to the embeddings limit.
pub fn check_embedding_inputs(count: usize, limits: &RequestLimits) -> Result<(), Error> {
    if count > limits.max_embedding_inputs {
        return Err(too_many(
            vec!["body".into(), "input".into()],
            format!(
                "input has {count} items; one request may embed at most {} (server.limits.max_embedding_inputs)",
                limits.max_embedding_inputs
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_json_depth: 4,
            max_tokens: 100,
            max_embedding_inputs: 2,
            ..RequestLimits::default()
        }
    }

    #[test]
    fn each_limit_names_its_field_and_key() {
        let err = check_body(br#"{"a": [[[[[1]]]]]}"#, &limits()).unwrap_err();
        assert!(
            err.message().contains("max_json_depth"),
            "{}",
            err.message()
        );
        let err = check_body(br#"{"model": "m", "max_tokens": 101}"#, &limits()).unwrap_err();
        assert_eq!(
            err.location().unwrap(),
            &["body".into(), "max_tokens".into()] as &[serde_json::Value]
        );
        let err =
            check_body(br#"{"sampling_params": {"max_tokens": "500"}}"#, &limits()).unwrap_err();
        assert!(err.message().contains("server.limits.max_tokens"));
        let err = check_body(br#"{"contents": ["a", "b", "c"]}"#, &limits()).unwrap_err();
        assert!(err.message().contains("max_embedding_inputs"));
        assert!(
            check_body(
                br#"{"model": "m", "input": ["a", "b", "c"], "max_tokens": 100}"#,
                &limits()
            )
            .is_ok()
        );
        assert!(check_body(b"not json", &limits()).is_ok());
    }
}
