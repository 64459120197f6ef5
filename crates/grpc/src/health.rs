//! `grpc.health.v1.Health`: what the server and each API service report, and the switch to
//! `NOT_SERVING` when the server starts draining.

use llama_stack_stack::Stack;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health as HealthApi, HealthServer};
use tonic_health::server::HealthReporter;

use crate::{PACKAGE, services};

/// The reporter behind a health service, with the names it reports on.
pub(crate) struct Health {
    reporter: HealthReporter,
    services: Vec<String>,
}

impl Health {
    /// The service: the server (`""`) is serving; each API service is serving when the
    /// distribution serves its API, and not serving otherwise.
    pub(crate) fn new(stack: &Stack) -> (Health, HealthServer<impl HealthApi>) {
        let (reporter, service) = tonic_health::server::health_reporter();
        let mut names: Vec<&str> = services::inspect::methods()
            .iter()
            .map(|m| m.service.as_str())
            .collect();
        names.dedup();
        let mut services = Vec::with_capacity(names.len());
        for name in names {
            let serving = services::inspect::service_api(name).is_none_or(|api| stack.serves(api));
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            let full_name = format!("{PACKAGE}.{name}");
            // A fresh reporter's lock is free, so this completes at once without a runtime.
            futures::executor::block_on(reporter.set_service_status(&full_name, status));
            services.push(full_name);
        }
        (Health { reporter, services }, service)
    }

    /// Reports the server and every service as not serving: it is draining, so load
    /// balancers and clients watching health send new calls elsewhere.
    pub(crate) async fn drain(&self) {
        self.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in &self.services {
            self.reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    }
}
