//! Runs the rule catalogue over a text.

use llama_stack_core::{Error, Result};

use crate::rules::{Catalogue, Rule, Severity, catalogue};

/// One rule that matched, at its first position in the text.
#[derive(Debug, Clone, Copy)]
pub struct Finding {
    pub rule: &'static Rule,
    /// Byte offset of the first match.
    pub offset: usize,
    /// 1-based line of the first match.
    pub line: usize,
}

impl Finding {
    pub fn id(&self) -> &'static str {
        &self.rule.id
    }

    pub fn severity(&self) -> Severity {
        self.rule.severity
    }
}

/// The catalogue with some rules switched off.
#[derive(Debug, Clone)]
pub struct Scanner {
    catalogue: &'static Catalogue,
    /// Indexed like `catalogue.rules`.
    enabled: Vec<bool>,
}

impl Scanner {
    /// A scanner running every rule except `disabled_rules`; an unknown id is an error.
    pub fn new(disabled_rules: &[String]) -> Result<Self> {
        let catalogue = catalogue()
            .map_err(|why| Error::internal(format!("the built-in code-scanner rules: {why}")))?;
        let mut enabled = vec![true; catalogue.rules.len()];
        for id in disabled_rules {
            let Some(index) = catalogue.rules.iter().position(|r| &r.id == id) else {
                return Err(Error::invalid(format!(
                    "unknown code-scanner rule id `{id}`; known ids: {}",
                    known_rule_ids().join(", ")
                )));
            };
            enabled[index] = false;
        }
        Ok(Scanner { catalogue, enabled })
    }

    /// Every enabled rule that matches `text`, each once, ordered by where it first matches.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let bytes = text.as_bytes();
        // Per rule: the earliest offset among its patterns.
        let mut first: Vec<Option<usize>> = vec![None; self.catalogue.rules.len()];
        for set_index in self.catalogue.any_pattern.matches(bytes).iter() {
            let (rule_index, pattern_index) = self.catalogue.pattern_owner[set_index];
            if !self.enabled[rule_index] {
                continue;
            }
            let pattern = &self.catalogue.rules[rule_index].patterns[pattern_index];
            let found = pattern.regex.find_iter(bytes).find_map(|m| {
                // A pattern may open with the character before a name (`[^.\w]eval`); when
                // that is a line break, the finding belongs to the next line.
                let start = m.start()
                    + m.as_bytes()
                        .iter()
                        .take_while(|b| b.is_ascii_whitespace())
                        .count();
                let excluded = pattern
                    .unless
                    .as_ref()
                    .is_some_and(|unless| unless.is_match(lines_around(bytes, start, m.end())));
                (!excluded).then_some(start)
            });
            if let Some(offset) = found {
                let slot = &mut first[rule_index];
                *slot = Some(slot.map_or(offset, |seen| seen.min(offset)));
            }
        }
        let mut findings: Vec<Finding> = first
            .iter()
            .enumerate()
            .filter_map(|(index, offset)| {
                offset.map(|offset| Finding {
                    rule: &self.catalogue.rules[index],
                    offset,
                    line: 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count(),
                })
            })
            .collect();
        // Stable: rules matching at the same offset keep file order.
        findings.sort_by_key(|f| f.offset);
        findings
    }
}

/// The ids of every rule, in file order.
pub fn known_rule_ids() -> Vec<&'static str> {
    crate::rules::rules()
        .iter()
        .map(|r| r.id.as_str())
        .collect()
}

/// The whole lines spanned by `start..end`, without the final line break.
fn lines_around(bytes: &[u8], start: usize, end: usize) -> &[u8] {
    let first = bytes[..start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let end = end.max(start);
    let last = bytes[end..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| end + i);
    &bytes[first..last]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<&'static str> {
        Scanner::new(&[])
            .unwrap()
            .scan(text)
            .iter()
            .map(Finding::id)
            .collect()
    }

    #[test]
    fn findings_are_ordered_by_first_match_and_reported_once() {
        let text = "x = yaml.load(s)\nh = hashlib.md5(b)\ny = yaml.load(t)\n";
        assert_eq!(ids(text), ["unsafe-yaml-load", "weak-hash-md5"]);
        let findings = Scanner::new(&[]).unwrap().scan(text);
        assert_eq!((findings[0].offset, findings[0].line), (4, 1));
        assert_eq!(findings[1].line, 2);
    }

    #[test]
    fn an_excluded_line_does_not_hide_a_later_match() {
        let text = "a = yaml.load(s, Loader=yaml.SafeLoader)\nb = yaml.load(t)\n";
        let findings = Scanner::new(&[]).unwrap().scan(text);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].line, 2);
    }

    #[test]
    fn disabled_rules_are_skipped_and_unknown_ids_refused() {
        let scanner = Scanner::new(&["weak-hash-md5".to_string()]).unwrap();
        assert!(scanner.scan("hashlib.md5(b).hexdigest()").is_empty());
        let err = Scanner::new(&["no-such-rule".to_string()]).unwrap_err();
        assert!(err.to_string().contains("no-such-rule"));
    }

    #[test]
    fn lines_around_covers_whole_lines() {
        assert_eq!(lines_around(b"abc", 1, 2), b"abc");
        assert_eq!(lines_around(b"a\nbc\nd", 3, 3), b"bc");
        assert_eq!(lines_around(b"a\nbc\nde\nf", 3, 7), b"bc\nde");
        assert_eq!(lines_around(b"a\n", 2, 2), b"");
    }

    #[test]
    fn an_exception_on_a_later_line_of_the_same_call_counts() {
        let text = "digest = hashlib.md5(\n    data,\n    usedforsecurity=False,\n).hexdigest()\n";
        assert!(Scanner::new(&[]).unwrap().scan(text).is_empty());
    }
}
