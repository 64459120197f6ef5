//! The documents of a doc-QA run: folders walked for the file types the stack extracts text
//! from and for image pages (which a vision model describes, see `images.rs`), single files,
//! and http(s) URLs; their document ids; the fingerprint that names the
//! default vector DB; and the RAG documents sent to the stack.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use llama_stack_types::RagDocument;
use serde_json::{Map, Value, json};

/// The file types read from a folder, with the MIME type each is sent with. `image/` types
/// are described by a vision model rather than sent as they are.
const FOLDER_TYPES: [(&str, &str); 8] = [
    ("txt", "text/plain"),
    ("md", "text/markdown"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
];

/// One document to ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct DocSource {
    /// The `document_id` the answers cite: the path inside its folder, the file name of a file
    /// given on its own, or the URL.
    pub id: String,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    File {
        path: PathBuf,
        /// `None` for a file named on the command line with another extension: the stack then
        /// tells text from PDF by its content.
        mime_type: Option<&'static str>,
    },
    /// Fetched by the stack's loader, which applies its address policy.
    Url(String),
}

fn is_url(input: &str) -> bool {
    let lower = input.get(..8).unwrap_or(input).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn mime_of(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    FOLDER_TYPES
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, mime)| *mime)
}

/// The documents named by `--docs`, in a stable order (each folder's files sorted by path).
pub fn collect(inputs: &[String]) -> anyhow::Result<Vec<DocSource>> {
    let mut docs: Vec<DocSource> = Vec::new();
    // Full paths stand in for ids that two inputs would otherwise share.
    let mut fallback_ids: Vec<String> = Vec::new();
    let mut seen_files = HashSet::new();
    for input in inputs {
        if is_url(input) {
            if !docs.iter().any(|d| d.id == *input) {
                docs.push(DocSource {
                    id: input.clone(),
                    location: Location::Url(input.clone()),
                });
                fallback_ids.push(input.clone());
            }
            continue;
        }
        let root = PathBuf::from(input);
        let meta = match std::fs::metadata(&root) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(
                "--docs {input}: no such file or folder (give a folder, a file or an http(s) URL)"
            ),
            Err(err) => bail!("--docs {input}: {err}"),
        };
        let found: Vec<(PathBuf, String, Option<&'static str>)> = if meta.is_dir() {
            let mut files = Vec::new();
            walk(&root, &mut files).with_context(|| format!("reading the folder {input}"))?;
            if files.is_empty() {
                bail!(
                    "--docs {input}: no documents found in this folder (looked for {} files, in subfolders too)",
                    FOLDER_TYPES
                        .iter()
                        .map(|(e, _)| format!(".{e}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            files
                .into_iter()
                .map(|path| {
                    let id = relative_id(&root, &path);
                    let mime = mime_of(&path);
                    (path, id, mime)
                })
                .collect()
        } else {
            let name = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| input.clone());
            vec![(root.clone(), name, mime_of(&root))]
        };
        for (path, id, mime_type) in found {
            let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if !seen_files.insert(key) {
                continue;
            }
            fallback_ids.push(path.display().to_string());
            docs.push(DocSource {
                id,
                location: Location::File { path, mime_type },
            });
        }
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for doc in &docs {
        *counts.entry(doc.id.clone()).or_default() += 1;
    }
    for (doc, fallback) in docs.iter_mut().zip(fallback_ids) {
        if counts[&doc.id] > 1 {
            doc.id = fallback;
        }
    }
    Ok(docs)
}

/// Every file of a known type under `dir`, sorted; hidden entries (`.git`, editor files) and
/// symlinked folders (which could loop) are skipped.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(&path, out)?;
        } else if (file_type.is_file() || (file_type.is_symlink() && path.is_file()))
            && mime_of(&path).is_some()
        {
            out.push(path);
        }
    }
    Ok(())
}

fn relative_id(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn digest(bytes: &[u8]) -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, bytes)
}

/// A digest of the documents: their ids and the bytes of every file (a URL counts by its
/// address, since its content is only fetched by the stack). Files are read one at a time.
pub fn fingerprint(docs: &[DocSource]) -> anyhow::Result<String> {
    let mut sorted: Vec<&DocSource> = docs.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut summary = String::new();
    for doc in sorted {
        let content = match &doc.location {
            Location::File { path, .. } => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                digest(&bytes)
            }
            Location::Url(url) => digest(url.as_bytes()),
        };
        summary.push_str(&format!("{}\t{content}\n", doc.id));
    }
    Ok(digest(summary.as_bytes()).simple().to_string())
}

/// The default vector DB id: `doc-qa-` and 12 hex digits of the documents' fingerprint and
/// the embedding model, so the same documents embedded the same way find their DB again and
/// changed documents get a fresh one.
pub fn default_vector_db_id(fingerprint: &str, embedding_model: &str) -> String {
    let id = digest(format!("{fingerprint}\n{embedding_model}").as_bytes())
        .simple()
        .to_string();
    format!("doc-qa-{}", &id[..12])
}

/// The RAG document for `doc`: a file as a `data:` URL with its MIME type, a URL as
/// `{"uri": ...}` so the stack's loader fetches it under its address policy.
pub fn rag_document(doc: &DocSource) -> anyhow::Result<RagDocument> {
    let (content, mime_type) = match &doc.location {
        Location::File { path, mime_type } => {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            let url = format!("data:{};base64,{encoded}", mime_type.unwrap_or(""));
            (Value::String(url), mime_type.map(str::to_string))
        }
        Location::Url(url) => (json!({ "uri": url }), None),
    };
    Ok(RagDocument {
        document_id: doc.id.clone(),
        content,
        mime_type,
        metadata: Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn ids(docs: &[DocSource]) -> Vec<&str> {
        docs.iter().map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn a_folder_is_read_recursively_for_known_types_only() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.txt", "b");
        write(dir.path(), "a.MD", "a");
        write(dir.path(), "sub/page.htm", "<p>x</p>");
        write(dir.path(), "sub/deeper/paper.pdf", "%PDF-");
        write(dir.path(), "notes.docx", "x");
        write(dir.path(), "image.gif", "x");
        write(dir.path(), ".hidden/secret.txt", "x");
        let docs = collect(&[dir.path().display().to_string()]).unwrap();
        assert_eq!(
            ids(&docs),
            ["a.MD", "b.txt", "sub/deeper/paper.pdf", "sub/page.htm"]
        );
        let Location::File { mime_type, .. } = &docs[0].location else {
            panic!("{docs:?}")
        };
        assert_eq!(*mime_type, Some("text/markdown"));
    }

    #[test]
    fn image_pages_are_collected_with_their_mime_types() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "scans/page1.PNG", "x");
        write(dir.path(), "scans/page2.jpeg", "x");
        write(dir.path(), "photo.jpg", "x");
        write(dir.path(), "notes.txt", "x");
        let single = dir.path().join("photo.jpg").display().to_string();
        let docs = collect(&[dir.path().display().to_string()]).unwrap();
        assert_eq!(
            ids(&docs),
            [
                "notes.txt",
                "photo.jpg",
                "scans/page1.PNG",
                "scans/page2.jpeg"
            ]
        );
        let mimes: Vec<_> = docs
            .iter()
            .map(|d| match &d.location {
                Location::File { mime_type, .. } => *mime_type,
                Location::Url(_) => None,
            })
            .collect();
        assert_eq!(
            mimes,
            [
                Some("text/plain"),
                Some("image/jpeg"),
                Some("image/png"),
                Some("image/jpeg")
            ]
        );
        let named = collect(&[single]).unwrap();
        assert_eq!(ids(&named), ["photo.jpg"]);
        assert!(matches!(
            named[0].location,
            Location::File {
                mime_type: Some("image/jpeg"),
                ..
            }
        ));
    }

    #[test]
    fn urls_files_and_clashing_names() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        write(one.path(), "notes.txt", "1");
        write(two.path(), "notes.txt", "2");
        write(two.path(), "extra.log", "3");
        let docs = collect(&[
            one.path().display().to_string(),
            "https://example.com/a.html".into(),
            two.path().join("extra.log").display().to_string(),
            two.path().display().to_string(),
            one.path().display().to_string(),
        ])
        .unwrap();
        assert_eq!(docs.len(), 4, "{docs:?}");
        assert_eq!(
            docs[0].id,
            one.path().join("notes.txt").display().to_string()
        );
        assert_eq!(docs[1].id, "https://example.com/a.html");
        assert_eq!(docs[2].id, "extra.log");
        assert_eq!(
            docs[3].id,
            two.path().join("notes.txt").display().to_string()
        );
    }

    #[test]
    fn missing_and_empty_inputs_are_clear_errors() {
        let err = collect(&["/no/such/folder".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("--docs /no/such/folder: no such file or folder"));
        let empty = tempfile::tempdir().unwrap();
        write(empty.path(), "x.docx", "x");
        let err = collect(&[empty.path().display().to_string()]).unwrap_err();
        assert!(err.to_string().contains("no documents found"), "{err}");
        assert!(err.to_string().contains(".png, .jpg, .jpeg"), "{err}");
    }

    #[test]
    fn the_default_id_follows_content_and_model() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", "alpha");
        let docs = collect(&[dir.path().display().to_string()]).unwrap();
        let first = fingerprint(&docs).unwrap();
        let id = default_vector_db_id(&first, "m");
        assert!(id.starts_with("doc-qa-") && id.len() == 19, "{id}");
        assert_eq!(id, default_vector_db_id(&fingerprint(&docs).unwrap(), "m"));
        assert_ne!(id, default_vector_db_id(&first, "other"));
        write(dir.path(), "a.txt", "beta");
        assert_ne!(first, fingerprint(&docs).unwrap());
    }

    #[test]
    fn files_travel_as_data_urls_and_urls_as_uris() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.md", "# hi");
        let docs = collect(&[
            dir.path().display().to_string(),
            "http://example.com/x".into(),
        ])
        .unwrap();
        let file = rag_document(&docs[0]).unwrap();
        assert_eq!(file.content, json!("data:text/markdown;base64,IyBoaQ=="));
        assert_eq!(file.mime_type.as_deref(), Some("text/markdown"));
        let url = rag_document(&docs[1]).unwrap();
        assert_eq!(url.content, json!({"uri": "http://example.com/x"}));
        assert_eq!(url.mime_type, None);
    }
}
