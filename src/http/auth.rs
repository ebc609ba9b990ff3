//! The token check of both servers: every request but `GET /health`
//! must carry `Authorization: Bearer <ORQUESTA_TOKEN>` when a token is
//! configured, else it is answered 401 `unauthorized` with
//! `WWW-Authenticate: Bearer`. Wrapped around each server's whole `App`
//! (so unknown paths are not probed without it either); `/health` stays
//! open for load balancers and `orquesta ping` without a secret, and
//! `GET /` when a browser asks for a page (`Accept: text/html`): the
//! orchestrator's dashboard page holds no data (it asks for the token and
//! sends it with every call it makes); the JSON `GET /` stays closed.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::http::{header, Method};
use actix_web::middleware::Next;

use super::error::{ApiError, ErrorCode};
use crate::util::token::{Token, HOW_TO_SET};

/// Whether a request may pass without a token: `GET /health`, and
/// `GET /` asking for a page.
fn is_open(method: &Method, path: &str, accept: Option<&HeaderValue>) -> bool {
    method == Method::GET && (path == "/health" || (path == "/" && wants_html(accept)))
}

/// Whether a request's `Accept` asks for a page: it names `text/html`
/// (browsers do; curl's `*/*` and API clients do not).
pub fn wants_html(accept: Option<&HeaderValue>) -> bool {
    accept.and_then(|v| v.to_str().ok()).is_some_and(|a| {
        a.split(',').any(|part| {
            part.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
        })
    })
}

/// The 401 answer; it names the header to send, never what was sent.
pub fn unauthorized(sent: bool) -> ApiError {
    let what = if sent {
        "the token sent in `Authorization: Bearer <token>` is not this cluster's token"
    } else {
        "this server requires a token: send the header `Authorization: Bearer <token>`"
    };
    ApiError::new(
        ErrorCode::Unauthorized,
        format!("{what}; with the orquesta command line, pass --token-file FILE or {HOW_TO_SET}"),
    )
}

/// The middleware: `App::new().wrap(from_fn(move |req, next| auth::check(token.clone(), req, next)))`.
pub async fn check(
    token: Option<Token>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(token) = token {
        if !is_open(req.method(), req.path(), req.headers().get(header::ACCEPT)) {
            let sent = req.headers().get(header::AUTHORIZATION);
            if !sent.is_some_and(|v| token.accepts(v.as_bytes())) {
                return Err(unauthorized(sent.is_some()).into());
            }
        }
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use actix_web::test as web_test;
    use actix_web::{middleware::from_fn, web, App, HttpResponse};

    use super::*;

    #[actix_rt::test]
    async fn every_path_but_health_needs_the_token() {
        let token = Token::new("right").unwrap();
        let app = web_test::init_service(
            App::new()
                .wrap(from_fn(move |req, next| check(Some(token.clone()), req, next)))
                .route("/health", web::get().to(HttpResponse::Ok))
                .route("/health", web::post().to(HttpResponse::Ok))
                .route("/tasks", web::get().to(HttpResponse::Ok)),
        )
        .await;
        let call = |method: Method, path: &str, auth: Option<&str>| {
            let mut r = web_test::TestRequest::default().method(method).uri(path);
            if let Some(a) = auth {
                r = r.insert_header((header::AUTHORIZATION, a));
            }
            r.to_request()
        };
        let resp = web_test::call_service(&app, call(Method::GET, "/health", None)).await;
        assert_eq!(resp.status(), 200);
        for (method, path) in [
            (Method::GET, "/tasks"),
            (Method::POST, "/health"),
            (Method::GET, "/nope"),
        ] {
            for auth in [None, Some("Bearer wrong"), Some("right")] {
                let req = call(method.clone(), path, auth);
                let Err(err) = web_test::try_call_service(&app, req).await else {
                    panic!("{method} {path} {auth:?} passed without the right token");
                };
                let resp = err.error_response();
                assert_eq!(resp.status(), 401, "{method} {path} {auth:?}");
                assert_eq!(resp.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
            }
        }
        let resp = web_test::call_service(&app, call(Method::GET, "/tasks", Some("Bearer right"))).await;
        assert_eq!(resp.status(), 200);
    }

    #[test]
    fn only_a_page_request_for_the_root_is_open() {
        let html = HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8");
        let any = HeaderValue::from_static("*/*");
        assert!(is_open(&Method::GET, "/", Some(&html)));
        assert!(
            !is_open(&Method::GET, "/", Some(&any)),
            "the JSON index keeps the token"
        );
        assert!(!is_open(&Method::GET, "/", None));
        assert!(!is_open(&Method::POST, "/", Some(&html)));
        assert!(
            !is_open(&Method::GET, "/events", Some(&html)),
            "data keeps the token"
        );
        assert!(!is_open(&Method::GET, "/tasks", Some(&html)));
        assert!(is_open(&Method::GET, "/health", None));
    }

    #[test]
    fn a_browser_asks_for_html_curl_and_api_clients_do_not() {
        let html = |s: &'static str| wants_html(Some(&HeaderValue::from_static(s)));
        assert!(html(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(html("Text/HTML"));
        assert!(html("application/json, text/html;q=0.1"));
        assert!(!html("*/*"));
        assert!(!html("application/json"));
        assert!(!html("text/htmlx"));
        assert!(!wants_html(None));
    }

    #[test]
    fn the_message_says_how_and_echoes_nothing() {
        let e = unauthorized(true);
        assert_eq!(e.body.code, crate::protocol::ErrorCode::Unauthorized);
        assert!(e.body.error.contains("ORQUESTA_TOKEN") && e.body.error.contains("Authorization: Bearer"));
    }
}
