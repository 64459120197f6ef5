//! Image pages (PNG, JPEG) in a doc-QA run: a vision model describes each one at ingestion,
//! and the description is indexed as text under the image's own document id, so answers drawn
//! from it cite the image.

use anyhow::{Context, anyhow};
use base64::Engine;
use futures::StreamExt;
use llama_stack_core::ErrorKind;
use llama_stack_stack::Stack;
use llama_stack_types::{
    ChatCompletionRequest, ContentDelta, ContentItem, ImageContent, InterleavedContent, Message,
    ModelType, RagDocument, SamplingParams, SamplingStrategy,
};
use serde_json::{Map, Value, json};

use super::documents::{DocSource, Location};
use super::setup;

/// What the vision model is asked for each page: scanned pages are mostly text, and the
/// figures are what a text extractor would lose.
const INSTRUCTION: &str = "Transcribe the text of this image exactly, then describe its \
figures, charts and tables, with their labels and numbers.";

/// Where the stack's image loader places an error about the image of a describe request: the
/// request holds one user message whose first item is the image.
const IMAGE_PLACE: &str = "messages[0].content[0]";

/// The model that describes the images of a run.
#[derive(Debug, Clone)]
pub struct Describer {
    pub model: String,
    /// Whether `--vision-model` named it (rather than defaulting to the answering model).
    pub explicit: bool,
    pub max_tokens: u32,
}

/// Why an image has no description.
#[derive(Debug, PartialEq)]
pub enum DescribeError {
    /// This image cannot be used (unreadable, over the server's limits, ...); other images may be.
    Image(String),
    /// The model takes no images at all, so no other image will fare better.
    Model(String),
}

/// The MIME type of an image document, `None` for every other document.
pub fn image_mime(doc: &DocSource) -> Option<&'static str> {
    match &doc.location {
        Location::File {
            mime_type: Some(mime),
            ..
        } if mime.starts_with("image/") => Some(mime),
        _ => None,
    }
}

/// The describing model, when some documents are images: `--vision-model`, else the answering
/// model (whether it takes images is only known once it is asked).
pub async fn pick_describer(
    stack: &Stack,
    requested: Option<&str>,
    answering_model: &str,
    max_tokens: u32,
    docs: &[DocSource],
) -> anyhow::Result<Option<Describer>> {
    if !docs.iter().any(|d| image_mime(d).is_some()) {
        return Ok(None);
    }
    let (model, explicit) = match requested {
        Some(id) => {
            let model =
                setup::pick_model(stack, Some(id), ModelType::Llm, &[], "vision-model").await?;
            (model.identifier, true)
        }
        None => (answering_model.to_string(), false),
    };
    Ok(Some(Describer {
        model,
        explicit,
        max_tokens,
    }))
}

/// The fingerprint of the documents as this describer would index them: the descriptions
/// depend on the model, so another model must not find the first one's vector DB.
pub fn fingerprint_with(fingerprint: &str, describer: Option<&Describer>) -> String {
    match describer {
        None => fingerprint.to_string(),
        Some(d) => {
            let combined = format!("{fingerprint}\nvision:{}:{}", d.model, d.max_tokens);
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, combined.as_bytes())
                .simple()
                .to_string()
        }
    }
}

impl Describer {
    /// Asks the model to describe the image of `doc`, greedily and within `max_tokens`. The
    /// text may be empty: a blank page has nothing to transcribe.
    pub async fn describe(&self, stack: &Stack, doc: &DocSource) -> Result<String, DescribeError> {
        let (Location::File { path, .. }, Some(mime)) = (&doc.location, image_mime(doc)) else {
            return Err(DescribeError::Image("not an image file".into()));
        };
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(|e| DescribeError::Image(format!("{e:#}")))?;
        let request = describe_request(&self.model, mime, &bytes, self.max_tokens);
        let mut stream = stack
            .inference
            .chat_completion(request)
            .await
            .map_err(|e| classify(e.kind(), e.message()))?;
        let mut text = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(e.kind(), e.message()))?;
            if let ContentDelta::Text { text: piece } = chunk.event.delta {
                text.push_str(&piece);
            }
        }
        Ok(text.trim().to_string())
    }
}

fn describe_request(
    model: &str,
    mime: &str,
    bytes: &[u8],
    max_tokens: u32,
) -> ChatCompletionRequest {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let content = InterleavedContent::Items(vec![
        ContentItem::Image {
            image: ImageContent {
                url: Some(llama_stack_types::Url {
                    uri: format!("data:{mime};base64,{encoded}"),
                }),
                data: None,
            },
        },
        ContentItem::Text {
            text: INSTRUCTION.to_string(),
        },
    ]);
    ChatCompletionRequest {
        model_id: model.to_string(),
        messages: vec![Message::User {
            content,
            context: None,
        }],
        sampling_params: Some(SamplingParams {
            strategy: SamplingStrategy::Greedy,
            max_tokens: Some(max_tokens),
            ..SamplingParams::default()
        }),
        tools: None,
        tool_choice: None,
        tool_prompt_format: None,
        response_format: None,
        stream: Some(true),
        logprobs: None,
        tool_config: None,
    }
}

/// A refusal that names the image is about this image; any other refusal of a well-formed
/// request means the model takes no images. Failures of other kinds (upstream down, timeout)
/// are counted against this image only, so a hiccup does not drop every page.
fn classify(kind: ErrorKind, message: &str) -> DescribeError {
    if let Some(rest) = message.strip_prefix(IMAGE_PLACE) {
        let rest = rest.trim_start_matches([':', '.', ' ']);
        return DescribeError::Image(rest.to_string());
    }
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::Unsupported => {
            DescribeError::Model(message.to_string())
        }
        _ => DescribeError::Image(message.to_string()),
    }
}

/// The RAG document of a described image: the description as text, the image as its id and
/// in its metadata, so the answer's citation leads back to the file.
pub fn image_document(
    doc: &DocSource,
    description: &str,
    describer: &Describer,
) -> anyhow::Result<RagDocument> {
    let Some(mime) = image_mime(doc) else {
        return Err(anyhow!("`{}` is not an image file", doc.id));
    };
    let mut metadata = Map::new();
    // The id, not the absolute path: metadata reaches the answering model, which may be remote.
    metadata.insert("source_image".into(), json!(doc.id));
    metadata.insert("image_mime_type".into(), json!(mime));
    metadata.insert("described_by".into(), json!(describer.model));
    // The heading keeps the file name searchable (even for a page with nothing to describe)
    // and tells the answering model that the passage is a reading of a picture.
    let content = if description.is_empty() {
        format!(
            "Image {}: the vision model found nothing to describe in it.",
            doc.id
        )
    } else {
        format!("Description of the image {}:\n\n{description}", doc.id)
    };
    Ok(RagDocument {
        document_id: doc.id.clone(),
        content: Value::String(content),
        mime_type: Some("text/plain".into()),
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn image(id: &str, mime: Option<&'static str>) -> DocSource {
        DocSource {
            id: id.into(),
            location: Location::File {
                path: PathBuf::from("/docs").join(id),
                mime_type: mime,
            },
        }
    }

    fn describer() -> Describer {
        Describer {
            model: "candle/vision".into(),
            explicit: false,
            max_tokens: 512,
        }
    }

    #[test]
    fn only_image_files_are_images() {
        assert_eq!(
            image_mime(&image("a.png", Some("image/png"))),
            Some("image/png")
        );
        assert_eq!(image_mime(&image("a.txt", Some("text/plain"))), None);
        assert_eq!(image_mime(&image("a.bin", None)), None);
        let url = DocSource {
            id: "https://example.com/a.png".into(),
            location: Location::Url("https://example.com/a.png".into()),
        };
        assert_eq!(image_mime(&url), None);
    }

    #[test]
    fn refusals_naming_the_image_spare_the_other_images() {
        assert_eq!(
            classify(
                ErrorKind::InvalidRequest,
                "messages[0].content[0]: the image has 50000000 pixels, over the 40000000 allowed (images.max_pixels)"
            ),
            DescribeError::Image(
                "the image has 50000000 pixels, over the 40000000 allowed (images.max_pixels)"
                    .into()
            )
        );
        assert_eq!(
            classify(
                ErrorKind::InvalidRequest,
                "model 'candle/text' reads text only and cannot take images"
            ),
            DescribeError::Model(
                "model 'candle/text' reads text only and cannot take images".into()
            )
        );
        assert!(matches!(
            classify(ErrorKind::Upstream, "connection reset"),
            DescribeError::Image(_)
        ));
    }

    #[test]
    fn the_request_carries_the_image_then_the_instruction() {
        let request = describe_request("m", "image/png", b"png", 64);
        let Message::User {
            content: InterleavedContent::Items(items),
            ..
        } = &request.messages[0]
        else {
            panic!("{request:?}")
        };
        let ContentItem::Image { image } = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(
            image.url.as_ref().unwrap().uri,
            "data:image/png;base64,cG5n"
        );
        assert!(matches!(&items[1], ContentItem::Text { .. }));
        let params = request.sampling_params.unwrap();
        assert_eq!(params.strategy, SamplingStrategy::Greedy);
        assert_eq!(params.max_tokens, Some(64));
    }

    #[test]
    fn a_description_is_indexed_under_the_image() {
        let doc = image("scans/page1.png", Some("image/png"));
        let document = image_document(&doc, "Total: 42", &describer()).unwrap();
        assert_eq!(document.document_id, "scans/page1.png");
        assert_eq!(
            document.content,
            json!("Description of the image scans/page1.png:\n\nTotal: 42")
        );
        assert_eq!(document.metadata["source_image"], json!("scans/page1.png"));
        assert_eq!(document.metadata["image_mime_type"], json!("image/png"));
        assert_eq!(document.metadata["described_by"], json!("candle/vision"));
        let blank = image_document(&doc, "", &describer()).unwrap();
        assert_eq!(
            blank.content,
            json!("Image scans/page1.png: the vision model found nothing to describe in it.")
        );
    }

    #[test]
    fn the_describing_model_changes_the_fingerprint() {
        let vision = describer();
        assert_eq!(fingerprint_with("abc", None), "abc");
        let with = fingerprint_with("abc", Some(&vision));
        assert_ne!(with, "abc");
        let other = Describer {
            model: "remote/other".into(),
            ..vision
        };
        assert_ne!(with, fingerprint_with("abc", Some(&other)));
    }
}
