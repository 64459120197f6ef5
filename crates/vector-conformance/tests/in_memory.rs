//! The suite against a brute-force in-memory provider: proves the checks agree with the
//! trait's contract on their own, independent of any real backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use llama_stack_core::{Error, Result};
use llama_stack_memory::{
    vector_io::ChunkSelector, vector_io::ScoredChunk, vector_io::SearchMode,
    vector_io::SearchRequest, vector_io::StoreSpec, vector_io::StoredChunk,
    vector_io::VectorIoProvider,
};
use llama_stack_vector_conformance::{Harness, conformance_tests, data};

#[derive(Default)]
struct Store {
    dimension: usize,
    chunks: Vec<StoredChunk>,
}

/// Brute-force provider; its state outlives each handle, like a database file.
#[derive(Default, Clone)]
struct InMemory {
    stores: Arc<Mutex<HashMap<String, Store>>>,
}

fn live(c: &StoredChunk) -> bool {
    c.expires_at.is_none_or(|t| t > data::now_seconds())
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[async_trait]
impl VectorIoProvider for InMemory {
    async fn create_store(&self, spec: &StoreSpec) -> Result<()> {
        let mut stores = self.stores.lock().unwrap();
        match stores.get(&spec.store_id) {
            Some(s) if s.dimension != spec.dimension => Err(Error::invalid("other dimension")),
            Some(_) => Ok(()),
            None => {
                stores.insert(
                    spec.store_id.clone(),
                    Store {
                        dimension: spec.dimension,
                        chunks: vec![],
                    },
                );
                Ok(())
            }
        }
    }

    async fn delete_store(&self, store_id: &str) -> Result<()> {
        self.stores.lock().unwrap().remove(store_id);
        Ok(())
    }

    async fn insert(&self, store_id: &str, chunks: Vec<StoredChunk>) -> Result<()> {
        let mut stores = self.stores.lock().unwrap();
        let store = stores
            .get_mut(store_id)
            .ok_or_else(|| Error::not_found("store"))?;
        if chunks.iter().any(|c| c.embedding.len() != store.dimension) {
            return Err(Error::invalid("wrong length"));
        }
        for c in chunks {
            store.chunks.retain(|o| o.chunk_id != c.chunk_id);
            store.chunks.push(c);
        }
        Ok(())
    }

    async fn search(&self, store_id: &str, request: &SearchRequest) -> Result<Vec<ScoredChunk>> {
        let stores = self.stores.lock().unwrap();
        let store = stores
            .get(store_id)
            .ok_or_else(|| Error::not_found("store"))?;
        let candidates = || {
            store.chunks.iter().filter(|c| live(c)).filter(|c| {
                request
                    .filter
                    .as_ref()
                    .is_none_or(|f| f.matches(&c.attributes))
            })
        };
        let mut scored: Vec<(f32, &StoredChunk)> = match request.mode {
            SearchMode::Vector => {
                let q = request
                    .embedding
                    .as_ref()
                    .ok_or_else(|| Error::invalid("no embedding"))?;
                if q.len() != store.dimension {
                    return Err(Error::invalid("wrong length"));
                }
                candidates()
                    .map(|c| (data::expected_score(q, &c.embedding), c))
                    .collect()
            }
            SearchMode::Keyword => {
                let query = words(&request.text);
                let texts: Vec<Vec<String>> = store.chunks.iter().map(|c| words(&c.text)).collect();
                let weights: Vec<f32> = query
                    .iter()
                    .map(|q| {
                        let df = texts.iter().filter(|t| t.contains(q)).count().max(1);
                        (1.0 + texts.len() as f32 / df as f32).ln()
                    })
                    .collect();
                store
                    .chunks
                    .iter()
                    .zip(&texts)
                    .filter(|(c, _)| live(c))
                    .filter(|(c, _)| {
                        request
                            .filter
                            .as_ref()
                            .is_none_or(|f| f.matches(&c.attributes))
                    })
                    .filter_map(|(c, text)| {
                        let score: f32 = query
                            .iter()
                            .zip(&weights)
                            .map(|(q, w)| text.iter().filter(|t| *t == q).count() as f32 * w)
                            .sum();
                        (score > 0.0).then_some((score, c))
                    })
                    .collect()
            }
        };
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(scored
            .into_iter()
            .take(request.k)
            .map(|(score, c)| ScoredChunk {
                chunk_id: c.chunk_id.clone(),
                document: c.document.clone(),
                attributes: c.attributes.clone(),
                file_id: c.file_id.clone(),
                score,
            })
            .collect())
    }

    async fn delete_chunks(&self, store_id: &str, selector: &ChunkSelector) -> Result<u64> {
        let mut stores = self.stores.lock().unwrap();
        let store = stores
            .get_mut(store_id)
            .ok_or_else(|| Error::not_found("store"))?;
        let before = store.chunks.len();
        store.chunks.retain(|c| match selector {
            ChunkSelector::Ids(ids) => !ids.contains(&c.chunk_id),
            ChunkSelector::File(f) => c.file_id.as_ref() != Some(f),
        });
        Ok((before - store.chunks.len()) as u64)
    }

    async fn count(&self, store_id: &str) -> Result<u64> {
        let stores = self.stores.lock().unwrap();
        let store = stores
            .get(store_id)
            .ok_or_else(|| Error::not_found("store"))?;
        Ok(store.chunks.iter().filter(|c| live(c)).count() as u64)
    }
}

struct InMemoryHarness(InMemory);

#[async_trait]
impl Harness for InMemoryHarness {
    async fn open(&self) -> Arc<dyn VectorIoProvider> {
        Arc::new(self.0.clone())
    }
}

conformance_tests!(InMemoryHarness(InMemory::default()));

mod optional {
    use super::*;
    // The optional form compiles and skips when the harness is absent.
    conformance_tests!(optional: None::<InMemoryHarness>);
}
