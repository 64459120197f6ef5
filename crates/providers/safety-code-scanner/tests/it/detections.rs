//! What the rules find, and what they must leave alone.

use llama_stack_provider_safety_code_scanner::{Finding, Scanner, rules};

use crate::corpus::{INSECURE, SAFE};

fn ids(text: &str) -> Vec<&'static str> {
    Scanner::new(&[])
        .unwrap()
        .scan(text)
        .iter()
        .map(Finding::id)
        .collect()
}

#[test]
fn insecure_snippets_give_exactly_the_expected_rules() {
    let failures: Vec<String> = INSECURE
        .iter()
        .filter_map(|case| {
            let found = ids(case.code);
            (found != case.expected).then(|| {
                format!(
                    "[{}] expected {:?}, found {:?}\n{}",
                    case.language, case.expected, found, case.code
                )
            })
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn safe_snippets_give_no_finding() {
    let failures: Vec<String> = SAFE
        .iter()
        .filter_map(|case| {
            let found = ids(case.code);
            (!found.is_empty())
                .then(|| format!("[{}] found {:?}\n{}", case.language, found, case.code))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_corpus_covers_every_language_and_every_rule() {
    for language in [
        "python",
        "javascript",
        "typescript",
        "java",
        "go",
        "c",
        "php",
        "ruby",
        "shell",
    ] {
        assert!(
            INSECURE.iter().any(|c| c.language == language),
            "an insecure {language} snippet"
        );
        assert!(
            SAFE.iter().any(|c| c.language == language),
            "a safe {language} snippet"
        );
    }
    assert!(SAFE.len() >= 25);
    for rule in rules() {
        assert!(
            INSECURE
                .iter()
                .any(|c| c.expected.contains(&rule.id.as_str())),
            "no insecure snippet exercises {}",
            rule.id
        );
    }
}

#[test]
fn all_safe_code_together_gives_no_finding() {
    // Joined, patterns may reach across snippet boundaries, as they would in a long reply.
    let joined: String = SAFE.iter().map(|c| c.code).collect::<Vec<_>>().join("\n");
    assert_eq!(ids(&joined), Vec::<&str>::new());
}

#[test]
fn placeholders_and_short_values_are_not_credentials() {
    for code in [
        r#"password = "changeme""#,
        r#"API_KEY = "<your-api-key>""#,
        r#"api_key = "YOUR_API_KEY_HERE""#,
        r#"secret = "${SECRET}""#,
        r#"password = "********""#,
        r#"password = "hunter2""#,
        r#"aws_access_key_id = "AKIAIOSFODNN7EXAMPLE""#,
        "-----BEGIN PRIVATE KEY-----\n<paste your key here>\n-----END PRIVATE KEY-----",
    ] {
        assert_eq!(ids(code), Vec::<&str>::new(), "{code}");
    }
}

#[test]
fn non_ascii_text_is_scanned() {
    let text = "# Überprüfung – 検証\nresultat = eval(entrée_utilisateur)\n";
    assert_eq!(ids(text), ["eval-injection"]);
}
