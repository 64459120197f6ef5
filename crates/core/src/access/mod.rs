//! Access control: who is calling, and whether they may touch a resource.
//!
//! A transport authenticates a request and runs it inside [`with_caller`]; the shared service
//! functions then ask [`check`], [`allowed`] and [`owner_for_new`] without any handle being
//! threaded through. When `server.auth` configures no authentication, no caller is ever set
//! and every check passes, as upstream behaves. When it does, code that runs outside a
//! request (a spawned task that lost its scope) is denied: background work re-enters a scope
//! with [`current`] / [`within`], or runs as the resource's owner with [`as_user`]; a stream
//! polled after its handler returned is wrapped in [`scoped_stream`].
//!
//! Resource types, as policies name them (`model::*`): `model`, `shield`, `vector_db`,
//! `vector_store`, `file`, `tool_group`, `agent`, `session`, `response`, `conversation`,
//! `prompt`, `chat_completion`.

mod policy;

use std::future::Future;
use std::sync::Arc;
use std::sync::OnceLock;

pub use llama_stack_types::User;
pub use policy::{AccessPolicy, Action, Condition, RoutePolicy};

use crate::Error;

/// The caller of the current request.
#[derive(Clone, Debug)]
pub enum Caller {
    /// An authenticated user, judged by the distribution's access policy.
    User(User),
    /// The server itself: start-up restore, resumed jobs with no owner. Allowed everything.
    System,
}

tokio::task_local! {
    static CALLER: Caller;
}

/// The policy, set once at start-up when `server.auth` authenticates callers. From then on,
/// code that runs with no caller is denied rather than trusted.
static POLICY: OnceLock<Arc<AccessPolicy>> = OnceLock::new();

/// Turns enforcement on with `policy`. A second call keeps the first policy (one server per
/// process); it returns whether this call's policy is the one in force.
pub fn enforce(policy: AccessPolicy) -> bool {
    POLICY.set(Arc::new(policy)).is_ok()
}

pub fn enforcing() -> bool {
    POLICY.get().is_some()
}

/// Runs `future` as `caller`.
pub async fn with_caller<F: Future>(caller: Caller, future: F) -> F::Output {
    CALLER.scope(caller, future).await
}

/// Runs `future` with a caller taken earlier by [`current`]: for work spawned on behalf of a
/// request, which would otherwise run with no caller.
pub async fn within<F: Future>(caller: Option<Caller>, future: F) -> F::Output {
    match caller {
        Some(caller) => CALLER.scope(caller, future).await,
        None => future.await,
    }
}

/// Runs `future` as `owner`, or as the server when the work has no owner: for jobs resumed
/// after a restart, which must not gain more than their creator had.
pub async fn as_user<F: Future>(owner: Option<User>, future: F) -> F::Output {
    let caller = match owner {
        Some(user) => Caller::User(user),
        None => Caller::System,
    };
    CALLER.scope(caller, future).await
}

/// `stream` polled as `caller`: for answers streamed after the handler returned, whose polls
/// run outside the request's scope.
pub fn scoped_stream<S>(
    caller: Option<Caller>,
    stream: S,
) -> impl futures::Stream<Item = S::Item> + Send + 'static
where
    S: futures::Stream + Send + 'static,
{
    let mut stream = Box::pin(stream);
    futures::stream::poll_fn(move |cx| match &caller {
        Some(caller) => CALLER.sync_scope(caller.clone(), || stream.as_mut().poll_next(cx)),
        None => stream.as_mut().poll_next(cx),
    })
}

/// Runs `f` synchronously as `caller`: for a body or stream type that polls its inner one.
pub fn sync_scope<R>(caller: &Caller, f: impl FnOnce() -> R) -> R {
    CALLER.sync_scope(caller.clone(), f)
}

/// The caller of the current task, for spawned work to carry along.
pub fn current() -> Option<Caller> {
    CALLER.try_with(Caller::clone).ok()
}

/// The user to record as the owner of a resource created now.
pub fn owner_for_new() -> Option<User> {
    match current() {
        Some(Caller::User(user)) => Some(user),
        _ => None,
    }
}

/// The authenticated user of this request, if any.
pub fn current_user() -> Option<User> {
    owner_for_new()
}

/// Whether the current caller may do `action` to `resource_type::id`, owned by `owner`.
pub fn allowed(action: Action, resource_type: &str, id: &str, owner: Option<&User>) -> bool {
    // Judged in place: a list route asks once per resource, so the caller is not cloned.
    CALLER
        .try_with(|caller| match caller {
            Caller::User(user) => match POLICY.get() {
                Some(policy) => policy.allows(action, resource_type, id, owner, user),
                // A user without a policy only happens in tests of one module: the default.
                None => {
                    AccessPolicy::default_rules().allows(action, resource_type, id, owner, user)
                }
            },
            Caller::System => true,
        })
        .unwrap_or_else(|_| !enforcing())
}

/// Checks `action` on a resource. A caller who may not read it gets `not_found()`, so that its
/// existence does not leak; one who may read it but not do `action` gets a 403.
pub fn check(
    action: Action,
    resource_type: &str,
    id: &str,
    owner: Option<&User>,
    not_found: impl FnOnce() -> Error,
) -> Result<(), Error> {
    if !allowed(Action::Read, resource_type, id, owner) {
        return Err(not_found());
    }
    if action != Action::Read && !allowed(action, resource_type, id, owner) {
        return Err(denied(action, resource_type, id));
    }
    Ok(())
}

/// Checks that the current caller may create `resource_type::id` (owned by themselves).
pub fn check_create(resource_type: &str, id: &str) -> Result<(), Error> {
    let owner = owner_for_new();
    if allowed(Action::Create, resource_type, id, owner.as_ref()) {
        Ok(())
    } else {
        Err(denied(Action::Create, resource_type, id))
    }
}

/// Whether the current caller may read the resource: for filtering lists.
pub fn can_read(resource_type: &str, id: &str, owner: Option<&User>) -> bool {
    allowed(Action::Read, resource_type, id, owner)
}

/// The 403 for an action the caller may not take, in upstream's words.
pub fn denied(action: Action, resource_type: &str, id: &str) -> Error {
    let who = match current() {
        Some(Caller::User(user)) => format!("'{}'", user.principal),
        _ => "anonymous".to_string(),
    };
    Error::forbidden(format!(
        "User {who} cannot perform action '{}' on resource '{resource_type}::{id}'",
        action.as_str()
    ))
}

#[cfg(test)]
mod tests;
