//! `GET /openapi.json` on a worker node: the OpenAPI 3 document of its own
//! routes, from their `#[utoipa::path]` notes and the
//! [`crate::protocol`] types, made whole by
//! [`crate::protocol::schema::complete`].

use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

use crate::http::error::resource;
use crate::protocol::schema::complete;

/// The document, built once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string(&document()).expect("the document serializes"));

/// The base of the document: its title, and this route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "orquesta worker",
        description = "A worker node's HTTP API (docs/api.md)."
    ),
    paths(openapi_json)
)]
struct Base;

/// Every route of a worker node, in one document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.merge(super::Doc::openapi());
    doc.merge(super::prometheus::Doc::openapi());
    complete(&mut doc);
    doc
}

/// Registers `GET /openapi.json`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/openapi.json").route(web::get().to(openapi_json)));
}

#[utoipa::path(get, path = "/openapi.json", tag = "node",
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

    /// Every route a worker registers, as `METHOD /path`.
    const ROUTES: [(&str, &str); 14] = [
        ("GET", "/current"),
        ("GET", "/health"),
        ("GET", "/history"),
        ("GET", "/metrics"),
        ("GET", "/metrics/prometheus"),
        ("GET", "/openapi.json"),
        ("GET", "/results/{task_id}"),
        ("DELETE", "/results/{task_id}"),
        ("GET", "/status"),
        ("POST", "/cancel/{task_id}"),
        ("POST", "/execute"),
        ("POST", "/execute/batch"),
        ("POST", "/results/ack"),
        ("POST", "/takeback/{task_id}"),
    ];

    fn operations() -> Vec<(String, String)> {
        let mut ops = Vec::new();
        for (path, item) in &document().paths.paths {
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
    fn the_document_has_every_route_and_no_other() {
        let mut listed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        listed.sort();
        assert_eq!(operations(), listed);
    }

    /// Every route of the list is a route of [`super::super::configure`],
    /// and no other path is: an unlisted one answers "no such endpoint".
    #[actix_web::test]
    async fn every_listed_route_is_routed_by_configure() {
        let app = web_test::init_service(App::new().configure(super::super::configure)).await;
        for (method, path) in ROUTES {
            let req = web_test::TestRequest::default()
                .method(method.parse().unwrap())
                .uri(&path.replace("{task_id}", "t1"))
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
        let req = web_test::TestRequest::get().uri("/nowhere").to_request();
        let body = web_test::read_body(web_test::call_service(&app, req).await).await;
        let code = serde_json::from_slice::<ErrorBody>(&body).unwrap().code;
        assert_eq!(code, ErrorCode::UnknownEndpoint);
    }
}
