//! The model registry.

use llama_stack_grpc::pb;
use tonic::Code;

use crate::support::{self, EMBEDDER, LLM};

#[tokio::test]
async fn models_list_get_register_and_unregister() {
    let h = support::start().await;
    let mut models = h.models();
    let list = models
        .list_models(pb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    let (_, http) = h.get("/v1/models").await;
    let ids: Vec<&str> = list.data.iter().map(|m| m.identifier.as_str()).collect();
    let http_ids: Vec<&str> = http["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(ids, http_ids);
    // run.yaml models register as `<provider_id>/<model_id>`.
    let served: Vec<&str> = list
        .data
        .iter()
        .map(|m| m.provider_resource_id.as_str())
        .collect();
    assert!(
        served.contains(&LLM) && served.contains(&EMBEDDER),
        "{served:?}"
    );

    let embedder = models
        .get_model(pb::GetModelRequest {
            model_id: EMBEDDER.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(embedder.model_type(), pb::ModelType::Embedding);
    let dimension = &embedder.metadata.unwrap().fields["embedding_dimension"];
    assert_eq!(
        dimension.kind,
        Some(prost_types::value::Kind::NumberValue(8.0))
    );

    let registered = models
        .register_model(pb::RegisterModelRequest {
            model_id: "extra".into(),
            provider_model_id: Some("upstream-extra".into()),
            provider_id: Some("canned".into()),
            metadata: None,
            model_type: pb::ModelType::Llm as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registered.provider_resource_id, "upstream-extra");
    let (status, http_model) = h.get("/v1/models/extra").await;
    assert_eq!(status, 200);
    assert_eq!(http_model["provider_resource_id"], "upstream-extra");

    models
        .unregister_model(pb::UnregisterModelRequest {
            model_id: "extra".into(),
        })
        .await
        .unwrap();
    let gone = models
        .get_model(pb::GetModelRequest {
            model_id: "extra".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert!(gone.message().contains("extra"), "{}", gone.message());
    // The classic HTTP route answers 400 for the same error (see proto/README.md).
    assert_eq!(h.get("/v1/models/extra").await.0, 400);

    let empty = models
        .register_model(pb::RegisterModelRequest {
            model_id: " ".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
}
