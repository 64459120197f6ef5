//! Token budgets (`server.quota.authenticated_max_tokens`) at the points every generation
//! passes: a caller over budget is refused before the provider is called, and what an answer
//! used (its token metrics, or an upstream's `usage`) is counted when it is known.

use futures::StreamExt;
use llama_stack_core::Result;
use llama_stack_core::quota::tokens::{self, Meter};
use llama_stack_types::MetricInResponse;

use crate::provider::{ChatStream, CompletionStream, ForwardedReply};

pub(crate) async fn admit() -> Result<Option<Meter>> {
    tokens::admit().await
}

fn from_metrics(metrics: &[MetricInResponse]) -> u64 {
    let get = |name: &str| {
        metrics
            .iter()
            .find(|m| m.metric == name)
            .map(|m| m.value.max(0.0) as u64)
    };
    get("total_tokens").unwrap_or_else(|| {
        get("prompt_tokens").unwrap_or(0) + get("completion_tokens").unwrap_or(0)
    })
}

fn from_usage(value: &serde_json::Value) -> u64 {
    let usage = &value["usage"];
    usage["total_tokens"].as_u64().unwrap_or_else(|| {
        usage["prompt_tokens"].as_u64().unwrap_or(0)
            + usage["completion_tokens"].as_u64().unwrap_or(0)
    })
}

pub(crate) fn chat(stream: ChatStream, meter: Option<Meter>) -> ChatStream {
    let Some(meter) = meter else { return stream };
    stream
        .inspect(move |chunk| {
            if let Ok(Some(metrics)) = chunk.as_ref().map(|c| c.metrics.as_deref()) {
                meter.spend(from_metrics(metrics));
            }
        })
        .boxed()
}

pub(crate) fn completion(stream: CompletionStream, meter: Option<Meter>) -> CompletionStream {
    let Some(meter) = meter else { return stream };
    stream
        .inspect(move |chunk| {
            if let Ok(Some(metrics)) = chunk.as_ref().map(|c| c.metrics.as_deref()) {
                meter.spend(from_metrics(metrics));
            }
        })
        .boxed()
}

/// An upstream's answer: `usage` of the object, or of the stream chunk that carries it (sent
/// when the client asked for `stream_options.include_usage`; otherwise a forwarded stream is
/// not counted).
pub(crate) fn forwarded(reply: ForwardedReply, meter: Option<Meter>) -> ForwardedReply {
    let Some(meter) = meter else { return reply };
    match reply {
        ForwardedReply::Json(value) => {
            meter.spend(from_usage(&value));
            ForwardedReply::Json(value)
        }
        ForwardedReply::Stream(stream) => ForwardedReply::Stream(
            stream
                .inspect(move |item| {
                    if let Ok(value) = item {
                        meter.spend(from_usage(value));
                    }
                })
                .boxed(),
        ),
    }
}
