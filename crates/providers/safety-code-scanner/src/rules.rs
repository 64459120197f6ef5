//! The rule catalogue: `rules/insecure_code.yaml`, embedded in the binary and compiled once.

use std::sync::LazyLock;

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Deserialize;

const RULES_YAML: &str = include_str!("../rules/insecure_code.yaml");

/// Compiled size limits, well above what the catalogue needs (a few MiB), so that a rule
/// added later fails a unit test rather than an arbitrary budget.
const REGEX_SIZE_LIMIT: usize = 64 << 20;
const DFA_SIZE_LIMIT: usize = 16 << 20;

/// How serious a finding is; moderation results turn it into BLOCK or WARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

/// One rule as written in the YAML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    description: String,
    severity: Severity,
    languages: Vec<String>,
    patterns: Vec<PatternSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternSpec {
    regex: String,
    #[serde(default)]
    unless: Option<String>,
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Stable kebab-case id, reported in `violation_type`.
    pub id: String,
    /// One sentence naming the weakness and its CWE.
    pub description: String,
    pub severity: Severity,
    /// Languages the patterns were written for (informative).
    pub languages: Vec<String>,
    pub(crate) patterns: Vec<Pattern>,
}

#[derive(Debug)]
pub(crate) struct Pattern {
    pub(crate) regex: Regex,
    /// A match is dropped when its line also matches this.
    pub(crate) unless: Option<Regex>,
}

/// Every rule plus one set over all their patterns, which tells in a single pass which
/// patterns can match at all.
#[derive(Debug)]
pub(crate) struct Catalogue {
    pub(crate) rules: Vec<Rule>,
    pub(crate) any_pattern: RegexSet,
    /// `any_pattern` index → (rule index, pattern index within the rule).
    pub(crate) pattern_owner: Vec<(usize, usize)>,
}

static CATALOGUE: LazyLock<Result<Catalogue, String>> = LazyLock::new(|| load(RULES_YAML));

/// The compiled catalogue, or why the embedded rule file could not be loaded.
pub(crate) fn catalogue() -> Result<&'static Catalogue, &'static str> {
    CATALOGUE.as_ref().map_err(String::as_str)
}

/// Every rule the scanner knows, in file order (empty when the rule file failed to load,
/// which the crate's tests rule out).
pub fn rules() -> &'static [Rule] {
    catalogue().map(|c| c.rules.as_slice()).unwrap_or_default()
}

fn builder(pattern: &str) -> RegexBuilder {
    let mut builder = RegexBuilder::new(pattern);
    // ASCII classes keep the automata small and the lazy DFA usable on non-ASCII text.
    builder
        .unicode(false)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT);
    builder
}

fn compile(pattern: &str, rule_id: &str) -> Result<Regex, String> {
    builder(pattern)
        .build()
        .map_err(|err| format!("rule {rule_id}: pattern {pattern:?} does not compile: {err}"))
}

pub(crate) fn load(yaml: &str) -> Result<Catalogue, String> {
    let specs: Vec<RuleSpec> =
        serde_norway::from_str(yaml).map_err(|err| format!("rule file: {err}"))?;
    let mut rules: Vec<Rule> = Vec::with_capacity(specs.len());
    let mut sources = Vec::new();
    let mut pattern_owner = Vec::new();
    for spec in specs {
        if !is_kebab_case(&spec.id) {
            return Err(format!("rule id {:?} is not kebab-case", spec.id));
        }
        if rules.iter().any(|r| r.id == spec.id) {
            return Err(format!("rule id {} appears twice", spec.id));
        }
        if spec.patterns.is_empty() {
            return Err(format!("rule {} has no patterns", spec.id));
        }
        if !spec.description.contains("CWE-") {
            return Err(format!("rule {}: the description names no CWE", spec.id));
        }
        let mut patterns = Vec::with_capacity(spec.patterns.len());
        for (index, pattern) in spec.patterns.iter().enumerate() {
            patterns.push(Pattern {
                regex: compile(&pattern.regex, &spec.id)?,
                unless: pattern
                    .unless
                    .as_deref()
                    .map(|p| compile(p, &spec.id))
                    .transpose()?,
            });
            sources.push(pattern.regex.clone());
            pattern_owner.push((rules.len(), index));
        }
        rules.push(Rule {
            id: spec.id,
            description: spec.description,
            severity: spec.severity,
            languages: spec.languages,
            patterns,
        });
    }
    let any_pattern = RegexSetBuilder::new(&sources)
        .unicode(false)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|err| format!("rule patterns do not compile as a set: {err}"))?;
    Ok(Catalogue {
        rules,
        any_pattern,
        pattern_owner,
    })
}

fn is_kebab_case(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && !id.ends_with('-')
        && !id.contains("--")
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_rules_load_and_compile() {
        let catalogue = catalogue().unwrap();
        assert!(catalogue.rules.len() >= 20);
        let mut ids: Vec<&str> = catalogue.rules.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), catalogue.rules.len(), "rule ids are unique");
        for rule in &catalogue.rules {
            assert!(
                !rule.languages.is_empty(),
                "{} lists its languages",
                rule.id
            );
            assert!(!rule.description.trim().is_empty());
        }
    }

    #[test]
    fn a_bad_rule_file_is_refused_with_a_reason() {
        let duplicate = "
- {id: a-rule, description: x (CWE-1), severity: error, languages: [c], patterns: [{regex: a}]}
- {id: a-rule, description: y (CWE-1), severity: error, languages: [c], patterns: [{regex: b}]}
";
        assert!(load(duplicate).unwrap_err().contains("twice"));
        let bad_regex = "
- {id: a-rule, description: x (CWE-1), severity: error, languages: [c], patterns: [{regex: '(a'}]}
";
        assert!(load(bad_regex).unwrap_err().contains("does not compile"));
        let bad_id = "
- {id: A_Rule, description: x (CWE-1), severity: error, languages: [c], patterns: [{regex: a}]}
";
        assert!(load(bad_id).unwrap_err().contains("kebab-case"));
        let no_cwe = "
- {id: a-rule, description: x, severity: error, languages: [c], patterns: [{regex: a}]}
";
        assert!(load(no_cwe).unwrap_err().contains("CWE"));
    }
}
