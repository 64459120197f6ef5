//! The APIs a distribution can serve.

use std::fmt;
use std::str::FromStr;

/// An API of the stack, as named in run.yaml (`apis:` and the keys of `providers:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Api {
    Inference,
    Safety,
    VectorIo,
    Agents,
    Responses,
    Batches,
    ToolRuntime,
    Files,
    Telemetry,
    DatasetIo,
    Eval,
    Scoring,
    PostTraining,
}

impl Api {
    pub const ALL: [Api; 13] = [
        Api::Inference,
        Api::Safety,
        Api::VectorIo,
        Api::Agents,
        Api::Responses,
        Api::Batches,
        Api::ToolRuntime,
        Api::Files,
        Api::Telemetry,
        Api::DatasetIo,
        Api::Eval,
        Api::Scoring,
        Api::PostTraining,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Api::Inference => "inference",
            Api::Safety => "safety",
            Api::VectorIo => "vector_io",
            Api::Agents => "agents",
            Api::Responses => "responses",
            Api::Batches => "batches",
            Api::ToolRuntime => "tool_runtime",
            Api::Files => "files",
            Api::Telemetry => "telemetry",
            Api::DatasetIo => "datasetio",
            Api::Eval => "eval",
            Api::Scoring => "scoring",
            Api::PostTraining => "post_training",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Api {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Api::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Api::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown API `{s}`; known APIs: {}", known.join(", "))
            })
    }
}
