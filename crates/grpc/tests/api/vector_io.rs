//! Vector DBs, chunks and the RAG tool: the same results as HTTP.

use llama_stack_grpc::pb;
use pb::rag_tool_service_client::RagToolServiceClient;
use pb::vector_io_service_client::VectorIoServiceClient;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{self, EMBEDDER, text, text_of};

const FACTS: [&str; 3] = [
    "Paris is the capital of France",
    "Bananas are yellow fruit",
    "The Rhine flows through Germany",
];

async fn register(client: &mut VectorIoServiceClient<Channel>, id: &str) -> pb::VectorDb {
    client
        .register_vector_db(pb::RegisterVectorDbRequest {
            vector_db_id: id.into(),
            embedding_model: EMBEDDER.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn metadata(document: &str) -> Option<prost_types::Struct> {
    let mut s = prost_types::Struct::default();
    s.fields.insert(
        "document_id".into(),
        prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue(document.into())),
        },
    );
    Some(s)
}

#[tokio::test]
async fn vector_dbs_insert_and_query_like_http() {
    let h = support::start().await;
    let mut vector_io = VectorIoServiceClient::new(h.channel.clone());
    let db = register(&mut vector_io, "facts").await;
    assert_eq!(db.embedding_dimension, crate::upstream::DIMENSION as u32);
    assert_eq!(db.provider_id, "sqlite-vec");

    let chunks = FACTS
        .iter()
        .enumerate()
        .map(|(i, fact)| pb::Chunk {
            content: text(fact),
            metadata: metadata(&format!("doc{i}")),
            ..Default::default()
        })
        .collect();
    vector_io
        .insert(pb::InsertChunksRequest {
            vector_db_id: "facts".into(),
            chunks,
            ttl_seconds: None,
        })
        .await
        .unwrap();

    let grpc = vector_io
        .query(pb::QueryChunksRequest {
            vector_db_id: "facts".into(),
            query: text("What is the capital of France?"),
            max_chunks: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (status, http) = h
        .post(
            "/v1/vector-io/query",
            json!({"vector_db_id": "facts", "query": "What is the capital of France?",
                   "params": {"max_chunks": 2}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(grpc.chunks.len(), 2);
    assert_eq!(text_of(&grpc.chunks[0].content), FACTS[0]);
    let http_texts: Vec<&str> = http["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    let grpc_texts: Vec<String> = grpc.chunks.iter().map(|c| text_of(&c.content)).collect();
    assert_eq!(grpc_texts, http_texts);
    let http_scores: Vec<f32> = serde_json::from_value(http["scores"].clone()).unwrap();
    assert_eq!(grpc.scores, http_scores);
    assert!(grpc.chunks[0].chunk_id.is_some());

    // Keyword search takes its mode from the enum.
    let keyword = vector_io
        .query(pb::QueryChunksRequest {
            vector_db_id: "facts".into(),
            query: text("bananas"),
            max_chunks: Some(1),
            mode: pb::SearchMode::Keyword as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(text_of(&keyword.chunks[0].content), FACTS[1]);

    let list = vector_io
        .list_vector_dbs(pb::ListVectorDbsRequest {})
        .await
        .unwrap()
        .into_inner();
    let (_, http_list) = h.get("/v1/vector-dbs").await;
    assert_eq!(list.data.len(), http_list["data"].as_array().unwrap().len());
    assert_eq!(list.data[0].identifier, http_list["data"][0]["identifier"]);
    let got = vector_io
        .get_vector_db(pb::GetVectorDbRequest {
            vector_db_id: "facts".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, db);

    let wrong_size = vector_io
        .insert(pb::InsertChunksRequest {
            vector_db_id: "facts".into(),
            chunks: vec![pb::Chunk {
                content: text("x"),
                embedding: vec![1.0, 2.0],
                ..Default::default()
            }],
            ttl_seconds: None,
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_size.code(), Code::InvalidArgument);
    assert!(
        wrong_size.message().contains("dimensions"),
        "{}",
        wrong_size.message()
    );

    vector_io
        .unregister_vector_db(pb::UnregisterVectorDbRequest {
            vector_db_id: "facts".into(),
        })
        .await
        .unwrap();
    let gone = vector_io
        .query(pb::QueryChunksRequest {
            vector_db_id: "facts".into(),
            query: text("anything"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn rag_insert_and_query_like_http() {
    let h = support::start().await;
    let mut vector_io = VectorIoServiceClient::new(h.channel.clone());
    register(&mut vector_io, "kb").await;
    let mut rag = RagToolServiceClient::new(h.channel.clone());
    let inline = |id: &str, body: &str| pb::RagDocument {
        document_id: id.into(),
        content: Some(pb::rag_document::Content::Inline(text(body).unwrap())),
        mime_type: Some("text/plain".into()),
        metadata: None,
    };
    rag.insert(pb::RagInsertRequest {
        documents: vec![
            inline("france", FACTS[0]),
            inline("fruit", FACTS[1]),
            pb::RagDocument {
                document_id: "rivers".into(),
                // "The Rhine flows through Germany", as a data: URL.
                content: Some(pb::rag_document::Content::Uri(
                    "data:text/plain;base64,VGhlIFJoaW5lIGZsb3dzIHRocm91Z2ggR2VybWFueQ==".into(),
                )),
                mime_type: None,
                metadata: None,
            },
        ],
        vector_db_id: "kb".into(),
        chunk_size_in_tokens: Some(64),
    })
    .await
    .unwrap();

    let grpc = rag
        .query(pb::RagQueryRequest {
            content: text("Which river flows through Germany?"),
            vector_db_ids: vec!["kb".into()],
            query_config: Some(pb::RagQueryConfig {
                max_chunks: Some(2),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let (status, http) = h
        .post(
            "/v1/tool-runtime/rag-tool/query",
            json!({"content": "Which river flows through Germany?", "vector_db_ids": ["kb"],
                   "query_config": {"max_chunks": 2}}),
        )
        .await;
    assert_eq!(status, 200);
    let http_text: String = http["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["text"].as_str().unwrap())
        .collect();
    assert_eq!(text_of(&grpc.content), http_text);
    assert!(http_text.contains("Rhine"), "{http_text}");
    let document_ids = &grpc.metadata.unwrap().fields["document_ids"];
    assert_eq!(
        support::json_of(document_ids),
        http["metadata"]["document_ids"]
    );

    let missing = rag
        .insert(pb::RagInsertRequest {
            documents: vec![pb::RagDocument {
                document_id: "empty".into(),
                content: None,
                mime_type: None,
                metadata: None,
            }],
            vector_db_id: "kb".into(),
            chunk_size_in_tokens: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
}
