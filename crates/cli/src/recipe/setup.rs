//! What a doc-QA run needs before its first question: the models, the checks that the
//! distribution can run the agent, and a vector DB holding the documents.

use std::path::Path;

use anyhow::{anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use llama_stack_core::Api;
use llama_stack_stack::Stack;
use llama_stack_types::{Model, ModelType, RagDocument, RagInsertRequest, RegisterVectorDbRequest};

use super::DocQaArgs;
use super::doc_qa::Cleanup;
use super::documents::{self, DocSource};
use super::images::{self, DescribeError, Describer};

/// Picks the model for `kind`: the one asked for, else the first of that type in run.yaml's
/// `models` (file order is what "first" means to the person who wrote it), else the first
/// registered one (e.g. a model an earlier run or a provider's own list added).
pub async fn pick_model(
    stack: &Stack,
    requested: Option<&str>,
    kind: ModelType,
    declared: &[String],
    flag: &str,
) -> anyhow::Result<Model> {
    let all = stack.inference.list_models().await;
    let listing = || {
        if all.is_empty() {
            "none".to_string()
        } else {
            all.iter()
                .map(|m| format!("{} ({})", m.identifier, m.model_type.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if let Some(id) = requested {
        let model = stack
            .inference
            .get_model(id)
            .await
            .map_err(|e| anyhow!("--{flag} {id}: {}", e.message()))?;
        if model.model_type != kind {
            bail!(
                "--{flag} {id} is an {} model; it must be an {} model. Registered models: {}",
                model.model_type.as_str(),
                kind.as_str(),
                listing()
            );
        }
        return Ok(model);
    }
    for id in declared {
        if let Ok(model) = stack.inference.get_model(id).await
            && model.model_type == kind
        {
            return Ok(model);
        }
    }
    all.iter()
        .find(|m| m.model_type == kind)
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "no {} model is registered (registered models: {}); add one under `models:` in run.yaml{}",
                kind.as_str(),
                listing(),
                if kind == ModelType::Embedding {
                    " with model_type: embedding and metadata.embedding_dimension"
                } else {
                    ""
                }
            )
        })
}

/// Fails early, before any document is embedded, when the distribution cannot run the agent:
/// no agents provider, or no `builtin::rag` tool group for it to search with.
pub async fn check_agent_support(stack: &Stack, config: &Path) -> anyhow::Result<()> {
    let config = config.display();
    if !stack.providers().iter().any(|p| p.api == Api::Agents) {
        bail!(
            "{config} has no agents provider, which the recipe's agent runs on. Add to it:\n\n\
             providers:\n  agents:\n  - provider_id: meta-reference\n    provider_type: inline::meta-reference\n    config: {{}}"
        );
    }
    if stack
        .tools
        .get_tool_group(llama_stack_tools::BUILTIN_RAG)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let rag_runtime = stack
        .providers()
        .iter()
        .find(|p| p.api == Api::ToolRuntime && p.provider_type == "inline::rag-runtime");
    match rag_runtime {
        Some(provider) => bail!(
            "{config} registers no `builtin::rag` tool group, which the recipe's agent searches the documents with. Add to it:\n\n\
             tool_groups:\n- toolgroup_id: builtin::rag\n  provider_id: {}",
            provider.provider_id
        ),
        None => bail!(
            "{config} registers no `builtin::rag` tool group, which the recipe's agent searches the documents with. Add to it:\n\n\
             providers:\n  tool_runtime:\n  - provider_id: rag-runtime\n    provider_type: inline::rag-runtime\n    config: {{}}\n\
             tool_groups:\n- toolgroup_id: builtin::rag\n  provider_id: rag-runtime"
        ),
    }
}

/// How the documents got into the vector DB.
pub struct VectorDbReady {
    pub id: String,
    pub embedding_model: String,
}

/// Finds or registers the vector DB and ingests the documents into it, unless it already
/// existed (and `reingest` is off): a DB named after the documents' fingerprint already holds
/// exactly them, and re-embedding everything on every run is what the name is there to avoid.
pub async fn prepare_vector_db(
    stack: &Stack,
    args: &DocQaArgs,
    docs: &[DocSource],
    fingerprint: &str,
    declared: &[String],
    describer: Option<&Describer>,
    cleanup: &Cleanup,
) -> anyhow::Result<VectorDbReady> {
    let requested_id = args.vector_db.as_deref();
    let requested_embedding = args.embedding_model.as_deref();
    let existing = match requested_id {
        Some(id) => stack.memory.get_vector_db(id).await.ok(),
        None => None,
    };
    // A named DB that exists decides the embedding model, unless one is asked for.
    let embedding = match (&existing, requested_embedding) {
        (Some(db), None) => stack
            .inference
            .get_model(&db.embedding_model)
            .await
            .map_err(|e| {
                anyhow!(
                    "vector DB `{}` uses embedding model `{}`, which is not registered: {}",
                    db.identifier,
                    db.embedding_model,
                    e.message()
                )
            })?,
        _ => {
            pick_model(
                stack,
                requested_embedding,
                ModelType::Embedding,
                declared,
                "embedding-model",
            )
            .await?
        }
    };
    let id = match requested_id {
        Some(id) => id.to_string(),
        None => documents::default_vector_db_id(fingerprint, &embedding.identifier),
    };
    let existing = match existing {
        Some(db) => Some(db),
        None => stack.memory.get_vector_db(&id).await.ok(),
    };
    if let Some(db) = &existing {
        let same = stack
            .inference
            .get_model(&db.embedding_model)
            .await
            .is_ok_and(|m| m.identifier == embedding.identifier);
        if !same {
            bail!(
                "vector DB `{id}` exists with embedding model `{}`, not `{}`; pass --embedding-model {} or another --vector-db",
                db.embedding_model,
                embedding.identifier,
                db.embedding_model
            );
        }
        if !args.reingest {
            eprintln!(
                "Using the existing vector DB `{id}` as it is ({}; pass --reingest to insert the documents again)",
                if requested_id.is_some() {
                    "the documents are not inserted again"
                } else {
                    "it was built from these same documents"
                }
            );
            return Ok(VectorDbReady {
                id,
                embedding_model: embedding.identifier,
            });
        }
    } else {
        stack
            .memory
            .register_vector_db(RegisterVectorDbRequest {
                vector_db_id: id.clone(),
                embedding_model: embedding.identifier.clone(),
                embedding_dimension: None,
                provider_id: None,
                provider_vector_db_id: None,
                vector_db_name: None,
            })
            .await
            .map_err(|e| anyhow!("cannot register the vector DB `{id}`: {}", e.message()))?;
    }
    let created = existing.is_none();
    // A half-filled DB under the documents' own name would be taken as complete next time.
    if created {
        cleanup.set_incomplete_db(Some(id.clone()));
    }
    let outcome = ingest(stack, &id, docs, describer).await;
    cleanup.set_incomplete_db(None);
    if created
        && outcome.inserted == 0
        && let Err(err) = stack.memory.unregister_vector_db(&id).await
    {
        eprintln!("warning: could not remove the empty vector DB `{id}`: {err}");
    }
    if outcome.inserted == 0 {
        match docs.len() {
            1 => bail!("the document could not be ingested (see above)"),
            n => bail!("none of the {n} documents could be ingested (see above)"),
        }
    }
    if outcome.failed > 0 || outcome.skipped > 0 {
        let mut line = format!(
            "Ingested {} of {} documents into `{id}`",
            outcome.inserted,
            docs.len()
        );
        if outcome.failed > 0 {
            line.push_str(&format!(
                "; {} failed (see above; --reingest tries them again)",
                outcome.failed
            ));
        }
        if outcome.skipped > 0 {
            line.push_str(&format!(
                "; {} image {} skipped (no model took images, see above)",
                outcome.skipped,
                if outcome.skipped == 1 {
                    "file"
                } else {
                    "files"
                }
            ));
        }
        eprintln!("{line}");
    } else {
        let plural = if outcome.inserted == 1 { "" } else { "s" };
        eprintln!("Ingested {} document{plural} into `{id}`", outcome.inserted);
    }
    Ok(VectorDbReady {
        id,
        embedding_model: embedding.identifier,
    })
}

struct Ingested {
    inserted: usize,
    failed: usize,
    /// Image pages left out because the describing model took no images.
    skipped: usize,
}

/// Inserts the documents one at a time, so the progress bar moves per document and a bad one
/// is reported by name while the rest go in. Image pages are described first.
async fn ingest(
    stack: &Stack,
    vector_db_id: &str,
    docs: &[DocSource],
    describer: Option<&Describer>,
) -> Ingested {
    let bar = ProgressBar::new(docs.len() as u64);
    if let Ok(style) =
        ProgressStyle::with_template("Ingesting {bar:30.cyan/blue} {pos}/{len} {wide_msg}")
    {
        bar.set_style(style);
    }
    let mut outcome = Ingested {
        inserted: 0,
        failed: 0,
        skipped: 0,
    };
    let mut pages = ImagePages {
        describer,
        refused: false,
        total: docs
            .iter()
            .filter(|d| images::image_mime(d).is_some())
            .count(),
    };
    for doc in docs {
        bar.set_message(doc.id.clone());
        let prepared = if images::image_mime(doc).is_some() {
            match pages.document(stack, doc, &bar).await {
                Some(prepared) => prepared,
                None => {
                    outcome.skipped += 1;
                    bar.inc(1);
                    continue;
                }
            }
        } else {
            documents::rag_document(doc).map_err(|e| format!("{e:#}"))
        };
        let result = match prepared {
            Ok(document) => stack
                .tools
                .rag_insert(RagInsertRequest {
                    documents: vec![document],
                    vector_db_id: vector_db_id.to_string(),
                    chunk_size_in_tokens: None,
                })
                .await
                .map_err(|e| single_document_message(e.message())),
            Err(message) => Err(message),
        };
        match result {
            Ok(()) => outcome.inserted += 1,
            Err(message) => {
                outcome.failed += 1;
                // suspend, not println: println draws nothing when stderr is not a terminal.
                bar.suspend(|| eprintln!("error: document `{}` not ingested: {message}", doc.id));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    outcome
}

/// The image pages of an ingestion, and whether the describing model has refused images.
struct ImagePages<'a> {
    describer: Option<&'a Describer>,
    refused: bool,
    total: usize,
}

impl ImagePages<'_> {
    /// The RAG document of the image page `doc`, or why it has none; `None` when it is skipped
    /// because the model takes no images (said once, for all of them).
    async fn document(
        &mut self,
        stack: &Stack,
        doc: &DocSource,
        bar: &ProgressBar,
    ) -> Option<Result<RagDocument, String>> {
        let describer = self.describer.filter(|_| !self.refused)?;
        bar.set_message(format!("{} (describing with {})", doc.id, describer.model));
        match describer.describe(stack, doc).await {
            Ok(description) => {
                let said = match description.chars().count() {
                    0 => "no text (indexed under its name only)".to_string(),
                    n => format!("{n} characters"),
                };
                bar.suspend(|| {
                    eprintln!(
                        "Described the image `{}` with `{}`: {said}",
                        doc.id, describer.model
                    )
                });
                bar.set_message(doc.id.clone());
                Some(
                    images::image_document(doc, &description, describer)
                        .map_err(|e| format!("{e:#}")),
                )
            }
            Err(DescribeError::Image(reason)) => Some(Err(format!(
                "cannot describe the image with `{}`: {reason}",
                describer.model
            ))),
            Err(DescribeError::Model(reason)) => {
                self.refused = true;
                let images = match self.total {
                    1 => "the image file is".to_string(),
                    n => format!("the {n} image files are"),
                };
                bar.suspend(|| {
                    if describer.explicit {
                        eprintln!(
                            "error: --vision-model {} did not take the image `{}` ({reason}); {images} not ingested. Give --vision-model a vision model (e.g. Llama 3.2 Vision)",
                            describer.model, doc.id
                        )
                    } else {
                        eprintln!(
                            "warning: {images} not ingested: the answering model `{}` did not take the image `{}` ({reason}). Pass --vision-model <id> with a vision model (e.g. Llama 3.2 Vision) to describe them",
                            describer.model, doc.id
                        )
                    }
                });
                None
            }
        }
    }
}

/// The reason a one-document insert failed, without the batch summary around it
/// ("1 of 1 documents were not inserted (...): document 'x': reason").
fn single_document_message(message: &str) -> String {
    let reason = message
        .split_once("were): ")
        .map_or(message, |(_, rest)| rest);
    match reason.strip_prefix("document '") {
        Some(rest) => rest
            .split_once("': ")
            .map_or(reason, |(_, why)| why)
            .to_string(),
        None => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::single_document_message;

    #[test]
    fn a_single_document_failure_reads_as_its_reason() {
        assert_eq!(
            single_document_message(
                "1 of 1 documents were not inserted (0 chunks from the others were): document 'bad.pdf': cannot extract text"
            ),
            "cannot extract text"
        );
        assert_eq!(single_document_message("store gone"), "store gone");
    }
}
