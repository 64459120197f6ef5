//! The route table: every route is declared once, by its handler's `#[utoipa::path]` (method,
//! path and OpenAPI entry) plus one table line that names the API serving it and the other
//! forms of its path. The axum router, the OpenAPI document and `/v1/inspect/routes` are all
//! read from the table.

use std::sync::Arc;

use axum::Router;
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

/// The routes of every API, as declared.
pub struct RouteTable {
    router: Router<Arc<Stack>>,
    paths: Vec<(String, PathItem)>,
    schemas: Vec<(String, RefOr<Schema>)>,
    entries: Vec<RouteEntry>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            router: Router::new(),
            paths: Vec::new(),
            schemas: Vec::new(),
            entries: Vec::new(),
        }
    }
}

impl RouteTable {
    /// Adds the handlers `utoipa_axum::routes!` collected (one path), served for `api`.
    pub fn add(
        mut self,
        api: Option<Api>,
        form: Form,
        (schemas, paths, method_router): UtoipaMethodRouter<Arc<Stack>>,
    ) -> Self {
        self.schemas.extend(schemas);
        for (path, item) in paths_of(paths) {
            let mut served = vec![path.clone()];
            if form == Form::AlsoOpenAi {
                let rest = path.strip_prefix("/v1").unwrap_or_else(|| {
                    panic!("route {path} has an OpenAI alias but does not start with /v1")
                });
                served.push(format!("{OPENAI_PREFIX}{rest}"));
            }
            for documented in served {
                let axum_path = match form {
                    Form::Slashed => slashed(&documented),
                    Form::Plain | Form::AlsoOpenAi => documented.clone(),
                };
                self.router = self.router.route(&axum_path, method_router.clone());
                for method in methods_of(&item) {
                    self.entries.push(RouteEntry {
                        method,
                        path: documented.clone(),
                        api,
                    });
                }
                self.paths.push((documented, item.clone()));
            }
        }
        self
    }

    /// Every served route, in declaration order.
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    /// The documented paths (each path once, its operations merged) and the schemas they use.
    pub fn into_openapi_parts(self) -> (Paths, Vec<(String, RefOr<Schema>)>) {
        let mut paths = Paths::new();
        for (path, item) in self.paths {
            match paths.paths.get_mut(&path) {
                Some(existing) => merge(existing, item),
                None => {
                    paths.paths.insert(path, item);
                }
            }
        }
        (paths, self.schemas)
    }

    pub fn into_router(self) -> Router<Arc<Stack>> {
        self.router
    }
}

fn paths_of(paths: Paths) -> Vec<(String, PathItem)> {
    paths.paths.into_iter().collect()
}

/// The methods of a path item, as `/v1/inspect/routes` names them.
fn methods_of(item: &PathItem) -> Vec<&'static str> {
    [
        (HttpMethod::Get, "GET", item.get.is_some()),
        (HttpMethod::Post, "POST", item.post.is_some()),
        (HttpMethod::Put, "PUT", item.put.is_some()),
        (HttpMethod::Delete, "DELETE", item.delete.is_some()),
        (HttpMethod::Patch, "PATCH", item.patch.is_some()),
    ]
    .into_iter()
    .filter(|(_, _, present)| *present)
    .map(|(_, name, _)| name)
    .collect()
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
