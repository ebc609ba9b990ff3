//! The proxy's HTTP calls to its worker, each a `'static` future built
//! from the pooled client, so the actor only decides what answers mean.

use std::future::Future;
use std::time::Duration;

use awc::error::SendRequestError;
use serde::de::DeserializeOwned;

/// `GET /health` → the HTTP status (the body is read and dropped, so the
/// pooled connection can be reused).
pub fn health(
    client: &awc::Client,
    base: &str,
    timeout: Duration,
) -> impl Future<Output = Result<u16, SendRequestError>> + 'static {
    let request = client.get(format!("{base}/health")).timeout(timeout).send();
    async move {
        let mut resp = request.await?;
        let _ = resp.body().limit(64 << 10).await;
        Ok(resp.status().as_u16())
    }
}

/// An answer to `POST /execute` as it came: status, `Retry-After` in
/// seconds, and the body if it could be read.
pub struct RawAnswer {
    pub code: u16,
    pub retry_after: Option<u64>,
    pub body: Option<actix_web::web::Bytes>,
}

/// `POST /execute` with a body already encoded; waits up to `timeout`.
pub fn execute(
    client: &awc::Client,
    base: &str,
    payload: String,
    timeout: Duration,
) -> impl Future<Output = Result<RawAnswer, SendRequestError>> + 'static {
    let request = client
        .post(format!("{base}/execute"))
        .timeout(timeout)
        .insert_header(("content-type", "application/json"))
        .send_body(payload);
    async move {
        let mut resp = request.await?;
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = resp.body().limit(64 << 20).await.ok();
        Ok(RawAnswer {
            code: resp.status().as_u16(),
            retry_after,
            body,
        })
    }
}

/// `POST` with no body and read a JSON answer (any failure is an error:
/// the caller treats it as "no answer").
pub fn fetch_json_post<T: DeserializeOwned + 'static>(
    client: &awc::Client,
    url: &str,
) -> impl Future<Output = Result<T, FetchError>> + 'static {
    let request = client.post(url).send();
    async move {
        let mut resp = request.await.map_err(|_| FetchError::Other)?;
        if !resp.status().is_success() {
            return Err(FetchError::Other);
        }
        let body = resp.body().limit(1 << 20).await.map_err(|_| FetchError::Other)?;
        serde_json::from_slice(&body).map_err(|_| FetchError::Other)
    }
}

/// Why a JSON fetch failed.
pub enum FetchError {
    NotFound,
    Other,
}

/// `GET` a JSON answer, telling "not there" (404) apart from every other
/// failure.
pub async fn fetch_json<T: DeserializeOwned>(client: &awc::Client, url: &str) -> Result<T, FetchError> {
    let mut resp = client.get(url).send().await.map_err(|_| FetchError::Other)?;
    if resp.status().as_u16() == 404 {
        return Err(FetchError::NotFound);
    }
    if !resp.status().is_success() {
        return Err(FetchError::Other);
    }
    let body = resp.body().limit(16 << 20).await.map_err(|_| FetchError::Other)?;
    serde_json::from_slice(&body).map_err(|_| FetchError::Other)
}
