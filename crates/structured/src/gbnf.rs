//! GBNF (llama.cpp's grammar format) rewritten into llguidance's Lark dialect, which has the
//! same building blocks: quoted literals, character classes, grouping, alternation and the
//! `*`, `+`, `?`, `{m,n}` repetitions.

use std::collections::HashMap;
use std::fmt::Write;

use crate::Error;

/// Whether `grammar` is GBNF rather than Lark: only GBNF defines rules with `::=`.
pub(crate) fn looks_like_gbnf(grammar: &str) -> bool {
    grammar.contains("::=")
}

/// Rewrites a GBNF grammar (start rule `root`) as a Lark grammar (start rule `start`).
///
/// Rule names are lower-cased (upper-case names are terminals in Lark) and made unique.
/// Token references (`<[id]>`, `<|name|>`) are not supported.
pub fn gbnf_to_lark(gbnf: &str) -> Result<String, Error> {
    let tokens = lex(gbnf)?;
    let mut rules: Vec<(String, Vec<Token>)> = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        let (Token::Name(name), Some(Token::Define)) = (&tokens[index], tokens.get(index + 1))
        else {
            return Err(invalid(format!(
                "expected `name ::=` where {} begins",
                tokens[index].describe()
            )));
        };
        let body_start = index + 2;
        let mut end = body_start;
        while end < tokens.len()
            && !matches!(
                (&tokens[end], tokens.get(end + 1)),
                (Token::Name(_), Some(Token::Define))
            )
        {
            end += 1;
        }
        rules.push((name.clone(), tokens[body_start..end].to_vec()));
        index = end;
    }
    if !rules.iter().any(|(name, _)| name == "root") {
        return Err(invalid("the grammar has no `root` rule".into()));
    }

    let names = lark_names(rules.iter().map(|(name, _)| name.as_str()));
    let mut lark = String::new();
    for (name, body) in &rules {
        write!(lark, "{}:", names[name.as_str()]).expect("writing to a String");
        let mut empty_alternative = true;
        for token in body {
            lark.push(' ');
            match token {
                Token::Name(reference) => {
                    let Some(target) = names.get(reference.as_str()) else {
                        return Err(invalid(format!(
                            "rule `{name}` refers to `{reference}`, which is not defined"
                        )));
                    };
                    lark.push_str(target);
                }
                Token::Literal(text) => {
                    lark.push_str(&serde_json::to_string(text).expect("strings serialise"))
                }
                Token::Class(class) => write!(lark, "/{class}/").expect("writing to a String"),
                Token::AnyChar => lark.push_str("/(?s:.)/"),
                Token::Pipe if empty_alternative => lark.push_str("\"\" |"),
                Token::Pipe => lark.push('|'),
                Token::Open => lark.push('('),
                Token::Close => lark.push(')'),
                Token::Op(op) => {
                    lark.pop();
                    lark.push(*op);
                }
                Token::Repeat(min, max) => {
                    lark.pop();
                    match max {
                        Some(max) => write!(lark, "{{{min},{max}}}"),
                        None => write!(lark, "{{{min},}}"),
                    }
                    .expect("writing to a String");
                }
                Token::Define => unreachable!("rules are split at `::=`"),
            }
            empty_alternative = matches!(token, Token::Pipe | Token::Open);
        }
        if empty_alternative {
            lark.push_str(" \"\"");
        }
        lark.push('\n');
    }
    Ok(lark)
}

/// Lark names for GBNF ones: `root` is `start`, the rest lower-case, unique, and starting
/// with a letter.
fn lark_names<'a>(gbnf_names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, String> {
    let mut names = HashMap::new();
    let mut taken: Vec<String> = vec!["start".into()];
    for name in gbnf_names {
        if names.contains_key(name) {
            continue;
        }
        if name == "root" {
            names.insert(name, "start".to_string());
            continue;
        }
        let mut base = name.to_ascii_lowercase();
        if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
            base.insert_str(0, "r-");
        }
        let mut candidate = base.clone();
        let mut suffix = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}-{suffix}");
            suffix += 1;
        }
        taken.push(candidate.clone());
        names.insert(name, candidate);
    }
    names
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Define,
    /// The literal's text, escapes decoded.
    Literal(String),
    /// A character class as a regular expression, brackets included.
    Class(String),
    AnyChar,
    Pipe,
    Open,
    Close,
    Op(char),
    Repeat(u32, Option<u32>),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Name(name) => format!("`{name}`"),
            Token::Literal(text) => format!("the literal {text:?}"),
            other => format!("{other:?}"),
        }
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidFormat(format!("GBNF grammar: {message}"))
}

fn lex(source: &str) -> Result<Vec<Token>, Error> {
    let mut tokens = Vec::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            ':' if chars.next() == Some(':') && chars.next() == Some('=') => {
                tokens.push(Token::Define)
            }
            '"' => {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => text.push(escape(&mut chars)?),
                        Some(c) => text.push(c),
                        None => return Err(invalid("a literal is not closed".into())),
                    }
                }
                tokens.push(Token::Literal(text));
            }
            '[' => tokens.push(Token::Class(class(&mut chars)?)),
            '.' => tokens.push(Token::AnyChar),
            '|' => tokens.push(Token::Pipe),
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            '*' | '+' | '?' => tokens.push(Token::Op(c)),
            '{' => {
                let mut spec = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => spec.push(c),
                        None => return Err(invalid("a `{` repetition is not closed".into())),
                    }
                }
                tokens.push(repeat(&spec)?);
            }
            '<' => {
                return Err(invalid(
                    "token references (`<[id]>`, `<|name|>`) are not supported".into(),
                ));
            }
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                let mut name = String::from(c);
                while let Some(c) =
                    chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                {
                    name.push(c);
                }
                tokens.push(Token::Name(name));
            }
            other => return Err(invalid(format!("unexpected character {other:?}"))),
        }
    }
    if tokens.is_empty() {
        return Err(invalid("the grammar is empty".into()));
    }
    Ok(tokens)
}

fn repeat(spec: &str) -> Result<Token, Error> {
    let bad = || invalid(format!("bad repetition `{{{spec}}}`"));
    let number = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
    match spec.split_once(',') {
        None => {
            let n = number(spec)?;
            Ok(Token::Repeat(n, Some(n)))
        }
        Some((min, max)) => {
            let min = if min.trim().is_empty() {
                0
            } else {
                number(min)?
            };
            let max = if max.trim().is_empty() {
                None
            } else {
                Some(number(max)?)
            };
            if max.is_some_and(|max| max < min) {
                return Err(bad());
            }
            Ok(Token::Repeat(min, max))
        }
    }
}

/// After a backslash, in a literal or a class.
fn escape(chars: &mut impl Iterator<Item = char>) -> Result<char, Error> {
    let hex = |chars: &mut dyn Iterator<Item = char>, digits: usize| -> Result<char, Error> {
        let text: String = chars.take(digits).collect();
        u32::from_str_radix(&text, 16)
            .ok()
            .filter(|_| text.len() == digits)
            .and_then(char::from_u32)
            .ok_or_else(|| invalid(format!("bad escape with hex digits {text:?}")))
    };
    match chars.next() {
        Some('n') => Ok('\n'),
        Some('r') => Ok('\r'),
        Some('t') => Ok('\t'),
        Some('x') => hex(chars, 2),
        Some('u') => hex(chars, 4),
        Some('U') => hex(chars, 8),
        Some(c) => Ok(c),
        None => Err(invalid("the grammar ends with a backslash".into())),
    }
}

/// A `[...]` class (the `[` already read) as a regular expression, every member spelled as
/// `\x{..}` so that no character means anything special to the regex or to Lark's `/.../`.
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, Error> {
    let mut regex = String::from("[");
    if chars.next_if_eq(&'^').is_some() {
        regex.push('^');
    }
    let mut members = 0;
    loop {
        let c = match chars.next() {
            Some(']') => break,
            Some('\\') => escape(chars)?,
            Some(c) => c,
            None => return Err(invalid("a `[` class is not closed".into())),
        };
        write!(regex, "\\x{{{:x}}}", c as u32).expect("writing to a String");
        members += 1;
        if chars.peek() == Some(&'-') {
            chars.next();
            if chars.peek() == Some(&']') {
                // A trailing `-` is a member, not a range.
                regex.push_str("\\x{2d}");
                continue;
            }
            let end = match chars.next() {
                Some('\\') => escape(chars)?,
                Some(c) => c,
                None => return Err(invalid("a `[` class is not closed".into())),
            };
            write!(regex, "-\\x{{{:x}}}", end as u32).expect("writing to a String");
        }
    }
    if members == 0 {
        return Err(invalid("an empty `[]` class matches nothing".into()));
    }
    regex.push(']');
    Ok(regex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_rules_and_names() {
        let gbnf = r#"
            # a list of answers
            root   ::= answer ("," ws answer)*
            answer ::= "yes" | "no" | Maybe-Not{1,3}
            Maybe-Not ::= [a-z\]]+ "\x41\n"
            ws ::= [ \t]?
        "#;
        let lark = gbnf_to_lark(gbnf).unwrap();
        assert_eq!(
            lark,
            "start: answer ( \",\" ws answer )*\n\
             answer: \"yes\" | \"no\" | maybe-not{1,3}\n\
             maybe-not: /[\\x{61}-\\x{7a}\\x{5d}]/+ \"A\\n\"\n\
             ws: /[\\x{20}\\x{9}]/?\n"
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (gbnf, needle) in [
            ("rot ::= \"a\"", "no `root` rule"),
            ("root ::= item", "`item`, which is not defined"),
            ("root ::= \"a", "not closed"),
            ("root ::= <[42]>", "token references"),
            ("root ::= \"a\"{3,1}", "bad repetition"),
            ("\"a\" ::= x", "expected `name ::=`"),
        ] {
            let message = gbnf_to_lark(gbnf).unwrap_err().to_string();
            assert!(message.contains(needle), "{gbnf}: {message}");
        }
    }

    #[test]
    fn empty_alternatives_become_empty_strings() {
        let lark = gbnf_to_lark("root ::= \"a\" | \nx ::= ( | \"b\")").unwrap();
        assert_eq!(lark, "start: \"a\" | \"\"\nx: ( \"\" | \"b\" )\n");
    }
}
