//! Replicas on one metadata store behave as one server: what another replica registers or
//! removes (models, shields, vector stores, tool groups) is read again here as soon as the
//! store's change feed announces it. On PostgreSQL that is `LISTEN/NOTIFY`, so a change is
//! visible on every replica within milliseconds of its commit; a store only this process uses
//! has no feed and nothing to do.

use std::sync::Weak;

use llama_stack_core::{RegistryChange, RegistryStore, access};
use llama_stack_stack::Stack;
use tokio::sync::broadcast::error::RecvError;

/// Starts following the store's changes for `stack`, as the server (no caller), until the
/// stack is dropped.
pub async fn follow(store: &dyn RegistryStore, stack: Weak<Stack>) {
    let Some(mut feed) = store.watch().await else {
        return;
    };
    tokio::spawn(access::as_user(None, async move {
        // Whatever changed between start-up and the subscription.
        if let Some(stack) = stack.upgrade() {
            reload_all(&stack).await;
        }
        loop {
            let change = match feed.recv().await {
                Ok(change) => change,
                // Fell behind the feed: some changes were dropped, so read everything.
                Err(RecvError::Lagged(_)) => RegistryChange::Resync,
                Err(RecvError::Closed) => return,
            };
            let Some(stack) = stack.upgrade() else {
                return;
            };
            match change {
                RegistryChange::Resync => reload_all(&stack).await,
                RegistryChange::Object { kind, identifier } => {
                    let done = match kind.as_str() {
                        "model" => stack.inference.reload_model(&identifier).await,
                        "shield" => stack.safety.reload_shield(&identifier).await,
                        "vector_db" => stack.memory.reload_store(&identifier).await,
                        "tool_group" => stack.tools.reload_tool_group(&identifier).await,
                        // Other kinds (sessions, responses, files, ...) are read from the store
                        // on each use.
                        _ => Ok(()),
                    };
                    if let Err(err) = done {
                        tracing::warn!(kind = %kind, id = %identifier, error = %err,
                            "Cannot apply another replica's change");
                    }
                }
            }
        }
    }));
}

async fn reload_all(stack: &Stack) {
    let results = [
        stack.inference.reload_models().await,
        stack.safety.reload_shields().await,
        stack.memory.reload_stores().await,
        stack.tools.reload_tool_groups().await,
    ];
    for err in results.into_iter().filter_map(Result::err) {
        tracing::warn!(error = %err, "Cannot reload the registry");
    }
}
