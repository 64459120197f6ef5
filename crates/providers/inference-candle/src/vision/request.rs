//! A chat request's images, from the request to the tensors the vision encoder takes: inline
//! base64, `data:` URLs or `http(s)` URLs (fetched with the same address checks as documents),
//! decoded within the configured limits and cut into tiles.

use base64::Engine as _;
use llama_stack_core::{Error, ErrorKind, Result};
use llama_stack_documents::{DocumentError, FetchPolicy, FetchSettings, load_uri};
use llama_stack_types::{ContentItem, ImageContent, InterleavedContent, Message};

use super::{MllamaImageConfig, MllamaImageInput, decode_image, preprocess_image};
use crate::config::ImageInputConfig;

/// One image of a request and where it sits, for error messages.
struct Placed {
    at: String,
    image: ImageContent,
}

/// The images of `messages` in prompt order, one per `<|image|>` the prompt renders.
/// A message may carry one image: Llama 3.2 Vision was trained with one image per turn.
fn images_of(messages: &[Message]) -> Result<Vec<Placed>> {
    let mut placed = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let (content, context) = match message {
            Message::User { content, context } => (content, context.as_ref()),
            Message::System { content }
            | Message::Tool { content, .. }
            | Message::Assistant { content, .. } => (content, None),
        };
        let mut found = Vec::new();
        collect(content, &format!("messages[{i}].content"), &mut found);
        if let Some(context) = context {
            collect(context, &format!("messages[{i}].context"), &mut found);
        }
        if found.len() > 1 {
            return Err(Error::invalid(format!(
                "messages[{i}] carries {} images; Llama 3.2 Vision takes one image per message. \
                 Send each image in a message of its own",
                found.len()
            )));
        }
        placed.extend(found);
    }
    Ok(placed)
}

fn collect(content: &InterleavedContent, at: &str, found: &mut Vec<Placed>) {
    let items = content.items();
    let single = matches!(content, InterleavedContent::Item(_));
    for (j, item) in items.into_iter().enumerate() {
        if let ContentItem::Image { image } = item {
            let at = if single {
                at.to_string()
            } else {
                format!("{at}[{j}]")
            };
            found.push(Placed { at, image });
        }
    }
}

/// Whether any message carries an image.
pub(crate) fn has_images(messages: &[Message]) -> bool {
    messages.iter().any(|message| {
        let (content, context) = match message {
            Message::User { content, context } => (content, context.as_ref()),
            Message::System { content }
            | Message::Tool { content, .. }
            | Message::Assistant { content, .. } => (content, None),
        };
        std::iter::once(content).chain(context).any(|c| {
            c.items()
                .iter()
                .any(|item| matches!(item, ContentItem::Image { .. }))
        })
    })
}

/// Loads, decodes and preprocesses every image of `messages`, in prompt order.
pub(crate) async fn load_images(
    messages: &[Message],
    image_config: &MllamaImageConfig,
    config: &ImageInputConfig,
) -> Result<Vec<MllamaImageInput>> {
    let placed = images_of(messages)?;
    let policy = FetchPolicy {
        allow_private_addresses: config.allow_private_addresses,
        max_bytes: config.max_bytes as u64,
        timeout: std::time::Duration::from_secs(config.fetch_timeout_seconds),
        settings: FetchSettings {
            item: "an image",
            place: "the inline::candle provider config",
            max_bytes: "images.max_bytes",
            timeout: "images.fetch_timeout_seconds",
            allow_private_addresses: "images.allow_private_addresses",
        },
    };
    let mut loaded = Vec::with_capacity(placed.len());
    for image in placed {
        let bytes = image_bytes(&image, &policy, config.max_bytes).await?;
        loaded.push((image.at, bytes));
    }
    let (limits, image_config) = (config.limits(), image_config.clone());
    // Decoding and resampling a large photo takes tens of milliseconds of CPU.
    tokio::task::spawn_blocking(move || {
        loaded
            .into_iter()
            .map(|(at, bytes)| {
                let rgb = decode_image(&bytes, &limits)
                    .map_err(|e| Error::new(e.kind(), format!("{at}: {}", e.message())))?;
                Ok(preprocess_image(&rgb, &image_config))
            })
            .collect::<Result<Vec<_>>>()
    })
    .await
    .map_err(|e| Error::internal(format!("image preprocessing task failed: {e}")))?
}

async fn image_bytes(image: &Placed, policy: &FetchPolicy, max_bytes: usize) -> Result<Vec<u8>> {
    let at = &image.at;
    match (&image.image.data, &image.image.url) {
        (Some(data), _) => {
            // Some clients send a whole data URL where bare base64 belongs.
            let data = match data.split_once(";base64,") {
                Some((head, rest)) if head.starts_with("data:") => rest,
                _ => data.as_str(),
            };
            let data: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            if data.len() / 4 * 3 > max_bytes + 3 {
                return Err(Error::invalid(format!(
                    "{at}: the image is larger than the {max_bytes} bytes this server accepts \
                     (images.max_bytes)"
                )));
            }
            base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map_err(|e| Error::invalid(format!("{at}.image.data is not valid base64: {e}")))
        }
        (None, Some(url)) => load_uri(&url.uri, policy)
            .await
            .map(|loaded| loaded.bytes)
            .map_err(|err| {
                let kind = match err {
                    DocumentError::Invalid(_) | DocumentError::TooLarge(_) => {
                        ErrorKind::InvalidRequest
                    }
                    DocumentError::Forbidden(_) => ErrorKind::Forbidden,
                    DocumentError::Fetch(_) => ErrorKind::Upstream,
                };
                Error::new(kind, format!("{at}: cannot load the image: {err}"))
            }),
        (None, None) => Err(Error::invalid(format!(
            "{at}: an image needs `url` or `data`"
        ))),
    }
}
