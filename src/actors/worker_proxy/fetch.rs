//! `GET` a JSON answer from a worker, telling "not there" (404) apart
//! from every other failure.

use serde::de::DeserializeOwned;

/// Why a JSON fetch failed.
pub enum FetchError {
    NotFound,
    Other,
}

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
