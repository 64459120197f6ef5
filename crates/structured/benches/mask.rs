//! Time to compute one token mask over the Llama 3 vocabulary (128,256 tokens), step by step
//! along a realistic output, for a few formats; plus vocabulary build and compile times.
//!
//! `cargo bench -p llama-stack-structured --bench mask` (needs scripts/fetch-tokenizer.sh).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_stack_structured::{Constraint, Format, Vocabulary};
use serde_json::json;
use tokenizers::Tokenizer;

const ROUNDS: usize = 20;

fn main() {
    let path = std::env::var_os("LLAMA3_TOKENIZER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".llama/tokenizer/llama3/tokenizer.model")
        });
    let Ok(contents) = std::fs::read_to_string(&path) else {
        eprintln!(
            "skipped: the Llama 3 tokenizer is missing at {}: run scripts/fetch-tokenizer.sh",
            path.display()
        );
        return;
    };
    let json = llama_stack_llama3::hf_tokenizer_json_from_tiktoken(&contents).unwrap();
    let tokenizer: Tokenizer = serde_json::to_string(&json).unwrap().parse().unwrap();
    let started = Instant::now();
    let vocabulary =
        Arc::new(Vocabulary::from_tokenizer(&tokenizer, &llama_stack_llama3::STOP_TOKENS).unwrap());
    println!(
        "vocabulary: {} tokens, built in {:.0} ms",
        vocabulary.size(),
        started.elapsed().as_secs_f64() * 1e3
    );

    let cases = [
        (
            "flat object",
            Format::JsonSchema(json!({"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 40},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "born": {"type": "string", "format": "date"},
                "email": {"type": ["string", "null"]},
            }, "required": ["name", "age", "born"], "additionalProperties": false})),
            r#"{"name": "Ada Lovelace", "age": 36, "born": "1815-12-10", "email": null}"#,
        ),
        (
            "nested + enums",
            Format::JsonSchema(json!({"type": "object", "properties": {
                "city": {"type": "string"},
                "forecast": {"type": "array", "maxItems": 7, "items": {
                    "type": "object", "properties": {
                        "day": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
                        "high": {"type": "number"}, "low": {"type": "number"},
                        "sky": {"anyOf": [{"const": "clear"}, {"const": "cloudy"},
                                          {"type": "object", "properties": {
                                              "rain_mm": {"type": "number"}},
                                           "required": ["rain_mm"]}]},
                    }, "required": ["day", "high", "low", "sky"],
                    "additionalProperties": false}},
            }, "required": ["city", "forecast"], "additionalProperties": false})),
            r#"{"city": "Paris", "forecast": [{"day": "mon", "high": 21.5, "low": 12, "sky": "clear"}, {"day": "tue", "high": 19, "low": 11.25, "sky": {"rain_mm": 3.5}}]}"#,
        ),
        (
            "recursive $ref",
            Format::JsonSchema(json!({"$defs": {"node": {"type": "object", "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            }, "required": ["name"], "additionalProperties": false}},
            "$ref": "#/$defs/node"})),
            r#"{"name": "root", "children": [{"name": "a", "children": [{"name": "a1"}]}, {"name": "b"}]}"#,
        ),
        (
            "json_object",
            Format::JsonObject,
            r#"{"answer": "The capital of France is Paris.", "confidence": 0.97, "sources": ["wikipedia", "atlas"], "verified": true}"#,
        ),
        (
            "lark grammar",
            Format::Grammar(
                r#"
start: call ("; " call)*
call: NAME "(" (arg (", " arg)*)? ")"
arg: NAME "=" (NUMBER | STRING)
NAME: /[a-z_][a-z0-9_]*/
NUMBER: /-?[0-9]+(\.[0-9]+)?/
STRING: /"[^"\\]*"/
"#
                .into(),
            ),
            r#"get_weather(city="Paris", days=3); send_email(to="ada@example.com", subject="Forecast")"#,
        ),
    ];

    println!(
        "{:<16} {:>8} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "format", "compile", "1st mask", "steps", "mean", "p50", "p99", "max"
    );
    println!(
        "(1st mask: the first step of a request, which builds lexer states; the others: every later step)"
    );
    for (name, format, text) in &cases {
        let started = Instant::now();
        Constraint::new(vocabulary.clone(), format).unwrap();
        let compile = started.elapsed();
        let mut times = Vec::new();
        let mut first_steps = Vec::new();
        for _ in 0..ROUNDS {
            let mut constraint = Constraint::new(vocabulary.clone(), format).unwrap();
            let mut rest = text.as_bytes();
            loop {
                let started = Instant::now();
                let allowed = constraint.allowed_tokens().unwrap();
                if rest.len() == text.len() {
                    first_steps.push(started.elapsed());
                } else {
                    times.push(started.elapsed());
                }
                if rest.is_empty() {
                    break;
                }
                let token = allowed
                    .iter()
                    .filter_map(|t| Some((t, vocabulary.token_bytes(t)?)))
                    .filter(|(_, bytes)| !bytes.is_empty() && rest.starts_with(bytes))
                    .max_by_key(|(_, bytes)| bytes.len())
                    .map(|(t, bytes)| {
                        rest = &rest[bytes.len()..];
                        t
                    })
                    .unwrap_or_else(|| panic!("{name}: {text} is refused"));
                constraint.accept(token).unwrap();
            }
            assert!(
                constraint.can_finish().unwrap(),
                "{name}: output is not whole"
            );
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        let percentile = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
        println!(
            "{:<16} {:>6.2}ms {:>7.1}µs {:>6} {:>7.1}µs {:>7.1}µs {:>7.1}µs {:>7.1}µs",
            name,
            compile.as_secs_f64() * 1e3,
            micros(first_steps.iter().sum::<Duration>() / ROUNDS as u32),
            times.len() / ROUNDS,
            micros(mean),
            micros(percentile(0.5)),
            micros(percentile(0.99)),
            micros(*times.last().unwrap()),
        );
    }

    let mut constraint = Constraint::new(vocabulary.clone(), &Format::JsonObject).unwrap();
    let mut logits = vec![0.5f32; vocabulary.size()];
    constraint.allowed_tokens().unwrap();
    let started = Instant::now();
    for _ in 0..100 {
        constraint.apply_to_logits(&mut logits).unwrap();
    }
    println!("apply_to_logits: {:.1}µs", micros(started.elapsed() / 100));
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
