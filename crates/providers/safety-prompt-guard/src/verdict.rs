//! From the classifier's probabilities to what the safety API returns: a shield violation, or a
//! moderation result.
//!
//! The probabilities appear in `violation_type` as upstream prints them (Python's `repr` of the
//! `float` that PyTorch hands back for a float32 value), so clients that parse them see the same
//! text from either server.

use llama_stack_types::{ModerationResult, SafetyViolation, ViolationLevel};

use crate::config::GuardType;

/// What the end user is shown instead of a flagged message.
pub const USER_MESSAGE: &str = "Sorry, I cannot do this.";

/// The model's probabilities for one text; they add up to 1 (to float32 rounding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Label 0, `BENIGN`.
    pub benign: f64,
    /// Label 1, `INJECTION`: instructions embedded in data, which upstream calls "embedded".
    pub embedded: f64,
    /// Label 2, `JAILBREAK`: an explicit attempt to override the system prompt, which upstream
    /// calls "malicious".
    pub malicious: f64,
}

impl Scores {
    /// Reads softmax output in label order. Each float32 probability is widened to f64 exactly,
    /// as PyTorch's `.item()` does, so sums and printed values match upstream's.
    pub fn from_probabilities(p: [f32; 3]) -> Scores {
        Scores {
            benign: f64::from(p[0]),
            embedded: f64::from(p[1]),
            malicious: f64::from(p[2]),
        }
    }
}

/// The shield's verdict on one text: `None` when it passes.
///
/// `injection` flags `embedded + malicious > threshold`; `jailbreak` flags
/// `malicious > threshold`. Both report level `error` and [`USER_MESSAGE`]. In `jailbreak` mode
/// Llama Stack up to 0.2.10 returned neither a message nor a `violation_type` (it passed field
/// names its `SafetyViolation` does not have); later versions report
/// `prompt_injection:malicious=<p>`, which is what this provider sends too.
pub fn violation(
    scores: &Scores,
    guard_type: GuardType,
    threshold: f64,
) -> Option<SafetyViolation> {
    let violation_type = match guard_type {
        GuardType::Injection if scores.embedded + scores.malicious > threshold => format!(
            "prompt_injection:embedded={},malicious={}",
            python_float_repr(scores.embedded),
            python_float_repr(scores.malicious)
        ),
        GuardType::Jailbreak if scores.malicious > threshold => format!(
            "prompt_injection:malicious={}",
            python_float_repr(scores.malicious)
        ),
        _ => return None,
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("violation_type".into(), violation_type.into());
    Some(SafetyViolation {
        violation_level: ViolationLevel::Error,
        user_message: Some(USER_MESSAGE.into()),
        metadata,
    })
}

/// The `/v1/moderations` result for one input, built from the shield verdict the way upstream
/// 0.7 does for every shield-only provider: a pass has no categories at all; a violation has
/// one category, named by its `violation_type`, flagged with score 1.0.
pub fn moderation(violation: Option<&SafetyViolation>) -> ModerationResult {
    let Some(violation) = violation else {
        return ModerationResult {
            flagged: false,
            categories: Default::default(),
            category_scores: Default::default(),
            category_applied_input_types: Default::default(),
            user_message: None,
            metadata: Default::default(),
        };
    };
    let category = violation
        .metadata
        .get("violation_type")
        .and_then(|v| v.as_str())
        .unwrap_or("unsafe")
        .to_string();
    let one = |value: serde_json::Value| {
        let mut map = serde_json::Map::new();
        map.insert(category.clone(), value);
        map
    };
    ModerationResult {
        flagged: true,
        categories: one(true.into()),
        category_scores: one(1.0.into()),
        category_applied_input_types: one(serde_json::json!(["text"])),
        user_message: violation.user_message.clone(),
        metadata: violation.metadata.clone(),
    }
}

/// `repr(x)` of a Python float: the shortest digits that read back as `x`, in positional
/// notation when the decimal exponent is in [-4, 16) and scientific (`1e-05`, `1.5e+16`)
/// otherwise; integral values keep a `.0`.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` also prints the shortest round-trip digits: `9.731e-1`, `1e-5`.
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // The value is 0.<digits> × 10^point.
    let point = exponent + 1;
    if -4 < point && point <= 16 {
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else {
            let point = point as usize;
            if point >= digits.len() {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{sign}{mantissa}e{exponent_sign}{:02}",
            exponent.unsigned_abs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr_does() {
        for (x, repr) in [
            (0.9731, "0.9731"),
            (1.0, "1.0"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (1.5e-7, "1.5e-07"),
            (0.5, "0.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (-2.5, "-2.5"),
            (123.0, "123.0"),
            (1e16, "1e+16"),
            (1.2345e17, "1.2345e+17"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e22, "1e+22"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(python_float_repr(x), repr, "{x:e}");
        }
        // What `torch.softmax(...)[0, 1].item()` prints for a float32 value.
        assert_eq!(
            python_float_repr(f64::from(0.9731_f32)),
            "0.9731000065803528"
        );
        assert_eq!(
            python_float_repr(f64::from(1e-5_f32)),
            "9.999999747378752e-06"
        );
    }

    #[test]
    fn printed_values_read_back_exactly() {
        for x in [0.1, 0.99999, 2.0f64.powi(-30), 1.0 / 3.0, 7e-12, 0.25] {
            assert_eq!(python_float_repr(x).parse::<f64>().unwrap(), x);
        }
    }

    fn scores(embedded: f64, malicious: f64) -> Scores {
        Scores {
            benign: 1.0 - embedded - malicious,
            embedded,
            malicious,
        }
    }

    fn violation_type(v: &SafetyViolation) -> &str {
        v.metadata["violation_type"].as_str().unwrap()
    }

    #[test]
    fn injection_adds_both_probabilities() {
        let v = violation(&scores(0.5, 0.45), GuardType::Injection, 0.9).unwrap();
        assert_eq!(v.violation_level, ViolationLevel::Error);
        assert_eq!(v.user_message.as_deref(), Some(USER_MESSAGE));
        assert_eq!(
            violation_type(&v),
            "prompt_injection:embedded=0.5,malicious=0.45"
        );
        assert!(violation(&scores(0.5, 0.4), GuardType::Injection, 0.9).is_none());
        // Strictly above.
        assert!(violation(&scores(0.9, 0.0), GuardType::Injection, 0.9).is_none());
    }

    #[test]
    fn jailbreak_reads_the_jailbreak_probability_only() {
        assert!(violation(&scores(0.99, 0.0), GuardType::Jailbreak, 0.9).is_none());
        let v = violation(&scores(0.0, 0.95), GuardType::Jailbreak, 0.9).unwrap();
        assert_eq!(v.user_message.as_deref(), Some(USER_MESSAGE));
        assert_eq!(violation_type(&v), "prompt_injection:malicious=0.95");
    }

    #[test]
    fn moderation_results_have_upstream_shapes() {
        let pass = moderation(None);
        assert!(!pass.flagged);
        assert!(pass.categories.is_empty() && pass.category_scores.is_empty());
        assert!(pass.user_message.is_none());

        let v = violation(&scores(0.0, 0.95), GuardType::Jailbreak, 0.9).unwrap();
        let flagged = moderation(Some(&v));
        let key = "prompt_injection:malicious=0.95";
        assert!(flagged.flagged);
        assert_eq!(flagged.categories[key], true);
        assert_eq!(flagged.category_scores[key], 1.0);
        assert_eq!(
            flagged.category_applied_input_types[key],
            serde_json::json!(["text"])
        );
        assert_eq!(flagged.user_message.as_deref(), Some(USER_MESSAGE));
        assert_eq!(flagged.metadata, v.metadata);
    }
}
