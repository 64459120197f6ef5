//! A reader for the `[name(key=value, ...), ...]` tool-call syntax of Llama
//! 3.2/3.3. The values are Python literals, so this accepts what Python's
//! `ast.literal_eval` would for the common cases (strings, numbers,
//! `True`/`False`/`None`, lists, tuples, dicts) and turns them into JSON.
//! JSON's own `true`/`false`/`null` are accepted too because small models mix
//! the two syntaxes.

use serde_json::{Map, Number, Value};

/// One call from the list: the function name and its keyword arguments.
pub type PythonCall = (String, Map<String, Value>);

/// The calls in `text` if the whole of it is a non-empty list of calls with
/// keyword arguments only; `None` otherwise.
pub fn parse_call_list(text: &str) -> Option<Vec<PythonCall>> {
    let mut reader = Reader {
        text: text.trim(),
        pos: 0,
    };
    let calls = reader.call_list()?;
    reader.skip_ws();
    (reader.pos == reader.text.len() && !calls.is_empty()).then_some(calls)
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Items separated by commas up to `close`, allowing a trailing comma as
    /// Python does.
    fn sequence<T>(
        &mut self,
        close: char,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(close) {
                return Some(items);
            }
            items.push(item(self)?);
            self.skip_ws();
            if self.eat(close) {
                return Some(items);
            }
            if !self.eat(',') {
                return None;
            }
        }
    }

    fn call_list(&mut self) -> Option<Vec<PythonCall>> {
        self.skip_ws();
        if !self.eat('[') {
            return None;
        }
        self.sequence(']', Self::call)
    }

    fn call(&mut self) -> Option<PythonCall> {
        let name = self.identifier()?;
        self.skip_ws();
        if !self.eat('(') {
            return None;
        }
        let pairs = self.sequence(')', |r| {
            let key = r.identifier()?;
            r.skip_ws();
            if !r.eat('=') || r.peek() == Some('=') {
                return None;
            }
            r.skip_ws();
            Some((key, r.value()?))
        })?;
        Some((name, pairs.into_iter().collect()))
    }

    fn identifier(&mut self) -> Option<String> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c == '_' || c.is_alphabetic() => self.bump(),
            _ => return None,
        };
        while self.peek().is_some_and(|c| c == '_' || c.is_alphanumeric()) {
            self.bump();
        }
        Some(self.text[start..self.pos].to_string())
    }

    fn value(&mut self) -> Option<Value> {
        self.skip_ws();
        match self.peek()? {
            '\'' | '"' => {
                let mut s = self.string()?;
                // Python joins adjacent literals: "a" "b" == "ab".
                loop {
                    let save = self.pos;
                    self.skip_ws();
                    if matches!(self.peek(), Some('\'' | '"')) {
                        s.push_str(&self.string()?);
                    } else {
                        self.pos = save;
                        return Some(Value::String(s));
                    }
                }
            }
            '[' => {
                self.bump();
                Some(Value::Array(self.sequence(']', Self::value)?))
            }
            '(' => {
                self.bump();
                Some(Value::Array(self.sequence(')', Self::value)?))
            }
            '{' => {
                self.bump();
                let pairs = self.sequence('}', |r| {
                    let key = match r.value()? {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    r.skip_ws();
                    if !r.eat(':') {
                        return None;
                    }
                    Some((key, r.value()?))
                })?;
                Some(Value::Object(pairs.into_iter().collect()))
            }
            c if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => self.number(),
            _ => match self.identifier()?.as_str() {
                "True" | "true" => Some(Value::Bool(true)),
                "False" | "false" => Some(Value::Bool(false)),
                "None" | "null" => Some(Value::Null),
                _ => None,
            },
        }
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.bump()?;
        let mut out = String::new();
        loop {
            match self.bump()? {
                c if c == quote => return Some(out),
                '\n' => return None,
                '\\' => match self.bump()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    'x' => out.push(self.hex_escape(2)?),
                    'u' => out.push(self.hex_escape(4)?),
                    'U' => out.push(self.hex_escape(8)?),
                    '\n' => {}
                    c @ ('\\' | '\'' | '"') => out.push(c),
                    // Python keeps unknown escapes as written.
                    c => {
                        out.push('\\');
                        out.push(c);
                    }
                },
                c => out.push(c),
            }
        }
    }

    fn hex_escape(&mut self, digits: usize) -> Option<char> {
        let hex = self.text.get(self.pos..self.pos + digits)?;
        let code = u32::from_str_radix(hex, 16).ok()?;
        self.pos += digits;
        char::from_u32(code)
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.bump();
        }
        let mut is_float = false;
        while let Some(c) = self.peek() {
            match c {
                '0'..='9' | '_' => {}
                '.' | 'e' | 'E' => is_float = true,
                '-' | '+' if matches!(self.text[..self.pos].chars().last(), Some('e' | 'E')) => {}
                _ => break,
            }
            self.bump();
        }
        let literal: String = self.text[start..self.pos]
            .chars()
            .filter(|&c| c != '_')
            .collect();
        let literal = literal.strip_prefix('+').unwrap_or(&literal);
        if !is_float && let Ok(n) = literal.parse::<i64>() {
            return Some(Value::Number(n.into()));
        }
        let f: f64 = literal.parse().ok()?;
        Number::from_f64(f).map(Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> (String, Value) {
        let mut calls = parse_call_list(text).expect("parses");
        let (name, args) = calls.remove(0);
        (name, Value::Object(args))
    }

    #[test]
    fn reads_keyword_calls() {
        let (name, args) = one(r#"[get_weather(city="San Francisco", metric='celsius')]"#);
        assert_eq!(name, "get_weather");
        assert_eq!(args, json!({"city": "San Francisco", "metric": "celsius"}));
    }

    #[test]
    fn reads_python_literals() {
        let (_, args) = one(
            "[f(a=1, b=-2.5, c=True, d=False, e=None, g=[1, 'x'], h={'k': (1, 2)}, i=1e3, j='it\\'s', k=\"a\" 'b',)]",
        );
        assert_eq!(
            args,
            json!({"a": 1, "b": -2.5, "c": true, "d": false, "e": null, "g": [1, "x"],
                   "h": {"k": [1, 2]}, "i": 1000.0, "j": "it's", "k": "ab"})
        );
    }

    #[test]
    fn reads_several_calls_and_empty_arguments() {
        let calls = parse_call_list("[a(), b(x=1)]\n").unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0, "a");
        assert!(calls[0].1.is_empty());
        assert_eq!(calls[1].0, "b");
    }

    #[test]
    fn rejects_what_is_not_a_call_list() {
        for text in [
            "[]",
            "get_weather(city='SF')",
            "[get_weather('SF')]",
            "[get_weather(city=SF)]",
            "[get_weather(city='SF')] and more",
            "[x.y(a=1)]",
            "[f(a==1)]",
            "['unterminated]",
            "Sure! [f(a=1)]",
        ] {
            assert_eq!(parse_call_list(text), None, "{text}");
        }
    }
}
