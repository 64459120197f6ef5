//! `llama_stack.v1.VectorIoService` (vector DBs, insert, query) and
//! `llama_stack.v1.RagToolService` (RAG insert and query).

use std::sync::Arc;

use llama_stack_stack::Stack;
use tonic::{Request, Response, Status};

use crate::convert::memory as convert;
use crate::pb;
use crate::pb::rag_tool_service_server::RagToolService;
use crate::pb::vector_io_service_server::VectorIoService;
use crate::status::status;

pub(crate) struct VectorIo(pub Arc<Stack>);
pub(crate) struct RagTool(pub Arc<Stack>);

/// Ids may carry a leading `/` from a client base URL; HTTP forgives it too.
fn id(raw: &str) -> &str {
    raw.trim_start_matches('/')
}

#[tonic::async_trait]
impl VectorIoService for VectorIo {
    async fn list_vector_dbs(
        &self,
        _request: Request<pb::ListVectorDbsRequest>,
    ) -> Result<Response<pb::ListVectorDbsResponse>, Status> {
        let data = self
            .0
            .memory
            .list_vector_dbs()
            .await
            .into_iter()
            .map(convert::vector_db_to_pb)
            .collect();
        Ok(Response::new(pb::ListVectorDbsResponse { data }))
    }

    async fn get_vector_db(
        &self,
        request: Request<pb::GetVectorDbRequest>,
    ) -> Result<Response<pb::VectorDb>, Status> {
        let raw = request.into_inner().vector_db_id;
        let db = self
            .0
            .memory
            .get_vector_db(id(&raw))
            .await
            .map_err(status)?;
        Ok(Response::new(convert::vector_db_to_pb(db)))
    }

    async fn register_vector_db(
        &self,
        request: Request<pb::RegisterVectorDbRequest>,
    ) -> Result<Response<pb::VectorDb>, Status> {
        let request = convert::register_vector_db_from_pb(request.into_inner());
        let db = self
            .0
            .memory
            .register_vector_db(request)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::vector_db_to_pb(db)))
    }

    async fn unregister_vector_db(
        &self,
        request: Request<pb::UnregisterVectorDbRequest>,
    ) -> Result<Response<pb::UnregisterVectorDbResponse>, Status> {
        let raw = request.into_inner().vector_db_id;
        self.0
            .memory
            .unregister_vector_db(id(&raw))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UnregisterVectorDbResponse {}))
    }

    async fn insert(
        &self,
        request: Request<pb::InsertChunksRequest>,
    ) -> Result<Response<pb::InsertChunksResponse>, Status> {
        let request = convert::insert_from_pb(request.into_inner()).map_err(status)?;
        self.0.memory.insert_chunks(request).await.map_err(status)?;
        Ok(Response::new(pb::InsertChunksResponse {}))
    }

    async fn query(
        &self,
        request: Request<pb::QueryChunksRequest>,
    ) -> Result<Response<pb::QueryChunksResponse>, Status> {
        let request = convert::query_from_pb(request.into_inner()).map_err(status)?;
        let response = self.0.memory.query_chunks(request).await.map_err(status)?;
        Ok(Response::new(
            convert::query_response_to_pb(response).map_err(status)?,
        ))
    }
}

#[tonic::async_trait]
impl RagToolService for RagTool {
    async fn insert(
        &self,
        request: Request<pb::RagInsertRequest>,
    ) -> Result<Response<pb::RagInsertResponse>, Status> {
        let request = convert::rag_insert_from_pb(request.into_inner()).map_err(status)?;
        self.0.tools.rag_insert(request).await.map_err(status)?;
        Ok(Response::new(pb::RagInsertResponse {}))
    }

    async fn query(
        &self,
        request: Request<pb::RagQueryRequest>,
    ) -> Result<Response<pb::RagQueryResponse>, Status> {
        let request = convert::rag_query_from_pb(request.into_inner()).map_err(status)?;
        let result = self.0.tools.rag_query(request).await.map_err(status)?;
        Ok(Response::new(
            convert::rag_result_to_pb(result).map_err(status)?,
        ))
    }
}
