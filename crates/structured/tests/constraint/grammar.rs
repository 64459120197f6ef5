//! Grammars: llguidance's Lark dialect and llama.cpp's GBNF.

use llama_stack_structured::{Constraint, Format};
use regex::Regex;
use serde_json::Value;

use crate::support::{feed, random_walk, vocabulary};

const LIST_GBNF: &str = r#"
# Up to four items: letters, a quoted two-digit number, or x.
root ::= item ("," item){0,3}
item ::= [a-c]+ | "\"" [0-9]{2} "\"" | "x"
"#;

const LIST_LARK: &str = r#"
start: item ("," item){0,3}
item: /[a-c]+/ | "\"" /[0-9]{2}/ "\"" | "x"
"#;

const LIST_REGEX: &str = r#"^(?:[a-c]+|"[0-9]{2}"|x)(?:,(?:[a-c]+|"[0-9]{2}"|x)){0,3}$"#;

fn walk_against_regex(grammar: &str) {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let regex = Regex::new(LIST_REGEX).unwrap();
    let format = Format::Grammar(grammar.to_string());
    for seed in 0..50 {
        let mut constraint = Constraint::new(vocabulary.clone(), &format).unwrap();
        let walk = random_walk(&mut constraint, seed, 200, |text, eos_allowed| {
            assert_eq!(eos_allowed, regex.is_match(text), "seed {seed}: {text:?}");
        });
        assert!(walk.ended, "seed {seed}: {:?}", walk.text);
        assert!(regex.is_match(&walk.text), "seed {seed}: {:?}", walk.text);
    }
}

#[test]
fn lark_grammar() {
    walk_against_regex(LIST_LARK);
}

#[test]
fn gbnf_grammar() {
    walk_against_regex(LIST_GBNF);
}

/// llama.cpp's `grammars/json.gbnf`, as shipped.
const JSON_GBNF: &str = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-15])? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
"#;

#[test]
fn llama_cpp_json_gbnf() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let format = Format::Grammar(JSON_GBNF.to_string());
    let mut ended = 0;
    for seed in 0..50 {
        let mut constraint = Constraint::new(vocabulary.clone(), &format).unwrap();
        let walk = random_walk(&mut constraint, seed, 400, |text, eos_allowed| {
            if eos_allowed {
                let value: Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("seed {seed}: {text:?}: {e}"));
                assert!(value.is_object());
            }
        });
        ended += walk.ended as usize;
    }
    assert!(ended >= 45, "only {ended} of 50 walks ended");

    let mut constraint = Constraint::new(vocabulary.clone(), &format).unwrap();
    feed(&mut constraint, "{\"a\": [1.5, true, \"x\\u00e9\"]}").unwrap();
    assert!(constraint.can_finish().unwrap());
    let mut constraint = Constraint::new(vocabulary, &format).unwrap();
    assert_eq!(feed(&mut constraint, "{\"a\": 01}"), Err(7));
}

#[test]
fn grammar_errors_are_invalid_requests() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    for (grammar, needle) in [
        ("start: undefined_rule", "undefined_rule"),
        ("start: /(/", "regex"),
        ("root ::= item", "`item`, which is not defined"),
    ] {
        let error = Constraint::new(vocabulary.clone(), &Format::Grammar(grammar.into()))
            .expect_err(grammar);
        assert!(error.is_invalid_request(), "{grammar}: {error}");
        assert!(error.to_string().contains(needle), "{grammar}: {error}");
    }
}
