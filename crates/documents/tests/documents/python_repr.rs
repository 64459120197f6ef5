//! `python_repr` against the real CPython: the same JSON through `repr(json.loads(...))`.

use std::process::Command;

use llama_stack_documents::python_repr;
use serde_json::{Value, json};

fn values() -> Vec<Value> {
    let mut values = vec![
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(-17),
        json!(9007199254740993u64),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("plain"),
        json!("it's"),
        json!("say \"hi\""),
        json!("both ' and \""),
        json!("back\\slash\ttab\nnewline\rreturn"),
        json!("\u{0}\u{1}\u{1b}\u{1f}\u{7f}\u{80}\u{9f}\u{a0}\u{ad}"),
        json!("é ü ñ 中文 日本語 🦙 Ελληνικά"),
        json!("\u{200b}\u{200e}\u{2028}\u{2029}\u{3000}\u{feff}\u{e000}\u{fffe}"),
        json!("\u{1d400}\u{1f600}\u{e0001}\u{f0000}\u{10ffff}"),
        json!([]),
        json!({}),
        json!([1, [2, [3, []]], {"a": {}}]),
        json!({"document_id": "doc-1", "token_count": 512, "metadata_token_count": 12,
               "author": "O'Brien", "tags": ["a", "b"], "score": 0.5, "nested": {"x": null}}),
    ];
    for f in [
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.1,
        0.2,
        0.30000000000000004,
        1.0 / 3.0,
        2.0 / 3.0,
        1e-4,
        1e-5,
        1.5e-5,
        123456.789,
        1e15,
        1e16,
        1.0e17,
        9999999999999998.0,
        12345678901234567.0,
        1.7976931348623157e308,
        5e-324,
        2.2250738585072014e-308,
        3.24159,
        100.0,
        1e22,
        6.02214076e23,
        -2.5e-10,
        0.000123,
        4.35,
        1234.5e-20,
    ] {
        values.push(json!(f));
    }
    // A spread of magnitudes and digit counts.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let f = f64::from_bits(x);
        if f.is_finite() {
            values.push(json!(f));
        }
        let scaled = (x % 1_000_000_007) as f64 / 10f64.powi((x % 40) as i32 - 20);
        values.push(json!(scaled));
    }
    values
}

#[test]
fn matches_cpython_repr() {
    let values = values();
    // Each value on one line as serde_json writes it, so Python sees the same key order.
    let input: String = values.iter().map(|v| format!("{v}\n")).collect();
    let script = "import json, sys\nfor line in sys.stdin.read().split(\"\\n\")[:-1]:\n    print(repr(json.loads(line)))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (it is part of the project's machine)");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let expected = String::from_utf8(output.stdout).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), values.len());
    for (value, python) in values.iter().zip(expected) {
        assert_eq!(python_repr(value), python, "for JSON {value}");
    }
}
