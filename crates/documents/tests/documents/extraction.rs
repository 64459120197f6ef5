//! `extract_text` on real documents: a PDF written here, HTML pages, text.

use llama_stack_documents::{DocumentError, extract_text};

/// A one-page PDF showing `lines` in Helvetica, with a correct cross-reference table.
fn pdf_with_lines(lines: &[&str]) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 72 720 Td 16 TL\n");
    for line in lines {
        content.push_str(&format!("({line}) Tj T*\n"));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
         /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_string(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

#[test]
fn a_pdf_yields_its_text_whatever_it_is_labelled() {
    let pdf = pdf_with_lines(&["Llamas live in the Andes.", "They hum to each other."]);
    let expected = words("Llamas live in the Andes. They hum to each other.");
    for (mime, name) in [
        (Some("application/pdf"), None),
        (None, Some("llamas.pdf")),
        (Some("application/octet-stream"), Some("upload")),
        (None, None),
    ] {
        let text = extract_text(&pdf, mime, name).unwrap();
        assert_eq!(words(&text), expected, "{mime:?} {name:?}: {text:?}");
    }
}

#[test]
fn a_truncated_pdf_is_invalid() {
    let pdf = pdf_with_lines(&["Some text"]);
    for cut in [pdf.len() / 3, pdf.len() / 2, pdf.len() - 30] {
        let err = extract_text(&pdf[..cut], Some("application/pdf"), Some("cut.pdf")).unwrap_err();
        assert!(matches!(err, DocumentError::Invalid(_)), "{err}");
    }
}

#[test]
fn html_pages_keep_only_visible_text() {
    let page = br#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Page title</title>
<style>body { font-family: serif }</style>
<script type="text/javascript">window.tracking = "do not index";</script></head>
<body><nav>Home | About</nav><main><h1>Llama facts</h1>
<p>Llamas are <em>social</em> animals &amp; live in herds.</p>
<script>document.write("hidden")</script></main></body></html>"#;
    let text = extract_text(page, Some("text/html; charset=utf-8"), None).unwrap();
    assert_eq!(
        text,
        "Home | About\n\nLlama facts\n\nLlamas are social animals & live in herds."
    );
    assert!(!text.contains("tracking") && !text.contains("hidden") && !text.contains("serif"));
    // Sniffed when nothing else says what it is.
    assert_eq!(extract_text(page, None, None).unwrap(), text);
}

#[test]
fn text_formats_are_kept_as_they_are() {
    let markdown = "# Title\n\n* item with `code`\n\n<b>inline html stays</b>\n";
    assert_eq!(
        extract_text(markdown.as_bytes(), Some("text/markdown"), None).unwrap(),
        markdown
    );
    assert_eq!(
        extract_text(markdown.as_bytes(), None, Some("README.md")).unwrap(),
        markdown
    );
    let csv = "name,age\nAlpaca,3\n";
    assert_eq!(
        extract_text(csv.as_bytes(), Some("text/csv"), None).unwrap(),
        csv
    );
    let json = r#"{"llama": true}"#;
    assert_eq!(
        extract_text(json.as_bytes(), Some("application/json"), None).unwrap(),
        json
    );
}
