-- remote::pgvector: the extension and the catalog of stores. Each store's chunks live in a
-- table of their own, `llama_stack_vs_<id>`, created by the provider with the store (its
-- `vector(<dimension>)` column and HNSW index depend on the store's dimension).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS llama_stack_vector_stores (
    id BIGSERIAL PRIMARY KEY,
    store_id TEXT NOT NULL UNIQUE,
    dimension INTEGER NOT NULL CHECK (dimension > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Keyword search: a tsquery matching any word of free text. The text's own lexemes (stemmed,
-- stop words dropped) are quoted as tsquery operands and joined with `|`, so no character of
-- a user's query is read as tsquery syntax; text without words gives NULL, which matches
-- nothing. IMMUTABLE, so the planner evaluates it once per query and estimates how many rows
-- the words match (choosing the GIN index for rare words).
CREATE OR REPLACE FUNCTION llama_stack_any_word_query(config regconfig, query text)
RETURNS tsquery LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''', ' | ')::tsquery
    FROM unnest(tsvector_to_array(to_tsvector(config, query))) AS lexeme
$$;
