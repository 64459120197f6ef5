//! `llama_stack.v1.InspectService`: health, version, routes and providers.

use std::sync::{Arc, OnceLock};

use llama_stack_core::Api;
use llama_stack_stack::Stack;
use llama_stack_types as types;
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::convert::json::json_to_struct;
use crate::pb;
use crate::pb::inspect_service_server::InspectService;
use crate::status::status;

pub(crate) struct Inspect(pub Arc<Stack>);

/// One gRPC method of this server's API, read from the compiled descriptor set so that the
/// listing cannot drift from what is served.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Method {
    /// `/llama_stack.v1.InferenceService/ChatCompletion`.
    pub path: String,
    pub server_streaming: bool,
    /// The service's short name (`InferenceService`).
    pub service: String,
}

/// Every method of the `llama_stack.v1` services.
pub(crate) fn methods() -> &'static [Method] {
    static METHODS: OnceLock<Vec<Method>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let Ok(set) = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET) else {
            tracing::error!("The compiled descriptor set does not decode; listing no routes");
            return Vec::new();
        };
        let mut out = Vec::new();
        for file in set.file.iter().filter(|f| f.package() == crate::PACKAGE) {
            for service in &file.service {
                for method in &service.method {
                    out.push(Method {
                        path: format!("/{}.{}/{}", crate::PACKAGE, service.name(), method.name()),
                        server_streaming: method.server_streaming(),
                        service: service.name().to_string(),
                    });
                }
            }
        }
        out
    })
}

/// The API whose providers serve a service; `None` for services always present.
pub(crate) fn service_api(service: &str) -> Option<Api> {
    match service {
        "InferenceService" | "ModelsService" => Some(Api::Inference),
        "SafetyService" => Some(Api::Safety),
        "VectorIoService" => Some(Api::VectorIo),
        "RagToolService" => Some(Api::ToolRuntime),
        "AgentsService" => Some(Api::Agents),
        "ResponsesService" => Some(Api::Responses),
        "ToolGroupsService" => Some(Api::ToolRuntime),
        _ => None,
    }
}

fn health_to_pb(health: types::HealthInfo) -> pb::HealthInfo {
    pb::HealthInfo {
        status: match health.status {
            types::HealthStatus::Ok => pb::HealthStatus::Ok,
            types::HealthStatus::Error => pb::HealthStatus::Error,
            types::HealthStatus::NotImplemented => pb::HealthStatus::NotImplemented,
        } as i32,
        message: health.message,
    }
}

fn provider_to_pb(provider: types::ProviderInfo) -> pb::ProviderInfo {
    pb::ProviderInfo {
        api: provider.api,
        provider_id: provider.provider_id,
        provider_type: provider.provider_type,
        config: Some(json_to_struct(&provider.config)),
        health: Some(health_to_pb(provider.health)),
    }
}

#[tonic::async_trait]
impl InspectService for Inspect {
    async fn health(
        &self,
        _request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthInfo>, Status> {
        // As `GET /v1/health`: answering at all is the verdict.
        Ok(Response::new(health_to_pb(types::HealthInfo {
            status: types::HealthStatus::Ok,
            message: None,
        })))
    }

    async fn version(
        &self,
        _request: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: llama_stack_stack::API_VERSION.to_string(),
        }))
    }

    async fn list_routes(
        &self,
        _request: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<pb::ListRoutesResponse>, Status> {
        let data = methods()
            .iter()
            .filter_map(|m| {
                let api = service_api(&m.service);
                if api.is_some_and(|api| !self.0.serves(api)) {
                    return None;
                }
                Some(pb::RouteInfo {
                    route: m.path.clone(),
                    method: if m.server_streaming {
                        "server_streaming"
                    } else {
                        "unary"
                    }
                    .to_string(),
                    provider_types: api
                        .map(|api| self.0.provider_types(api))
                        .unwrap_or_default(),
                })
            })
            .collect();
        Ok(Response::new(pb::ListRoutesResponse { data }))
    }

    async fn list_providers(
        &self,
        _request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let data = self
            .0
            .list_providers()
            .await
            .into_iter()
            .map(provider_to_pb)
            .collect();
        Ok(Response::new(pb::ListProvidersResponse { data }))
    }

    async fn get_provider(
        &self,
        request: Request<pb::GetProviderRequest>,
    ) -> Result<Response<pb::ProviderInfo>, Status> {
        let id = request.into_inner().provider_id;
        let provider = self.0.get_provider(&id).await.map_err(status)?;
        Ok(Response::new(provider_to_pb(provider)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_in_the_descriptor_set_is_known() {
        let methods = methods();
        assert!(methods.iter().any(|m| m.path
            == "/llama_stack.v1.InferenceService/StreamChatCompletion"
            && m.server_streaming));
        for m in methods {
            assert!(
                service_api(&m.service).is_some() || m.service == "InspectService",
                "{} has no API in service_api",
                m.service
            );
        }
    }
}
