//! The `code` of every error answer ([`super::ErrorBody`]) as a closed set:
//! programs match on it, `crate::http::error` maps each to its one HTTP
//! status, and the OpenAPI document lists the words.

use serde::{Deserialize, Serialize};

/// What went wrong, for programs: each code has one HTTP status
/// (`crate::http::error`). docs/api.md "Errors" lists them; add a variant
/// there too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON (the answer says where it breaks).
    MalformedJson,
    /// The body is empty where a JSON object is expected.
    EmptyBody,
    /// A path segment, query parameter or body field has the wrong shape.
    BadRequest,
    /// Tasks that break the rules; `errors` lists every problem with its path.
    InvalidTask,
    /// No token, or a wrong one (`ORQUESTA_TOKEN`); the answer carries
    /// `WWW-Authenticate: Bearer`.
    Unauthorized,
    /// A server without a token was addressed by a name that is not
    /// loopback (`Host`): a DNS-rebinding page, or a name to replace with
    /// `localhost` (`crate::http::browser`).
    ForeignHost,
    /// A request that changes state came from a page of another origin.
    CrossOrigin,
    /// A body that is not declared `Content-Type: application/json`.
    UnsupportedMediaType,
    /// The body is over the size limit (`limit_bytes`).
    BodyTooLarge,
    /// The body did not arrive within `REQUEST_BODY_TIMEOUT`.
    BodyTimeout,
    /// No such task, result or worker.
    NotFound,
    /// No endpoint with this path.
    UnknownEndpoint,
    /// The path exists, the method does not.
    MethodNotAllowed,
    /// Task ids the orchestrator already knows (`duplicates`).
    DuplicateTaskIds,
    /// The task has ended and cannot be cancelled.
    AlreadyEnded,
    /// The task is not failed or cancelled, so it cannot be retried.
    NotRetryable,
    /// The worker already runs this task (`attempt_id` names the run).
    AlreadyRunning,
    /// A join with the id of another live worker, or of another process
    /// that holds it and whose secret this join did not show (`address`
    /// names it).
    WorkerIdTaken,
    /// A worker asked for work by an orchestrator while it has work from
    /// the orchestrator of another data folder (`serving` names it).
    OtherOrchestrator,
    /// A join refused because the cluster has `MAX_WORKERS` workers
    /// (`max_workers`).
    TooManyWorkers,
    /// An allocation queue with this name exists already.
    AllocationExists,
    /// The worker has no free slot; try again after `Retry-After`.
    WorkerFull,
    /// This client has `MAX_STREAMS_PER_CLIENT` dashboard streams open.
    TooManyStreams,
    /// The process is draining or shutting down.
    ShuttingDown,
    /// The database or another internal part cannot answer now; retry.
    Unavailable,
    /// A bug: the process could not answer. A code this build does not
    /// know (a newer peer's) reads as this one.
    #[default]
    #[serde(other)]
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 26] = [
        ErrorCode::MalformedJson,
        ErrorCode::EmptyBody,
        ErrorCode::BadRequest,
        ErrorCode::InvalidTask,
        ErrorCode::Unauthorized,
        ErrorCode::ForeignHost,
        ErrorCode::CrossOrigin,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::BodyTooLarge,
        ErrorCode::BodyTimeout,
        ErrorCode::NotFound,
        ErrorCode::UnknownEndpoint,
        ErrorCode::MethodNotAllowed,
        ErrorCode::DuplicateTaskIds,
        ErrorCode::AlreadyEnded,
        ErrorCode::NotRetryable,
        ErrorCode::AlreadyRunning,
        ErrorCode::WorkerIdTaken,
        ErrorCode::TooManyWorkers,
        ErrorCode::OtherOrchestrator,
        ErrorCode::AllocationExists,
        ErrorCode::WorkerFull,
        ErrorCode::TooManyStreams,
        ErrorCode::ShuttingDown,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::EmptyBody => "empty_body",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidTask => "invalid_task",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ForeignHost => "foreign_host",
            ErrorCode::CrossOrigin => "cross_origin",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::BodyTimeout => "body_timeout",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownEndpoint => "unknown_endpoint",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::DuplicateTaskIds => "duplicate_task_ids",
            ErrorCode::AlreadyEnded => "already_ended",
            ErrorCode::NotRetryable => "not_retryable",
            ErrorCode::AlreadyRunning => "already_running",
            ErrorCode::WorkerIdTaken => "worker_id_taken",
            ErrorCode::TooManyWorkers => "too_many_workers",
            ErrorCode::OtherOrchestrator => "other_orchestrator",
            ErrorCode::AllocationExists => "allocation_exists",
            ErrorCode::WorkerFull => "worker_full",
            ErrorCode::TooManyStreams => "too_many_streams",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_on_the_wire_is_as_str_and_reads_back() {
        for code in ErrorCode::ALL {
            let wire = serde_json::to_value(code).unwrap();
            assert_eq!(wire, code.as_str());
            assert_eq!(serde_json::from_value::<ErrorCode>(wire).unwrap(), code);
        }
        let newer: ErrorCode = serde_json::from_str("\"a_newer_code\"").unwrap();
        assert_eq!(newer, ErrorCode::Internal);
    }
}
