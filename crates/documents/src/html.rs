//! HTML to plain text: the words a reader sees, in reading order, with block elements on
//! their own lines. Scripts, styles, `<head>` and other non-content elements are dropped.

use scraper::{Html, Node};

/// Elements whose content is never shown as text.
const SKIPPED: &[&str] = &[
    "head", "script", "style", "noscript", "template", "iframe", "object", "embed", "svg",
    "canvas", "title", "meta", "link",
];

/// Elements set off by a blank line.
const PARAGRAPHS: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "blockquote",
    "table",
    "ul",
    "ol",
    "dl",
    "figure",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "aside",
    "nav",
    "form",
    "fieldset",
    "address",
    "details",
];

/// Elements that start a new line.
const LINES: &[&str] = &[
    "div",
    "li",
    "tr",
    "br",
    "dt",
    "dd",
    "caption",
    "figcaption",
    "summary",
    "option",
    "legend",
];

/// The visible text of an HTML document or fragment.
pub(crate) fn html_to_text(html: &str) -> String {
    let document = Html::parse_document(html);
    let mut out = TextBuilder::default();
    // An explicit stack: deeply nested markup must not overflow the call stack.
    enum Step<'a> {
        Enter(ego_tree::NodeRef<'a, Node>),
        Leave(Break, bool),
    }
    let mut stack = vec![Step::Enter(document.tree.root())];
    let mut in_pre = 0usize;
    while let Some(step) = stack.pop() {
        match step {
            Step::Leave(brk, was_pre) => {
                if was_pre {
                    in_pre -= 1;
                }
                out.break_line(brk);
            }
            Step::Enter(node) => match node.value() {
                Node::Text(text) => out.push_text(text, in_pre > 0),
                Node::Element(element) => {
                    let name = element.name();
                    if SKIPPED.contains(&name) {
                        continue;
                    }
                    let brk = if PARAGRAPHS.contains(&name) {
                        Break::Paragraph
                    } else if LINES.contains(&name) {
                        Break::Line
                    } else if matches!(name, "td" | "th") {
                        Break::Cell
                    } else {
                        Break::None
                    };
                    out.break_line(brk);
                    let is_pre = matches!(name, "pre" | "textarea");
                    if is_pre {
                        in_pre += 1;
                    }
                    stack.push(Step::Leave(brk, is_pre));
                    stack.extend(node.children().rev().map(Step::Enter));
                }
                Node::Document | Node::Fragment => {
                    stack.extend(node.children().rev().map(Step::Enter));
                }
                _ => {}
            },
        }
    }
    out.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    None,
    Cell,
    Line,
    Paragraph,
}

#[derive(Default)]
struct TextBuilder {
    out: String,
    pending_space: bool,
}

impl TextBuilder {
    fn push_text(&mut self, text: &str, preformatted: bool) {
        if preformatted {
            self.pending_space = false;
            self.out.push_str(text);
            return;
        }
        for c in text.chars() {
            if c.is_whitespace() {
                self.pending_space = true;
                continue;
            }
            if self.pending_space && !self.out.is_empty() && !self.out.ends_with(['\n', ' ']) {
                self.out.push(' ');
            }
            self.pending_space = false;
            self.out.push(c);
        }
    }

    fn break_line(&mut self, brk: Break) {
        match brk {
            Break::None => {}
            Break::Cell => self.pending_space = true,
            Break::Line | Break::Paragraph => {
                self.pending_space = false;
                let trimmed = self.out.trim_end_matches([' ', '\t']).len();
                self.out.truncate(trimmed);
                if self.out.is_empty() {
                    return;
                }
                let wanted = if brk == Break::Paragraph { 2 } else { 1 };
                let have = self.out.len() - self.out.trim_end_matches('\n').len();
                for _ in have..wanted {
                    self.out.push('\n');
                }
            }
        }
    }

    fn finish(self) -> String {
        self.out.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_styles_and_head_are_dropped() {
        let html = r#"<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style>
            <script>var secret = 1;</script></head>
            <body><h1>Heading</h1><p>First   paragraph
            with <b>bold</b> text.</p><script>alert("x")</script><noscript>enable js</noscript>
            <ul><li>one</li><li>two</li></ul><div>a<br>b</div>
            <pre>  keep
  spacing</pre><table><tr><td>c1</td><td>c2</td></tr></table></body></html>"#;
        let text = html_to_text(html);
        assert_eq!(
            text,
            "Heading\n\nFirst paragraph with bold text.\n\none\ntwo\n\na\nb\n\n  keep\n  spacing\n\nc1 c2"
        );
    }

    #[test]
    fn entities_are_decoded_and_fragments_work() {
        assert_eq!(html_to_text("Fish &amp; chips &lt;3"), "Fish & chips <3");
        assert_eq!(html_to_text(""), "");
    }
}
