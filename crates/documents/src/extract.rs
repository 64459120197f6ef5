//! The text of a document: plain text, markdown, JSON and CSV as they are, HTML without its
//! markup, PDF through its text layer.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::DocumentError;
use crate::html::html_to_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Html,
    Pdf,
}

/// The text of a document, its kind chosen by MIME type, then file name extension, then the
/// content itself (`%PDF-`, `<html`); anything else must decode as text. UTF-8 with a few
/// invalid bytes is decoded lossily; binary data is [`DocumentError::Invalid`].
pub fn extract_text(
    bytes: &[u8],
    mime_type: Option<&str>,
    file_name: Option<&str>,
) -> Result<String, DocumentError> {
    let mime = mime_type
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty());
    if let Some(mime) = &mime
        && is_binary_media(mime)
    {
        return Err(DocumentError::Invalid(format!(
            "cannot extract text from {}: {mime} is not a text document",
            describe(file_name)
        )));
    }
    let kind = mime
        .as_deref()
        .and_then(kind_of_mime)
        .or_else(|| file_name.and_then(kind_of_file_name))
        .or_else(|| sniff(bytes))
        .unwrap_or(Kind::Text);
    match kind {
        Kind::Pdf => pdf_text(bytes, file_name),
        Kind::Html => Ok(html_to_text(&decode_text(bytes, file_name)?)),
        Kind::Text => decode_text(bytes, file_name),
    }
}

fn describe(file_name: Option<&str>) -> String {
    match file_name {
        Some(name) if !name.is_empty() => format!("`{name}`"),
        _ => "the document".to_string(),
    }
}

/// Images, audio and video have no text to extract; saying so beats returning noise.
fn is_binary_media(mime: &str) -> bool {
    ["image/", "audio/", "video/", "font/"]
        .iter()
        .any(|prefix| mime.starts_with(prefix))
        || matches!(
            mime,
            "application/zip" | "application/gzip" | "application/x-tar" | "application/wasm"
        )
}

fn kind_of_mime(mime: &str) -> Option<Kind> {
    match mime {
        "application/pdf" | "application/x-pdf" => Some(Kind::Pdf),
        "text/html" | "application/xhtml+xml" => Some(Kind::Html),
        m if m.starts_with("text/") => Some(Kind::Text),
        m if m.ends_with("+json") || m.ends_with("+xml") => Some(Kind::Text),
        "application/json"
        | "application/x-ndjson"
        | "application/jsonl"
        | "application/xml"
        | "application/yaml"
        | "application/x-yaml"
        | "application/csv"
        | "application/javascript"
        | "application/x-sh"
        | "application/toml" => Some(Kind::Text),
        // `application/octet-stream` and unknown types say nothing; look further.
        _ => None,
    }
}

fn kind_of_file_name(name: &str) -> Option<Kind> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match extension.as_str() {
        "pdf" => Some(Kind::Pdf),
        "html" | "htm" | "xhtml" => Some(Kind::Html),
        "txt" | "text" | "md" | "markdown" | "rst" | "csv" | "tsv" | "json" | "jsonl"
        | "ndjson" | "xml" | "yaml" | "yml" | "toml" | "ini" | "log" | "py" | "rs" | "js"
        | "ts" | "java" | "c" | "h" | "cpp" | "go" | "sh" | "sql" | "tex" => Some(Kind::Text),
        _ => None,
    }
}

fn sniff(bytes: &[u8]) -> Option<Kind> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let head = &bytes[start..bytes.len().min(start + 1024)];
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    if head.starts_with(b"%PDF-") {
        return Some(Kind::Pdf);
    }
    let lower = head.to_ascii_lowercase();
    let contains = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if lower.starts_with(b"<!doctype html") || contains(b"<html") {
        return Some(Kind::Html);
    }
    None
}

/// Bytes as text: UTF-8 (a BOM dropped), UTF-16 with a BOM, or UTF-8 with a few invalid
/// bytes replaced. Refuses what is clearly binary.
fn decode_text(bytes: &[u8], file_name: Option<&str>) -> Result<String, DocumentError> {
    if let Some((encoding, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        return Ok(text.into_owned());
    }
    let not_text = || {
        DocumentError::Invalid(format!(
            "{} is not a text document (it looks like binary data); upload plain text, \
             markdown, HTML or PDF, or give its mime_type",
            describe(file_name)
        ))
    };
    if bytes.contains(&0) {
        return Err(not_text());
    }
    let text = String::from_utf8_lossy(bytes);
    let total = text.chars().count().max(1);
    let odd = text
        .chars()
        .filter(|&c| {
            c == '\u{fffd}' || (c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c'))
        })
        .count();
    // A stray Latin-1 byte in a UTF-8 text is common; a fifth of the text being garbage is not.
    if odd * 5 > total {
        return Err(not_text());
    }
    Ok(text.into_owned())
}

/// The PDF's text layer. pdf-extract can panic on malformed files; that is turned into an
/// error, never allowed to take the caller down.
fn pdf_text(bytes: &[u8], file_name: Option<&str>) -> Result<String, DocumentError> {
    let name = describe(file_name);
    let result = catch_unwind(AssertUnwindSafe(|| {
        pdf_extract::extract_text_from_mem(bytes)
    }));
    let text = match result {
        Ok(Ok(text)) => text,
        Ok(Err(err)) => {
            return Err(DocumentError::Invalid(format!(
                "cannot read {name} as a PDF: {err}"
            )));
        }
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the PDF reader failed");
            return Err(DocumentError::Invalid(format!(
                "cannot read {name} as a PDF (it may be damaged or use unsupported features): {detail}"
            )));
        }
    };
    if text.trim().is_empty() {
        return Err(DocumentError::Invalid(format!(
            "{name} is a PDF without a text layer (a scan?); run OCR on it first"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_by_mime_then_name_then_content() {
        assert_eq!(
            extract_text(b"# Title\n\nbody", Some("text/markdown"), None).unwrap(),
            "# Title\n\nbody"
        );
        let html = b"<html><body><p>Hi</p><script>x()</script></body></html>";
        assert_eq!(extract_text(html, Some("text/html"), None).unwrap(), "Hi");
        assert_eq!(extract_text(html, None, Some("page.HTM")).unwrap(), "Hi");
        assert_eq!(
            extract_text(html, Some("application/octet-stream"), None).unwrap(),
            "Hi"
        );
        // An explicit text type wins over the content.
        assert!(
            extract_text(html, Some("text/plain"), None)
                .unwrap()
                .contains("<script>")
        );
        assert_eq!(
            extract_text(b"a,b\n1,2\n", None, Some("t.csv")).unwrap(),
            "a,b\n1,2\n"
        );
        assert_eq!(
            extract_text(
                br#"{"a": 1}"#,
                Some("application/json; charset=utf-8"),
                None
            )
            .unwrap(),
            r#"{"a": 1}"#
        );
    }

    #[test]
    fn byte_order_marks_and_lossy_utf8() {
        assert_eq!(
            extract_text(b"\xef\xbb\xbfhello", None, None).unwrap(),
            "hello"
        );
        assert_eq!(extract_text(b"\xff\xfeh\0i\0", None, None).unwrap(), "hi");
        assert_eq!(
            extract_text(b"caf\xe9 au lait", None, None).unwrap(),
            "caf\u{fffd} au lait"
        );
    }

    #[test]
    fn binary_data_is_refused() {
        let garbage: Vec<u8> = (0..2048u32).map(|i| (i * 7919 % 251) as u8).collect();
        let err = extract_text(&garbage, None, Some("blob.bin")).unwrap_err();
        assert!(err.to_string().contains("not a text document"), "{err}");
        let err = extract_text(b"\x89PNG\r\n", Some("image/png"), None).unwrap_err();
        assert!(err.to_string().contains("image/png"), "{err}");
    }

    #[test]
    fn a_broken_pdf_is_an_error_not_a_panic() {
        for bytes in [
            &b"%PDF-1.4\n garbage"[..],
            b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
            b"%PDF-",
        ] {
            let err = extract_text(bytes, Some("application/pdf"), Some("x.pdf")).unwrap_err();
            assert!(matches!(err, DocumentError::Invalid(_)), "{err}");
            assert!(err.to_string().contains("x.pdf"), "{err}");
        }
    }
}
