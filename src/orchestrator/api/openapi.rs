//! `GET /openapi.json`: the OpenAPI 3 document of every route of the
//! orchestrator, assembled from each resource's `Doc` (their
//! `#[utoipa::path]` notes and the [`crate::protocol`] types) and made
//! whole by [`crate::protocol::schema::complete`] (the token, and the
//! errors every route shares).

use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

use super::{
    allocations, checkpoints, dashboard, export, files, health, prometheus, purge, stats, studies, tasks,
    workers,
};
use crate::http::error::resource;
use crate::protocol::schema::complete;

/// The document, built once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&document()).expect("the document serializes"));

/// The base of the document: its title, and this route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "orquesta orchestrator",
        description = "The orchestrator's REST API (docs/api.md)."
    ),
    paths(openapi_json)
)]
struct Base;

/// Every route of the orchestrator, in one document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    for part in [
        tasks::Doc::openapi(),
        checkpoints::Doc::openapi(),
        export::Doc::openapi(),
        studies::Doc::openapi(),
        files::Doc::openapi(),
        workers::Doc::openapi(),
        stats::Doc::openapi(),
        health::Doc::openapi(),
        purge::Doc::openapi(),
        allocations::Doc::openapi(),
        prometheus::Doc::openapi(),
        dashboard::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    complete(&mut doc);
    doc
}

/// Registers `GET /openapi.json`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/openapi.json").route(web::get().to(openapi_json)));
}

#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "this document", content_type = "application/json", body = Object)))]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

#[cfg(test)]
mod tests {
    use actix_web::{test as web_test, App};

    use super::*;
    use crate::http::error::ErrorCode;
    use crate::protocol::ErrorBody;

    /// Every operation of the document as `METHOD /path`.
    fn operations(doc: &utoipa::openapi::OpenApi) -> Vec<(String, String)> {
        let mut ops = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [("GET", &item.get), ("POST", &item.post), ("DELETE", &item.delete)] {
                if op.is_some() {
                    ops.push((method.to_string(), path.clone()));
                }
            }
        }
        ops.sort();
        ops
    }

    #[test]
    fn the_document_has_every_route_that_get_slash_lists_and_no_other() {
        let doc = document();
        let mut listed: Vec<(String, String)> = health::ENDPOINTS
            .iter()
            .map(|e| {
                let (method, rest) = e.split_once(' ').unwrap();
                let path = rest.split(['?', ' ']).next().unwrap();
                (method.to_string(), path.to_string())
            })
            .collect();
        listed.sort();
        listed.dedup();
        assert_eq!(operations(&doc), listed);
    }

    #[test]
    fn every_operation_lists_the_token_and_every_error_is_an_error_body() {
        let doc = serde_json::to_value(document()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let open = op["security"] == serde_json::json!([{}]);
                assert_eq!(
                    responses.contains_key("401"),
                    !open,
                    "{method} {path}: 401 iff the token is asked"
                );
                for (status, r) in responses {
                    if status.starts_with('4') || (status == "503" && !path.ends_with("health")) {
                        assert_eq!(
                            r["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        assert_eq!(
            doc["paths"]["/health"]["get"]["security"],
            serde_json::json!([{}])
        );
    }

    /// Every operation of the document is a route of [`super::super::configure`]:
    /// asked on an app without its state, none answers "no such endpoint"
    /// or "method not allowed" (a handler that lacks its state answers 500).
    #[actix_web::test]
    async fn every_operation_is_routed_by_configure() {
        let app = web_test::init_service(App::new().configure(super::super::configure)).await;
        for (method, path) in operations(&document()) {
            let uri = path
                .replace("{task_id}", "t1")
                .replace("{worker_id}", "w1")
                .replace("{id}", "1");
            let req = web_test::TestRequest::default()
                .method(method.parse().unwrap())
                .uri(&uri)
                .to_request();
            let resp = web_test::call_service(&app, req).await;
            let status = resp.status();
            let body = web_test::read_body(resp).await;
            let code = serde_json::from_slice::<ErrorBody>(&body).map(|b| b.code).ok();
            assert!(
                code != Some(ErrorCode::UnknownEndpoint) && code != Some(ErrorCode::MethodNotAllowed),
                "{method} {path}: {status} {code:?}"
            );
        }
    }
}
