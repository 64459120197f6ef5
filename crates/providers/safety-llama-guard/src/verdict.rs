//! Reading the guard model's reply: `safe`, or `unsafe` and the violated category codes.

use std::sync::LazyLock;

use llama_stack_core::Error;
use llama_stack_types::{ModerationResult, SafetyViolation, ViolationLevel};
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::prompt::{CATEGORIES, category_name};

/// What the end user is shown instead of flagged content.
pub const CANNED_RESPONSE: &str = "I can't answer that. Can I help with something else?";

static CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bS\d{1,2}\b").expect("static regex"));

/// A parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Safe,
    /// The violated codes, in reply order, each once.
    Unsafe(Vec<String>),
}

/// Parses a reply. Both upstream generations are accepted: the exact `unsafe\nS1,S2` of 0.2
/// and 0.7's codes found anywhere after a leading `unsafe`. A reply that is neither `safe` nor
/// `unsafe` with at least one valid code is `None`: the caller reports it, never treating it
/// as safe.
pub fn parse(reply: &str) -> Option<Verdict> {
    let reply = reply.trim();
    if reply == "safe" {
        return Some(Verdict::Safe);
    }
    let rest = reply.strip_prefix("unsafe")?;
    let mut codes: Vec<String> = Vec::new();
    for found in CODE.find_iter(rest) {
        let code = found.as_str();
        if category_name(code).is_some() && !codes.iter().any(|c| c == code) {
            codes.push(code.to_string());
        }
    }
    if codes.is_empty() {
        None
    } else {
        Some(Verdict::Unsafe(codes))
    }
}

/// The error for a reply [`parse`] cannot read.
pub fn unexpected_reply(shield_id: &str, model_id: &str, reply: &str) -> Error {
    Error::invalid(format!(
        "Unexpected response from guard model '{model_id}' for shield '{shield_id}': {:?}. \
         A Llama Guard model answers 'safe', or 'unsafe' and a line of category codes such as \
         'S1,S2'; check that the shield's model is a Llama Guard model.",
        reply.trim()
    ))
    .with_context("shield_id", shield_id)
}

/// The codes that are not excluded by the provider config.
fn reported<'a>(codes: &'a [String], excluded: &[String]) -> Option<&'a [String]> {
    if codes.iter().all(|c| excluded.contains(c)) {
        None
    } else {
        Some(codes)
    }
}

/// The `run-shield` violation for a verdict; a verdict whose codes are all excluded passes.
pub fn violation(verdict: &Verdict, excluded: &[String]) -> Option<SafetyViolation> {
    let Verdict::Unsafe(codes) = verdict else {
        return None;
    };
    let codes = reported(codes, excluded)?;
    let mut metadata = Map::new();
    metadata.insert("violation_type".into(), Value::String(codes.join(",")));
    Some(SafetyViolation {
        violation_level: ViolationLevel::Error,
        user_message: Some(CANNED_RESPONSE.to_string()),
        metadata,
    })
}

/// The `/v1/moderations` result for a verdict, keyed by category name over all fourteen
/// categories. Upstream scores a safe input 1.0 in every category and a flagged one 1.0 in
/// its categories and 0.0 elsewhere; clients compare against those numbers, so they are kept.
pub fn moderation(verdict: &Verdict, excluded: &[String]) -> ModerationResult {
    let flagged_codes: &[String] = match verdict {
        Verdict::Safe => &[],
        Verdict::Unsafe(codes) => reported(codes, excluded).unwrap_or(&[]),
    };
    let flagged = !flagged_codes.is_empty();
    let mut categories = Map::new();
    let mut scores = Map::new();
    let mut applied = Map::new();
    for (code, name) in CATEGORIES {
        let hit = flagged_codes.iter().any(|c| c == code);
        categories.insert(name.into(), Value::Bool(hit));
        let score = match (flagged, hit) {
            (false, _) | (true, true) => 1.0,
            (true, false) => 0.0,
        };
        scores.insert(name.into(), json!(score));
        applied.insert(name.into(), if hit { json!(["text"]) } else { json!([]) });
    }
    let mut metadata = Map::new();
    if flagged {
        metadata.insert("violation_type".into(), json!(flagged_codes));
    }
    ModerationResult {
        flagged,
        categories,
        category_scores: scores,
        category_applied_input_types: applied,
        user_message: flagged.then(|| CANNED_RESPONSE.to_string()),
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(list: &[&str]) -> Verdict {
        Verdict::Unsafe(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn replies_of_both_generations_parse() {
        assert_eq!(parse("safe"), Some(Verdict::Safe));
        assert_eq!(parse("  safe\n"), Some(Verdict::Safe));
        assert_eq!(parse("unsafe\nS1"), Some(codes(&["S1"])));
        assert_eq!(parse("unsafe\nS10,S2"), Some(codes(&["S10", "S2"])));
        // 0.7: codes anywhere after `unsafe`, invalid ones ignored.
        assert_eq!(parse("unsafe\nS1, S2"), Some(codes(&["S1", "S2"])));
        assert_eq!(parse("unsafe S3 and S99"), Some(codes(&["S3"])));
        assert_eq!(parse("unsafe\nS2,S2"), Some(codes(&["S2"])));
    }

    #[test]
    fn unreadable_replies_are_not_safe() {
        for reply in [
            "",
            "Safe",
            "I think it is fine",
            "unsafe",
            "unsafe\nS99",
            "unsafe\nS1x",
        ] {
            assert_eq!(parse(reply), None, "{reply:?}");
        }
        let err = unexpected_reply("llama-guard", "vllm/Llama-Guard-3-1B", "hello\n");
        assert!(err.message().contains("'llama-guard'"), "{}", err.message());
        assert!(err.message().contains("\"hello\""), "{}", err.message());
    }

    #[test]
    fn violation_carries_the_codes_and_canned_message() {
        let v = violation(&codes(&["S10", "S2"]), &[]).expect("violation");
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            json!({"violation_level": "error",
                   "user_message": "I can't answer that. Can I help with something else?",
                   "metadata": {"violation_type": "S10,S2"}})
        );
        assert_eq!(violation(&Verdict::Safe, &[]), None);
    }

    #[test]
    fn excluded_codes_pass_only_when_all_are_excluded() {
        let excluded = vec!["S2".to_string()];
        assert_eq!(violation(&codes(&["S2"]), &excluded), None);
        assert!(violation(&codes(&["S2", "S1"]), &excluded).is_some());
        assert!(!moderation(&codes(&["S2"]), &excluded).flagged);
    }

    #[test]
    fn moderation_shapes_match_upstream() {
        let safe = moderation(&Verdict::Safe, &[]);
        assert!(!safe.flagged);
        assert_eq!(safe.categories.len(), 14);
        assert!(safe.categories.values().all(|v| v == &json!(false)));
        assert!(safe.category_scores.values().all(|v| v == &json!(1.0)));
        assert_eq!(safe.user_message, None);
        assert_eq!(safe.metadata, Map::new());

        let hit = moderation(&codes(&["S1", "S10"]), &[]);
        assert!(hit.flagged);
        assert_eq!(hit.categories["Violent Crimes"], json!(true));
        assert_eq!(hit.categories["Hate"], json!(true));
        assert_eq!(hit.categories["Privacy"], json!(false));
        assert_eq!(hit.category_scores["Hate"], json!(1.0));
        assert_eq!(hit.category_scores["Privacy"], json!(0.0));
        assert_eq!(hit.category_applied_input_types["Hate"], json!(["text"]));
        assert_eq!(hit.category_applied_input_types["Privacy"], json!([]));
        assert_eq!(hit.metadata["violation_type"], json!(["S1", "S10"]));
        assert_eq!(hit.user_message.as_deref(), Some(CANNED_RESPONSE));
        let names: Vec<_> = hit.categories.keys().cloned().collect();
        assert_eq!(names.first().map(String::as_str), Some("Violent Crimes"));
        assert_eq!(
            names.last().map(String::as_str),
            Some("Code Interpreter Abuse")
        );
    }
}
