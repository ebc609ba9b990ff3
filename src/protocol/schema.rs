//! The OpenAPI schemas of the ids (their checked shape, so that a client
//! such as schemathesis knows which ids are refused), and the error
//! answers every route may give, shared by both servers' documents.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use super::{ErrorBody, ErrorCode};

use crate::model::{AttemptId, Priority, TaskId, TaskStatus, WorkerId, MAX_TASK_ID_LEN};

/// What `TaskId::parse` accepts, as a regular expression.
pub const TASK_ID_PATTERN: &str = "^[A-Za-z0-9._:-]+$";

impl PartialSchema for TaskId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_TASK_ID_LEN))
            .pattern(Some(TASK_ID_PATTERN))
            .description(Some(
                "1 to 128 letters, digits, '.', '_', '-' or ':'; not \".\" or \"..\"",
            ))
            .into()
    }
}

impl ToSchema for TaskId {}

impl PartialSchema for WorkerId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("a worker's id, as config_workers.json or its join names it"))
            .into()
    }
}

impl ToSchema for WorkerId {}

impl PartialSchema for AttemptId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .description(Some(
                "an attempt's id, unique per attempt: the fencing token of its result",
            ))
            .into()
    }
}

impl ToSchema for AttemptId {}

/// `POST /execute/batch`'s body as a worker reads it: generic in what a
/// task is (the orchestrator writes its stored text), so written here.
impl PartialSchema for super::BatchRequest {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property(
                "slots",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .description(Some(
                        "how many of these tasks may run at once (default: the worker's capacity)",
                    )),
            )
            .property(
                "tasks",
                utoipa::openapi::ArrayBuilder::new().items(
                    ObjectBuilder::new().description(Some("a task, as in a task file, with its attempt_id")),
                ),
            )
            .required("tasks")
            .into()
    }
}

impl ToSchema for super::BatchRequest {}

/// A string that is one of `words`.
fn one_of(words: impl IntoIterator<Item = &'static str>, what: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(words))
        .description(Some(what))
        .into()
}

impl PartialSchema for TaskStatus {
    fn schema() -> RefOr<Schema> {
        one_of(TaskStatus::ALL.map(TaskStatus::as_str), "a task's status")
    }
}

impl ToSchema for TaskStatus {}

impl PartialSchema for Priority {
    fn schema() -> RefOr<Schema> {
        one_of(Priority::ALL.map(Priority::as_str), "a task's priority")
    }
}

impl ToSchema for Priority {}

/// The name of the token scheme in the documents.
const BEARER: &str = "bearer";

/// Completes a server's document with what every route shares, so that
/// no route's answers are left out: the token (`401 unauthorized` when
/// `ORQUESTA_TOKEN` is set, except on the open `GET /health`), `503` (shutting down, the database busy),
/// for a route with a path parameter `404` (a value no route matches is
/// `unknown_endpoint`), and for a route that reads a body `400`
/// (malformed JSON), `408` (too slow) and `413` (too large); every
/// error is an [`ErrorBody`].
pub fn complete(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    // the shared types a route names by reference (a parameter's type is
    // not collected by the derive)
    for (name, schema) in [
        ("ErrorBody", ErrorBody::schema()),
        ("ErrorCode", ErrorCode::schema()),
        ("TaskId", TaskId::schema()),
        ("WorkerId", WorkerId::schema()),
        ("AttemptId", AttemptId::schema()),
        ("TaskStatus", TaskStatus::schema()),
        ("Priority", Priority::schema()),
        ("PageOffset", PageOffset::schema()),
    ] {
        components.schemas.entry(name.into()).or_insert(schema);
    }
    components.security_schemes.insert(
        BEARER.into(),
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    doc.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    for (path, item) in doc.paths.paths.iter_mut() {
        let has_parameter = path.contains('{');
        for op in [&mut item.get, &mut item.post, &mut item.delete, &mut item.put]
            .into_iter()
            .flatten()
        {
            let reads_body = op.request_body.is_some();
            let open = is_open(op);
            if !open {
                add_error(op, 401, "no token, or a wrong one (`unauthorized`)");
            }
            add_error(
                op,
                503,
                "shutting down, or the database cannot answer now (`shutting_down`, `unavailable`)",
            );
            if !open {
                // crate::http::browser: a tokenless server answers loopback
                // names only, and no server takes a write from another origin
                add_error(
                    op,
                    403,
                    "a name that is not loopback on a server without a token (`foreign_host`), \
                     or a write from a web page of another origin (`cross_origin`)",
                );
            }
            if has_parameter {
                add_error(
                    op,
                    404,
                    "no such resource (`not_found`), or no route for this path (`unknown_endpoint`)",
                );
            }
            if reads_body {
                add_error(op, 400, "the body is not JSON or not of this shape (`malformed_json`, `empty_body`, `bad_request`)");
                add_error(
                    op,
                    408,
                    "the body did not arrive within REQUEST_BODY_TIMEOUT (`body_timeout`)",
                );
                add_error(
                    op,
                    413,
                    "the body is over the limit (`body_too_large`, with `limit_bytes`)",
                );
                add_error(
                    op,
                    415,
                    "the body is not declared `Content-Type: application/json` (`unsupported_media_type`)",
                );
            }
        }
    }
}

/// Whether the route answers without the token (`security(())` in its
/// notes: one requirement that names no scheme).
fn is_open(op: &Operation) -> bool {
    op.security.as_ref().is_some_and(|all| {
        all.iter()
            .any(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({})))
    })
}

/// An error answer of `status`, unless the route already documents one.
fn add_error(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .into()
        });
}

/// A page's `offset=`: any whole number a 64-bit machine counts (an
/// offset past every row is an empty page), without the `int64` format a
/// `u64` would get, which would call the upper half invalid.
pub struct PageOffset;

/// Any whole number a 64-bit machine counts, described by `description`.
fn whole_number(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(u64::MAX as usize))
        .description(Some(description))
        .into()
}

impl PartialSchema for PageOffset {
    fn schema() -> RefOr<Schema> {
        whole_number("rows skipped; 0 when absent")
    }
}

impl ToSchema for PageOffset {}

/// `GET /workers`' `limit=`: as [`PageOffset`], any whole number (a limit
/// past every row is every row).
pub struct WorkersLimit;

impl PartialSchema for WorkersLimit {
    fn schema() -> RefOr<Schema> {
        whole_number("at most this many rows; every one when absent")
    }
}

impl ToSchema for WorkersLimit {}
