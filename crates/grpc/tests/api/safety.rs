//! Shields: the same verdicts as HTTP, and the registry.

use llama_stack_grpc::pb;
use serde_json::json;
use tonic::Code;

use crate::support::{self, user};

const INSECURE: &str = "import hashlib\ndigest = hashlib.md5(password).hexdigest()\n";

#[tokio::test]
async fn shield_verdicts_match_http() {
    let h = support::start().await;
    let mut safety = pb::safety_service_client::SafetyServiceClient::new(h.channel.clone());
    for text in [INSECURE, "Just a friendly hello."] {
        let grpc = safety
            .run_shield(pb::RunShieldRequest {
                shield_id: "CodeScanner".into(),
                messages: vec![user(text)],
                params: None,
            })
            .await
            .unwrap()
            .into_inner();
        let (status, http) = h
            .post(
                "/v1/safety/run-shield",
                json!({"shield_id": "CodeScanner", "params": {},
                       "messages": [{"role": "user", "content": text}]}),
            )
            .await;
        assert_eq!(status, 200);
        match grpc.violation {
            None => assert!(http["violation"].is_null(), "{http}"),
            Some(v) => {
                let expected = &http["violation"];
                assert_eq!(v.violation_level(), pb::ViolationLevel::Error);
                assert_eq!(expected["violation_level"], "error");
                assert_eq!(v.user_message.as_deref(), expected["user_message"].as_str());
                let metadata = v.metadata.unwrap();
                let kind = &metadata.fields["violation_type"];
                assert_eq!(
                    kind.kind,
                    Some(prost_types::value::Kind::StringValue(
                        expected["metadata"]["violation_type"]
                            .as_str()
                            .unwrap()
                            .into()
                    ))
                );
            }
        }
    }

    let err = safety
        .run_shield(pb::RunShieldRequest {
            shield_id: "no-such-shield".into(),
            messages: vec![user("hi")],
            params: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn shields_list_get_register_and_unregister() {
    let h = support::start().await;
    let mut safety = pb::safety_service_client::SafetyServiceClient::new(h.channel.clone());
    let list = safety
        .list_shields(pb::ListShieldsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.data.len(), 1);
    assert_eq!(list.data[0].identifier, "CodeScanner");

    let shield = safety
        .register_shield(pb::RegisterShieldRequest {
            shield_id: "code-shield".into(),
            provider_shield_id: Some("CodeShield".into()),
            provider_id: Some("code-scanner".into()),
            params: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shield.provider_resource_id, "CodeShield");
    let (_, http) = h.get("/v1/shields/code-shield").await;
    assert_eq!(http["provider_resource_id"], "CodeShield");
    let got = safety
        .get_shield(pb::GetShieldRequest {
            identifier: "code-shield".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, shield);

    safety
        .unregister_shield(pb::UnregisterShieldRequest {
            identifier: "code-shield".into(),
        })
        .await
        .unwrap();
    let gone = safety
        .get_shield(pb::GetShieldRequest {
            identifier: "code-shield".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    let bad = safety
        .register_shield(pb::RegisterShieldRequest {
            shield_id: "x".into(),
            provider_shield_id: Some("NotAScanner".into()),
            provider_id: Some("code-scanner".into()),
            params: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn moderations_match_http() {
    let h = support::start().await;
    let mut safety = pb::safety_service_client::SafetyServiceClient::new(h.channel.clone());
    let grpc = safety
        .moderate(pb::ModerateRequest {
            input: vec![INSECURE.into(), "print(1)".into()],
            model: "CodeScanner".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (status, http) = h
        .post(
            "/v1/moderations",
            json!({"model": "CodeScanner", "input": [INSECURE, "print(1)"]}),
        )
        .await;
    assert_eq!(status, 200, "{http}");
    let flagged: Vec<bool> = grpc.results.iter().map(|r| r.flagged).collect();
    assert_eq!(flagged, [true, false]);
    assert_eq!(http["results"][0]["flagged"], true);
    assert_eq!(http["results"][1]["flagged"], false);
    assert_eq!(grpc.model, http["model"].as_str().unwrap());
    assert_eq!(
        grpc.results[0].user_message.as_deref(),
        http["results"][0]["user_message"].as_str()
    );
    let err = safety
        .moderate(pb::ModerateRequest {
            input: vec!["hi".into()],
            model: "no-such-shield".into(),
        })
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
}
