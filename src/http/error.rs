//! The one JSON error shape of every endpoint of both servers,
//! `{"error": "...", "code": "...", ...}`: [`ErrorCode`] is the stable,
//! machine-readable part and the only place an error meets its HTTP
//! status; `error` is the text for people. Reading bodies without
//! trusting them is [`super::limits`].

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Map;

use crate::model::FieldError;
use crate::protocol::ErrorBody;

pub use crate::protocol::ErrorCode;

impl ErrorCode {
    /// The one mapping from codes to HTTP statuses.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedJson | ErrorCode::EmptyBody | ErrorCode::BadRequest => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::InvalidTask => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::ForeignHost | ErrorCode::CrossOrigin => StatusCode::FORBIDDEN,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::NotFound | ErrorCode::UnknownEndpoint => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::DuplicateTaskIds
            | ErrorCode::AlreadyEnded
            | ErrorCode::NotRetryable
            | ErrorCode::AlreadyRunning
            | ErrorCode::WorkerIdTaken
            | ErrorCode::TooManyWorkers
            | ErrorCode::OtherOrchestrator
            | ErrorCode::AllocationExists => StatusCode::CONFLICT,
            ErrorCode::WorkerFull | ErrorCode::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ShuttingDown | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answered as JSON ([`ErrorBody`]) with the status of its code.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    /// Boxed: errors are the cold path, and `Result<_, ApiError>` stays small.
    pub body: Box<ErrorBody>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            body: Box::new(ErrorBody {
                error: message.into(),
                code,
                details: Map::new(),
            }),
            retry_after: None,
        }
    }

    /// Adds a detail beside `error` and `code` (a value that does not
    /// serialize, which the types given here never are, reads as null).
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or_default();
        self.body.details.insert(key.into(), value);
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 422 listing every problem with its path.
    pub fn invalid(message: impl Into<String>, errors: &[FieldError]) -> Self {
        Self::new(ErrorCode::InvalidTask, message).with("errors", errors)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.code.status(),
            self.body.error,
            self.body.code
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.code.status());
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.code == ErrorCode::Unauthorized {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(&self.body)
    }
}

/// JSON 404 for paths no route knows.
pub async fn unknown_route(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::new(
        ErrorCode::UnknownEndpoint,
        format!("no endpoint {} {}", req.method(), req.path()),
    )
    .error_response()
}

/// JSON 405 for a known path with the wrong method.
pub async fn wrong_method(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .error_response()
}

/// A resource whose other methods answer a JSON 405.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(wrong_method))
}

/// The actor behind a handler has stopped: the process is shutting down.
pub fn mailbox(e: actix::MailboxError) -> ApiError {
    ApiError::new(ErrorCode::ShuttingDown, format!("shutting down: {e}"))
}

/// A task id taken from the path, checked.
pub fn path_task_id(raw: &str) -> Result<crate::model::TaskId, ApiError> {
    crate::model::TaskId::parse(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid task id in the path: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_in_the_api_page_table_with_its_status() {
        let page = include_str!("../../docs/api.md");
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
            assert!(page.contains(&row), "docs/api.md \"Errors\" lacks the row {row}");
        }
    }

    #[test]
    fn a_body_carries_the_text_and_the_code() {
        let e = ApiError::new(ErrorCode::WorkerFull, "full")
            .with("capacity", 2)
            .retry_after(1);
        assert_eq!(e.code.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            serde_json::to_value(&e.body).unwrap(),
            serde_json::json!({"error": "full", "code": "worker_full", "capacity": 2})
        );
    }
}
