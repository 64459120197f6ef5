//! Server-streaming replies: core streams mapped item by item, ended by the first error (as
//! the HTTP SSE stream is), and cut at the client's deadline.
//!
//! Cancellation needs no code here: when a client cancels or goes away, tonic drops the reply
//! stream, which drops the core stream and with it the provider's upstream request, so
//! generation stops. A deadline is enforced here as well, because tonic only bounds the time
//! to the first response message; a stream that outlives the deadline is dropped the same way.

use std::pin::Pin;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::status::to_status;

/// The stream type of every server-streaming method.
pub type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The header a gRPC client sends its deadline in.
const TIMEOUT_HEADER: &str = "grpc-timeout";

/// When the call's deadline passes, from its `grpc-timeout` header (`<digits><unit>`, unit one
/// of `H M S m u n`). A malformed header is ignored, as tonic's own timeout layer does.
pub(crate) fn deadline(metadata: &MetadataMap) -> Option<Instant> {
    let value = metadata.get(TIMEOUT_HEADER)?.to_str().ok()?;
    parse_timeout(value).map(|timeout| Instant::now() + timeout)
}

fn parse_timeout(value: &str) -> Option<Duration> {
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at(split);
    // The gRPC spec allows at most 8 digits.
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

struct State<T> {
    inner: Option<BoxStream<'static, llama_stack_core::Result<T>>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

/// `stream` with each item converted by `convert`, ended after its first error, and cut with
/// `DEADLINE_EXCEEDED` at `deadline`.
pub(crate) fn reply<T, U>(
    stream: BoxStream<'static, llama_stack_core::Result<T>>,
    convert: fn(T) -> U,
    deadline: Option<Instant>,
) -> ReplyStream<U>
where
    T: Send + 'static,
    U: Send + 'static,
{
    let state = State {
        inner: Some(stream),
        deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
    };
    Box::pin(futures::stream::unfold(
        state,
        move |mut state| async move {
            let mut inner = state.inner.take()?;
            let next = match state.deadline.as_mut() {
                Some(sleep) => tokio::select! {
                    item = inner.next() => Some(item),
                    _ = sleep.as_mut() => None,
                },
                None => Some(inner.next().await),
            };
            match next {
                // Dropping `inner` here stops generation.
                None => Some((
                    Err(Status::deadline_exceeded(
                        "The call's deadline passed before the stream ended",
                    )),
                    state,
                )),
                Some(None) => None,
                Some(Some(Ok(item))) => {
                    state.inner = Some(inner);
                    Some((Ok(convert(item)), state))
                }
                Some(Some(Err(err))) => Some((Err(to_status(&err)), state)),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse_timeout("123456789S"), None);
        assert_eq!(parse_timeout("S"), None);
        assert_eq!(parse_timeout("1x"), None);
        assert_eq!(parse_timeout(""), None);
    }

    #[tokio::test]
    async fn items_map_until_the_first_error() {
        let items: Vec<llama_stack_core::Result<u32>> =
            vec![Ok(1), Err(llama_stack_core::Error::invalid("bad")), Ok(3)];
        let out: Vec<_> = reply(futures::stream::iter(items).boxed(), |n| n * 10, None)
            .collect()
            .await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap(), &10);
        assert_eq!(
            out[1].as_ref().unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[tokio::test]
    async fn the_deadline_cuts_a_stream_and_drops_it() {
        let (tx, rx) = tokio::sync::mpsc::channel::<llama_stack_core::Result<u32>>(1);
        let inner = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        let mut out = reply(
            inner,
            |n| n,
            Some(Instant::now() + Duration::from_millis(100)),
        );
        tx.send(Ok(1)).await.unwrap();
        assert_eq!(out.next().await.unwrap().unwrap(), 1);
        let cut = out.next().await.unwrap().unwrap_err();
        assert_eq!(cut.code(), tonic::Code::DeadlineExceeded);
        assert!(out.next().await.is_none());
        assert!(tx.is_closed(), "the core stream is dropped at the deadline");
    }
}
