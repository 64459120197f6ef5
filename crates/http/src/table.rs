//! The route table: every route is declared once, by its handler's `#[utoipa::path]` (method,
//! path and OpenAPI entry) plus one table line (`declared!`) that names the API serving it and
//! the other forms of its path. The axum router, the OpenAPI document and `/v1/inspect/routes` are all
//! read from the table.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::MethodRouter;
use llama_stack_core::Api;
use llama_stack_stack::Stack;
use utoipa::openapi::path::{HttpMethod, PathItem, Paths};
use utoipa::openapi::{RefOr, schema::Schema};
use utoipa_axum::router::UtoipaMethodRouter;

/// The 0.2-era prefix under which upstream also serves its OpenAI-compatible routes.
pub const OPENAI_PREFIX: &str = "/v1/openai/v1";

/// One served route, for `GET /v1/inspect/routes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub method: &'static str,
    pub path: String,
    /// The API whose providers serve it; `None` for routes always present.
    pub api: Option<Api>,
}

/// Other forms a route's path is served under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Only the documented path.
    Plain,
    /// Also under [`OPENAI_PREFIX`] in place of `/v1` (documented there too).
    AlsoOpenAi,
    /// The last path parameter may contain `/` (model ids such as `org/model`).
    Slashed,
}

/// The handlers of one path, as [`declared!`] collects them. Each part is a function so that the
/// router is built from paths and methods alone: the OpenAPI operations and their schemas are
/// generated only when the document is asked for, never while serving.
pub struct Declared {
    pub path: fn() -> String,
    pub methods: fn() -> Vec<HttpMethod>,
    pub router: fn() -> MethodRouter<Arc<Stack>>,
    pub docs: fn() -> UtoipaMethodRouter<Arc<Stack>>,
    /// A request body limit of these routes' own, instead of the server-wide one.
    pub body_limit: Option<usize>,
}

impl Declared {
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }
}

/// Declares the handlers of one path, each annotated with `#[utoipa::path]`, for
/// [`RouteTable::add`].
macro_rules! declared {
    ($($handler:ident),+ $(,)?) => {
        utoipa_axum::paste! {
            $crate::table::Declared {
                path: || {
                    let paths = [$(<[<__path_ $handler>] as utoipa::Path>::path()),+];
                    debug_assert!(paths.iter().all(|p| p == &paths[0]), "one path per declaration: {paths:?}");
                    paths[0].clone()
                },
                methods: || {
                    let mut methods = Vec::new();
                    $(methods.extend(<[<__path_ $handler>] as utoipa::Path>::methods());)+
                    methods
                },
                router: || {
                    let mut router = axum::routing::MethodRouter::new();
                    $(for method in <[<__path_ $handler>] as utoipa::Path>::methods() {
                        router = router.on(utoipa_axum::PathItemExt::to_method_filter(&method), $handler);
                    })+
                    router
                },
                docs: || utoipa_axum::routes!($($handler),+),
                body_limit: None,
            }
        }
    };
}
pub(crate) use declared;

/// The routes of every API, as declared.
#[derive(Default)]
pub struct RouteTable {
    declared: Vec<(Option<Api>, Form, Declared)>,
}

impl RouteTable {
    /// Adds the handlers of one path, served for `api` under the paths `form` says.
    pub fn add(mut self, api: Option<Api>, form: Form, declared: Declared) -> Self {
        self.declared.push((api, form, declared));
        self
    }

    /// Every served route, in declaration order.
    pub fn entries(&self) -> Vec<RouteEntry> {
        let mut entries = Vec::new();
        for (api, form, declared) in &self.declared {
            let methods = (declared.methods)();
            for path in documented_paths(&(declared.path)(), *form) {
                for method in &methods {
                    entries.push(RouteEntry {
                        method: method_name(method),
                        path: path.clone(),
                        api: *api,
                    });
                }
            }
        }
        entries
    }

    /// The router; routes that declared a body limit of their own (uploads) get `upload_limit`.
    pub fn into_router(self, upload_limit: usize) -> Router<Arc<Stack>> {
        let mut router = Router::new();
        for (_, form, declared) in self.declared {
            let mut methods = (declared.router)();
            if declared.body_limit.is_some() {
                methods = methods.layer(DefaultBodyLimit::max(upload_limit));
            }
            for path in documented_paths(&(declared.path)(), form) {
                let served = match form {
                    Form::Slashed => slashed(&path),
                    Form::Plain | Form::AlsoOpenAi => path,
                };
                router = router.route(&served, methods.clone());
            }
        }
        router
    }

    /// The documented paths (each path once, its operations merged) and the schemas they use.
    pub fn into_openapi_parts(self) -> (Paths, Vec<(String, RefOr<Schema>)>) {
        let mut paths = Paths::new();
        let mut all_schemas = Vec::new();
        for (_, form, declared) in self.declared {
            let (schemas, documented, _) = (declared.docs)();
            all_schemas.extend(schemas);
            for (path, mut item) in documented.paths {
                with_error_responses(&mut item);
                for path in documented_paths(&path, form) {
                    match paths.paths.get_mut(&path) {
                        Some(existing) => merge(existing, item.clone()),
                        None => {
                            paths.paths.insert(path, item.clone());
                        }
                    }
                }
            }
        }
        (paths, all_schemas)
    }
}

/// The error statuses every route may answer (see `crate::error` for the mapping from error
/// kinds), so generated clients and fuzzers expect them. Routes that declare their own keep it.
const ERROR_RESPONSES: &[(&str, &str)] = &[
    (
        "400",
        "The request is invalid; the error body names the field and says what to send",
    ),
    ("401", "Authentication is required"),
    (
        "403",
        "The request is not allowed (an address refused by the SSRF policy, say)",
    ),
    (
        "404",
        "The named resource (model, store, file, agent, ...) does not exist",
    ),
    (
        "409",
        "A different resource is registered under this identifier",
    ),
    ("413", "The request body is larger than the server accepts"),
    (
        "429",
        "Too many requests; retry after the `Retry-After` delay",
    ),
    ("500", "An internal error; details are in the server log"),
    ("501", "Not implemented by this distribution's providers"),
    ("502", "The upstream service failed"),
    (
        "503",
        "The engine's queue is full or an upstream is unavailable; retry after `Retry-After`",
    ),
    ("504", "The upstream did not answer in time"),
];

fn with_error_responses(item: &mut PathItem) {
    for op in [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
    {
        for (status, description) in ERROR_RESPONSES {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| {
                    RefOr::T(
                        utoipa::openapi::ResponseBuilder::new()
                            .description(*description)
                            .build(),
                    )
                });
        }
    }
}

/// The documented forms of a declared path: itself, and its OpenAI alias where declared.
fn documented_paths(path: &str, form: Form) -> Vec<String> {
    let mut paths = vec![path.to_string()];
    if form == Form::AlsoOpenAi {
        let rest = path.strip_prefix("/v1").unwrap_or_else(|| {
            panic!("route {path} has an OpenAI alias but does not start with /v1")
        });
        paths.push(format!("{OPENAI_PREFIX}{rest}"));
    }
    paths
}

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Head => "HEAD",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Trace => "TRACE",
    }
}

fn merge(into: &mut PathItem, from: PathItem) {
    into.get = into.get.take().or(from.get);
    into.post = into.post.take().or(from.post);
    into.put = into.put.take().or(from.put);
    into.delete = into.delete.take().or(from.delete);
    into.patch = into.patch.take().or(from.patch);
}

/// `/v1/models/{model_id}` as axum's catch-all `/v1/models/{*model_id}`.
fn slashed(path: &str) -> String {
    match path.rfind('{') {
        Some(i) if path.ends_with('}') => format!("{}{{*{}", &path[..i], &path[i + 1..]),
        _ => panic!("route {path} is declared slashed but does not end with a path parameter"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_parameter_becomes_a_catch_all() {
        assert_eq!(slashed("/v1/models/{model_id}"), "/v1/models/{*model_id}");
    }
}
