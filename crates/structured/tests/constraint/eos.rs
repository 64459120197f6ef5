//! Ending the output: when end-of-sequence tokens are allowed, what `is_finished` means, and
//! the bound on whitespace.

use llama_stack_llama3::{BEGIN_OF_TEXT, EOT_ID, PYTHON_TAG, STOP_TOKENS};
use llama_stack_structured::{Constraint, ConstraintOptions, Error, Format};
use serde_json::json;

use crate::support::{feed, vocabulary};

fn compact() -> ConstraintOptions {
    ConstraintOptions { json_whitespace: 0 }
}

#[test]
fn eos_only_once_the_value_is_whole() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let format = Format::JsonSchema(json!({"type": "boolean"}));
    let mut constraint = Constraint::with_options(vocabulary, &format, &compact()).unwrap();
    assert!(!constraint.can_finish().unwrap());
    assert_eq!(
        constraint.accept(EOT_ID),
        Err(Error::TokenNotAllowed { token: EOT_ID })
    );

    feed(&mut constraint, "tru").unwrap();
    assert!(!constraint.can_finish().unwrap());
    assert!(!constraint.is_finished());
    feed(&mut constraint, "e").unwrap();
    // Nothing can follow `true` in compact JSON: only the end-of-sequence tokens are left.
    assert!(constraint.is_finished());
    let allowed: Vec<u32> = constraint.allowed_tokens().unwrap().iter().collect();
    assert_eq!(allowed, STOP_TOKENS);
    let space = constraint.vocabulary().eos_tokens().len() as u32; // any ordinary token
    assert_eq!(
        constraint.accept(space),
        Err(Error::TokenNotAllowed { token: space })
    );

    constraint.accept(EOT_ID).unwrap();
    assert!(constraint.is_finished());
    // Accepting another end-of-sequence token is harmless; anything else is refused.
    constraint.accept(EOT_ID).unwrap();
    assert!(constraint.accept(space).is_err());
}

#[test]
fn eos_while_the_value_could_go_on() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let format = Format::JsonSchema(json!({"type": "array", "items": {"type": "integer"}}));
    let mut constraint = Constraint::with_options(vocabulary, &format, &compact()).unwrap();
    feed(&mut constraint, "[1,2]").unwrap();
    assert!(constraint.is_finished());

    let format = Format::JsonSchema(json!({"type": "integer"}));
    let mut constraint = Constraint::new(constraint.vocabulary().clone(), &format).unwrap();
    feed(&mut constraint, "12").unwrap();
    // `12` is whole, yet `123` is still possible.
    assert!(constraint.can_finish().unwrap());
    assert!(!constraint.is_finished());
    feed(&mut constraint, "3").unwrap();
    constraint.accept(STOP_TOKENS[0]).unwrap();
    assert!(constraint.is_finished());
}

#[test]
fn special_tokens_are_never_allowed_inside_output() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let format = Format::JsonSchema(json!({"type": "object", "properties": {
        "s": {"type": "string"}}}));
    let mut constraint = Constraint::new(vocabulary.clone(), &format).unwrap();
    for prefix in ["", "{", "\"s\":\"a"] {
        feed(&mut constraint, prefix).unwrap();
        let allowed = constraint.allowed_tokens().unwrap();
        for token in [BEGIN_OF_TEXT, PYTHON_TAG, EOT_ID, 128_255] {
            assert!(!allowed.contains(token), "{token} after {prefix:?}");
        }
        // Inside a string almost every ordinary token fits.
        if prefix.ends_with('a') {
            assert!(allowed.count() > 100_000, "{}", allowed.count());
        }
    }
}

#[test]
fn whitespace_is_bounded() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let format = Format::JsonSchema(json!({"type": "array", "items": {"type": "null"}}));

    let mut compact = Constraint::with_options(vocabulary.clone(), &format, &compact()).unwrap();
    assert_eq!(feed(&mut compact, " ["), Err(0));
    assert_eq!(feed(&mut compact, "[ "), Err(1));

    let three = ConstraintOptions { json_whitespace: 3 };
    let mut spaced = Constraint::with_options(vocabulary.clone(), &format, &three).unwrap();
    feed(&mut spaced, "[ \t null ,\n\nnull\n ]").unwrap();
    // Whitespace goes between tokens of JSON only: the closing bracket ends the output.
    assert!(spaced.is_finished());

    for (text, refused_at) in [("[    null]", 4), (" [null]", 0), ("[null] ", 6)] {
        let mut spaced = Constraint::with_options(vocabulary.clone(), &format, &three).unwrap();
        assert_eq!(feed(&mut spaced, text), Err(refused_at), "{text:?}");
    }
}

#[test]
fn forced_text_uses_the_tokenizers_own_tokens() {
    let Some((tokenizer, vocabulary)) = crate::support::llama3() else {
        return;
    };
    let text = r#"{"greeting":"Hello, world!","count":3}"#;
    let format = Format::JsonSchema(json!({"const": {"greeting": "Hello, world!", "count": 3}}));
    let mut constraint = Constraint::with_options(vocabulary.clone(), &format, &compact()).unwrap();
    let mut tokens = Vec::new();
    while !constraint.is_finished() {
        let allowed: Vec<u32> = constraint.allowed_tokens().unwrap().iter().collect();
        assert_eq!(allowed.len(), 1, "only one way on after {tokens:?}");
        constraint.accept(allowed[0]).unwrap();
        tokens.push(allowed[0]);
    }
    assert_eq!(vocabulary.decode(&tokens), text);
    let encoded = tokenizer.encode(text, false).unwrap();
    assert_eq!(tokens, encoded.get_ids());
}

#[test]
fn logits_outside_the_set_become_negative_infinity() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let format = Format::JsonSchema(json!({"enum": ["yes", "no"]}));
    let mut constraint = Constraint::with_options(vocabulary.clone(), &format, &compact()).unwrap();
    feed(&mut constraint, "\"").unwrap();
    // Models often pad their output layer past the tokenizer's vocabulary.
    let mut logits = vec![1.0f32; vocabulary.size() + 64];
    constraint.apply_to_logits(&mut logits).unwrap();
    let allowed = constraint.allowed_tokens().unwrap();
    for (token, logit) in logits.iter().enumerate() {
        let token = token as u32;
        assert_eq!(*logit == 1.0, allowed.contains(token), "token {token}");
    }
    let survivors: Vec<String> = allowed.iter().map(|t| vocabulary.decode(&[t])).collect();
    assert!(
        survivors
            .iter()
            .all(|s| "yes\"".starts_with(s.as_str()) || "no\"".starts_with(s.as_str())),
        "{survivors:?}"
    );
}
