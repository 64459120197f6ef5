//! The batch object as OpenAI's SDK reads it: every field present, `null` where unset.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a batch is in its life. `validating` → `in_progress` → `finalizing` → `completed`;
/// `failed` when the input file is unusable; `cancelling` → `cancelled`; `expired` when the
/// completion window ran out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Validating,
    InProgress,
    Finalizing,
    Completed,
    Failed,
    Cancelling,
    Cancelled,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Validating => "validating",
            Status::InProgress => "in_progress",
            Status::Finalizing => "finalizing",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    /// Whether work remains: a process must hold the batch (a lease) until it ends.
    pub fn is_unfinished(self) -> bool {
        matches!(
            self,
            Status::Validating | Status::InProgress | Status::Finalizing | Status::Cancelling
        )
    }
}

/// One problem with the input file: the line it is on (1-based) and the field, where known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchError {
    pub code: String,
    pub message: String,
    pub line: Option<u64>,
    pub param: Option<String>,
}

impl BatchError {
    pub fn new(code: &str, message: impl Into<String>) -> BatchError {
        BatchError {
            code: code.to_string(),
            message: message.into(),
            line: None,
            param: None,
        }
    }

    pub fn at(mut self, line: u64) -> BatchError {
        self.line = Some(line);
        self
    }

    pub fn param(mut self, param: &str) -> BatchError {
        self.param = Some(param.to_string());
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchErrors {
    pub object: String,
    pub data: Vec<BatchError>,
}

impl BatchErrors {
    pub fn of(data: Vec<BatchError>) -> BatchErrors {
        BatchErrors {
            object: "list".into(),
            data,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchObject {
    pub id: String,
    pub object: String,
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: Status,
    pub created_at: i64,
    pub errors: Option<BatchErrors>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub in_progress_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub request_counts: Option<RequestCounts>,
    /// Up to 16 string pairs, as the client gave them.
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// `GET /v1/batches`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchList {
    pub object: String,
    pub data: Vec<BatchObject>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialize_as_openai_names() {
        for status in [
            Status::Validating,
            Status::InProgress,
            Status::Finalizing,
            Status::Completed,
            Status::Failed,
            Status::Cancelling,
            Status::Cancelled,
            Status::Expired,
        ] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                Value::from(status.as_str())
            );
        }
        assert!(Status::Cancelling.is_unfinished());
        assert!(!Status::Expired.is_unfinished());
    }
}
