//! `data:` URLs (RFC 2397) and the charset conversion shared with `http(s)` loading.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::{DocumentError, Loaded};

/// Decodes a `data:[<mediatype>][;base64],<data>` URL. The payload is percent-decoded
/// first (so `%2B` in a base64 payload works), then base64-decoded when marked so.
pub(crate) fn parse_data_url(uri: &str) -> Result<Loaded, DocumentError> {
    let rest = uri
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("data:"))
        .map(|_| &uri[5..])
        .ok_or_else(|| DocumentError::Invalid(format!("{} is not a data URL", shorten(uri))))?;
    let (header, payload) = rest.split_once(',').ok_or_else(|| {
        DocumentError::Invalid(format!(
            "the data URL {} has no `,` before its payload; expected data:<mime type>[;base64],<data>",
            shorten(uri)
        ))
    })?;

    let mut parts: Vec<&str> = header.split(';').map(str::trim).collect();
    let is_base64 = parts
        .last()
        .is_some_and(|last| last.eq_ignore_ascii_case("base64"));
    if is_base64 {
        parts.pop();
    }
    let mut mime_type = None;
    let mut charset = None;
    for (index, part) in parts.iter().enumerate() {
        if index == 0 && !part.contains('=') {
            if !part.is_empty() {
                mime_type = Some(part.to_ascii_lowercase());
            }
        } else if let Some((key, value)) = part.split_once('=')
            && key.trim().eq_ignore_ascii_case("charset")
        {
            charset = Some(value.trim().trim_matches('"').to_string());
        }
    }
    // RFC 2397: an omitted media type means text/plain.
    let mime_type = mime_type.unwrap_or_else(|| "text/plain".to_string());

    let raw = percent_decode(payload.as_bytes());
    let bytes = if is_base64 {
        decode_base64(&raw).map_err(|e| {
            DocumentError::Invalid(format!(
                "the data URL {} is marked base64 but its payload is not valid base64: {e}",
                shorten(uri)
            ))
        })?
    } else {
        raw
    };
    let bytes = to_utf8(bytes, &mime_type, charset.as_deref())?;
    Ok(Loaded {
        bytes,
        mime_type: Some(mime_type),
    })
}

/// Standard or URL-safe alphabet, padding optional, ASCII whitespace ignored: data URLs in the
/// wild are written by hand and by every kind of encoder.
fn decode_base64(raw: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    standard.decode(&compact).or_else(|err| {
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, config)
            .decode(&compact)
            .map_err(|_| err)
    })
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                input.get(i + 1).copied().and_then(hex),
                input.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// Converts text declared in another charset (`charset=iso-8859-1`) to UTF-8, so extraction
/// sees one encoding. Binary types are left alone whatever they declare.
pub(crate) fn to_utf8(
    bytes: Vec<u8>,
    mime_type: &str,
    charset: Option<&str>,
) -> Result<Vec<u8>, DocumentError> {
    let Some(label) = charset.filter(|c| !c.is_empty()) else {
        return Ok(bytes);
    };
    if !is_textual(mime_type) {
        return Ok(bytes);
    }
    let encoding = encoding_rs::Encoding::for_label(label.as_bytes()).ok_or_else(|| {
        DocumentError::Invalid(format!(
            "unknown charset `{label}`; use a charset such as utf-8 or iso-8859-1"
        ))
    })?;
    if encoding == encoding_rs::UTF_8 {
        return Ok(bytes);
    }
    let (text, _, _) = encoding.decode(&bytes);
    Ok(text.into_owned().into_bytes())
}

fn is_textual(mime_type: &str) -> bool {
    mime_type.starts_with("text/")
        || mime_type.ends_with("+json")
        || mime_type.ends_with("+xml")
        || matches!(
            mime_type,
            "application/json" | "application/xml" | "application/xhtml+xml"
        )
}

/// The start of a long URI, for messages (data URLs can be megabytes long).
pub(crate) fn shorten(uri: &str) -> String {
    const MAX: usize = 80;
    if uri.len() <= MAX {
        return uri.to_string();
    }
    let mut end = MAX;
    while !uri.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &uri[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_percent_encoded_payloads() {
        let loaded = parse_data_url("data:text/plain;base64,aGVsbG8gd29ybGQ=").unwrap();
        assert_eq!(loaded.bytes, b"hello world");
        assert_eq!(loaded.mime_type.as_deref(), Some("text/plain"));

        let loaded = parse_data_url("data:text/markdown,%23%20Title%0Abody").unwrap();
        assert_eq!(loaded.bytes, b"# Title\nbody");
        assert_eq!(loaded.mime_type.as_deref(), Some("text/markdown"));

        let loaded = parse_data_url("data:,plain").unwrap();
        assert_eq!(loaded.mime_type.as_deref(), Some("text/plain"));

        // Unpadded, URL-safe, with whitespace and a percent-encoded `+`.
        let loaded = parse_data_url("data:application/pdf;base64,JVBE Ri0x").unwrap();
        assert_eq!(loaded.bytes, b"%PDF-1");
        let loaded = parse_data_url("data:;base64,-_8").unwrap();
        assert_eq!(loaded.bytes, [0xfb, 0xff]);
        let loaded = parse_data_url("data:;base64,%2B%2F8%3D").unwrap();
        assert_eq!(loaded.bytes, [0xfb, 0xff]);
    }

    #[test]
    fn charset_is_converted_to_utf8() {
        let loaded = parse_data_url("data:text/plain;charset=iso-8859-1,caf%E9").unwrap();
        assert_eq!(String::from_utf8(loaded.bytes).unwrap(), "café");
        let err = parse_data_url("data:text/plain;charset=klingon,x").unwrap_err();
        assert!(err.to_string().contains("klingon"), "{err}");
    }

    #[test]
    fn malformed_data_urls_are_invalid() {
        assert!(matches!(
            parse_data_url("data:text/plain;base64"),
            Err(DocumentError::Invalid(_))
        ));
        let err = parse_data_url("data:text/plain;base64,!!!").unwrap_err();
        assert!(err.to_string().contains("not valid base64"), "{err}");
    }
}
