//! The one JSON error shape of every endpoint, `{"error": "...", ...}`,
//! and the helpers that read request bodies without trusting them.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use crate::model::FieldError;

/// An error answered as JSON with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Map<String, Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(message.into()));
        Self {
            status,
            body,
            retry_after: None,
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.body.insert(key.into(), value);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 422 listing every problem with its path.
    pub fn invalid(message: impl Into<String>, errors: &[FieldError]) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message).with("errors", json!(errors))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, Value::Object(self.body.clone()))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.json(Value::Object(self.body.clone()))
    }
}

/// Reads a request body of at most `limit` bytes and parses it as JSON.
/// Oversize: 413; empty, invalid UTF-8 or malformed: 400 with the position.
pub async fn read_json(mut payload: web::Payload, limit: usize) -> Result<Value, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than the limit of {limit} bytes"),
            )
            .with("limit_bytes", json!(limit)));
        }
        body.extend_from_slice(&chunk);
    }
    parse_json(&body)
}

/// Parses a body as JSON with an error that says where it breaks.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty: expected a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("malformed JSON: {e}"))
            .with("line", json!(e.line()))
            .with("column", json!(e.column()))
    })
}

/// JSON 404 for paths no route knows.
pub async fn unknown_route(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::not_found(format!("no endpoint {} {}", req.method(), req.path())).error_response()
}

/// JSON 405 for a known path with the wrong method.
pub async fn wrong_method(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
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
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("shutting down: {e}"))
}

/// A task id taken from the path, checked.
pub fn path_task_id(raw: &str) -> Result<crate::model::TaskId, ApiError> {
    crate::model::TaskId::parse(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid task id in the path: {e}")))
}
