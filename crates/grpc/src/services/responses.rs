//! `llama_stack.v1.ResponsesService`: the OpenAI Responses API and conversations. Bodies and
//! objects stay the JSON the HTTP routes take and answer, carried as `Struct`s, so the provider
//! reports a bad field by its JSON name over both transports.

use std::sync::Arc;

use llama_stack_core::{Error, Result};
use llama_stack_responses::{CreatedResponse, ListQuery};
use llama_stack_stack::Stack;
use prost_types::Struct;
use serde_json::{Map, Value};
use tonic::{Request, Response, Status};

use crate::convert::json::{json_to_struct, opt_struct_to_map};
use crate::pb;
use crate::pb::responses_service_server::ResponsesService;
use crate::status::status;
use crate::stream::{ReplyStream, deadline, reply};

pub(crate) struct Responses(pub Arc<Stack>);

impl Responses {
    fn api(&self) -> Result<Arc<dyn llama_stack_responses::Responses>, Status> {
        self.0.responses().map_err(status)
    }
}

fn query(
    limit: Option<u32>,
    order: Option<String>,
    after: Option<String>,
    before: Option<String>,
    model: Option<String>,
) -> ListQuery {
    ListQuery {
        limit: limit.map(|n| n as usize),
        order,
        after,
        before,
        model,
    }
}

fn object(value: &Value) -> Option<Struct> {
    Some(json_to_struct(value))
}

fn response_to_pb(value: Value) -> pb::ResponseObject {
    pb::ResponseObject {
        response: object(&value),
    }
}

fn conversation_to_pb(value: Value) -> pb::Conversation {
    pb::Conversation {
        conversation: object(&value),
    }
}

/// `{"object": "list", "data": [...], "first_id", "last_id", "has_more"}`.
fn list_to_pb(value: Value) -> pb::ObjectList {
    let id = |key: &str| value[key].as_str().map(str::to_string);
    pb::ObjectList {
        data: value["data"]
            .as_array()
            .map(|items| items.iter().map(json_to_struct).collect())
            .unwrap_or_default(),
        first_id: id("first_id"),
        last_id: id("last_id"),
        has_more: value["has_more"].as_bool().unwrap_or(false),
    }
}

fn deleted_to_pb(value: Value) -> pb::DeletedObject {
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
    pb::DeletedObject {
        id: text("id"),
        object: text("object"),
        deleted: value["deleted"].as_bool().unwrap_or(false),
    }
}

fn event_to_pb(event: Value) -> pb::ResponseEvent {
    pb::ResponseEvent {
        r#type: event["type"].as_str().unwrap_or_default().to_string(),
        sequence_number: event["sequence_number"].as_u64().unwrap_or_default(),
        event: object(&event),
    }
}

/// The body of a `CreateResponse`: streaming has its own method, so that each method has one
/// reply type.
fn unary_body(body: Option<Struct>) -> Result<Map<String, Value>> {
    let body = opt_struct_to_map(body);
    if body.get("stream") == Some(&Value::Bool(true)) {
        return Err(Error::invalid(
            "stream: CreateResponse answers with the finished response; call StreamResponse for its events",
        ));
    }
    Ok(body)
}

fn streamed_body(body: Option<Struct>) -> Map<String, Value> {
    let mut body = opt_struct_to_map(body);
    body.insert("stream".into(), Value::Bool(true));
    body
}

#[tonic::async_trait]
impl ResponsesService for Responses {
    async fn create_response(
        &self,
        request: Request<pb::CreateResponseRequest>,
    ) -> Result<Response<pb::ResponseObject>, Status> {
        let body = unary_body(request.into_inner().body).map_err(status)?;
        self.0.info.check_limits(&body).map_err(status)?;
        match self.api()?.create_response(body).await.map_err(status)? {
            CreatedResponse::Object(value) => Ok(Response::new(response_to_pb(value))),
            CreatedResponse::Stream(_) => Err(status(Error::internal(
                "The responses provider streamed a request without stream: true",
            ))),
        }
    }

    type StreamResponseStream = ReplyStream<pb::ResponseEvent>;

    async fn stream_response(
        &self,
        request: Request<pb::CreateResponseRequest>,
    ) -> Result<Response<Self::StreamResponseStream>, Status> {
        let deadline = deadline(request.metadata());
        let body = streamed_body(request.into_inner().body);
        self.0.info.check_limits(&body).map_err(status)?;
        match self.api()?.create_response(body).await.map_err(status)? {
            CreatedResponse::Stream(events) => {
                Ok(Response::new(reply(events, event_to_pb, deadline)))
            }
            CreatedResponse::Object(_) => Err(status(Error::internal(
                "The responses provider did not stream a request with stream: true",
            ))),
        }
    }

    async fn get_response(
        &self,
        request: Request<pb::GetResponseRequest>,
    ) -> Result<Response<pb::ResponseObject>, Status> {
        let id = request.into_inner().response_id;
        let value = self.api()?.get_response(&id).await.map_err(status)?;
        Ok(Response::new(response_to_pb(value)))
    }

    async fn list_responses(
        &self,
        request: Request<pb::ListResponsesRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let r = request.into_inner();
        let q = query(r.limit, r.order, r.after, r.before, r.model);
        let value = self.api()?.list_responses(q).await.map_err(status)?;
        Ok(Response::new(list_to_pb(value)))
    }

    async fn delete_response(
        &self,
        request: Request<pb::DeleteResponseRequest>,
    ) -> Result<Response<pb::DeletedObject>, Status> {
        let id = request.into_inner().response_id;
        let value = self.api()?.delete_response(&id).await.map_err(status)?;
        Ok(Response::new(deleted_to_pb(value)))
    }

    async fn list_input_items(
        &self,
        request: Request<pb::ListInputItemsRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let r = request.into_inner();
        let q = query(r.limit, r.order, r.after, r.before, None);
        let value = self
            .api()?
            .list_input_items(&r.response_id, q)
            .await
            .map_err(status)?;
        Ok(Response::new(list_to_pb(value)))
    }

    async fn cancel_response(
        &self,
        request: Request<pb::CancelResponseRequest>,
    ) -> Result<Response<pb::ResponseObject>, Status> {
        let id = request.into_inner().response_id;
        let value = self.api()?.cancel_response(&id).await.map_err(status)?;
        Ok(Response::new(response_to_pb(value)))
    }

    async fn create_conversation(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let body = opt_struct_to_map(request.into_inner().body);
        let value = self
            .api()?
            .create_conversation(body)
            .await
            .map_err(status)?;
        Ok(Response::new(conversation_to_pb(value)))
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let id = request.into_inner().conversation_id;
        let value = self.api()?.get_conversation(&id).await.map_err(status)?;
        Ok(Response::new(conversation_to_pb(value)))
    }

    async fn update_conversation(
        &self,
        request: Request<pb::UpdateConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let r = request.into_inner();
        let body = opt_struct_to_map(r.body);
        let value = self
            .api()?
            .update_conversation(&r.conversation_id, body)
            .await
            .map_err(status)?;
        Ok(Response::new(conversation_to_pb(value)))
    }

    async fn delete_conversation(
        &self,
        request: Request<pb::DeleteConversationRequest>,
    ) -> Result<Response<pb::DeletedObject>, Status> {
        let id = request.into_inner().conversation_id;
        let value = self.api()?.delete_conversation(&id).await.map_err(status)?;
        Ok(Response::new(deleted_to_pb(value)))
    }

    async fn list_conversation_items(
        &self,
        request: Request<pb::ListConversationItemsRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let r = request.into_inner();
        let q = query(r.limit, r.order, r.after, r.before, None);
        let value = self
            .api()?
            .list_conversation_items(&r.conversation_id, q)
            .await
            .map_err(status)?;
        Ok(Response::new(list_to_pb(value)))
    }

    async fn add_conversation_items(
        &self,
        request: Request<pb::AddConversationItemsRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let r = request.into_inner();
        let body = opt_struct_to_map(r.body);
        let value = self
            .api()?
            .add_conversation_items(&r.conversation_id, body)
            .await
            .map_err(status)?;
        Ok(Response::new(list_to_pb(value)))
    }

    async fn get_conversation_item(
        &self,
        request: Request<pb::GetConversationItemRequest>,
    ) -> Result<Response<pb::ConversationItem>, Status> {
        let r = request.into_inner();
        let value = self
            .api()?
            .get_conversation_item(&r.conversation_id, &r.item_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConversationItem {
            item: object(&value),
        }))
    }

    async fn delete_conversation_item(
        &self,
        request: Request<pb::DeleteConversationItemRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let r = request.into_inner();
        let value = self
            .api()?
            .delete_conversation_item(&r.conversation_id, &r.item_id)
            .await
            .map_err(status)?;
        Ok(Response::new(conversation_to_pb(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::json::map_to_struct;
    use serde_json::json;

    fn body(value: Value) -> Option<Struct> {
        Some(map_to_struct(value.as_object().unwrap()))
    }

    #[test]
    fn the_unary_method_refuses_stream_true_and_the_streaming_one_sets_it() {
        let err = unary_body(body(json!({"model": "m", "stream": true}))).unwrap_err();
        assert_eq!(err.kind(), llama_stack_core::ErrorKind::InvalidRequest);
        assert!(err.to_string().contains("StreamResponse"), "{err}");
        let kept = unary_body(body(json!({"model": "m", "stream": false}))).unwrap();
        assert_eq!(kept["stream"], false);
        assert!(unary_body(None).unwrap().is_empty());
        let streamed = streamed_body(body(json!({"model": "m", "stream": false})));
        assert_eq!(streamed["stream"], true);
        assert_eq!(streamed_body(None)["stream"], true);
    }

    #[test]
    fn lists_and_deletions_keep_their_paging_and_ids() {
        let list = list_to_pb(json!({"object": "list", "data": [{"id": "a"}, {"id": "b"}],
                                     "first_id": "a", "last_id": "b", "has_more": true}));
        assert_eq!(list.data.len(), 2);
        assert_eq!(list.first_id.as_deref(), Some("a"));
        assert_eq!(list.last_id.as_deref(), Some("b"));
        assert!(list.has_more);
        let empty = list_to_pb(json!({"object": "list", "data": [], "first_id": null,
                                      "last_id": null, "has_more": false}));
        assert!(empty.data.is_empty() && empty.first_id.is_none() && !empty.has_more);
        let deleted = deleted_to_pb(json!({"id": "resp_1", "object": "response", "deleted": true}));
        assert_eq!(
            (
                deleted.id.as_str(),
                deleted.object.as_str(),
                deleted.deleted
            ),
            ("resp_1", "response", true)
        );
    }

    #[test]
    fn an_event_carries_its_type_and_sequence_number_outside_too() {
        let event = event_to_pb(json!({"type": "response.created", "sequence_number": 3,
                                       "response": {"id": "resp_1"}}));
        assert_eq!(event.r#type, "response.created");
        assert_eq!(event.sequence_number, 3);
        assert!(event.event.unwrap().fields.contains_key("response"));
    }
}
