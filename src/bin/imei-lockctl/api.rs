//! The REST API client of imei-lockctl: base URL, bearer token and HTTP client, each call's
//! failure mapped to the CLI's exit codes, paging and waiting for requests. It parses no
//! arguments; what it prints goes through the CLI's printers.

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

use super::{print_value, Pages, Wait};

/// A failure with its exit code.
pub struct Failure(pub u8, pub String);

pub struct Api {
    pub base: String,
    pub token: Option<String>,
    pub http: Client,
}

impl Api {
    pub fn req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        let mut r = self.http.request(
            method,
            format!("{}{}", self.base.trim_end_matches('/'), path),
        );
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub fn send(&self, r: RequestBuilder) -> Result<(reqwest::StatusCode, String), Failure> {
        let resp = r
            .send()
            .map_err(|e| Failure(3, format!("cannot reach the API at {}: {e}", self.base)))?;
        let status = resp.status();
        let body = resp
            .text()
            .map_err(|e| Failure(3, format!("reading the answer: {e}")))?;
        if status.is_success() {
            Ok((status, body))
        } else {
            let msg = serde_json::from_str::<Value>(&body)
                .ok()
                .map(|v| match (v.get("error"), v.get("field")) {
                    (Some(e), Some(f)) => {
                        format!("{}: {}", f.as_str().unwrap_or(""), e.as_str().unwrap_or(""))
                    }
                    (Some(e), None) => e.as_str().unwrap_or("").to_owned(),
                    _ => body.clone(),
                })
                .unwrap_or(body);
            Err(Failure(1, format!("HTTP {}: {msg}", status.as_u16())))
        }
    }

    pub fn json(&self, r: RequestBuilder) -> Result<Value, Failure> {
        let (_, body) = self.send(r)?;
        serde_json::from_str(&body).map_err(|e| Failure(1, format!("API answered non-JSON: {e}")))
    }

    /// Submits, then optionally waits; prints the request.
    pub fn submit(&self, r: RequestBuilder, wait: &Wait, as_json: bool) -> Result<(), Failure> {
        let v = self.json(r)?;
        let id = v
            .get("request_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !wait.wait {
            print_value(&v, as_json);
            return Ok(());
        }
        self.show_request(&id, true, as_json)
    }

    pub fn show_request(&self, id: &str, wait: bool, as_json: bool) -> Result<(), Failure> {
        let path = if wait {
            format!("/v1/requests/{id}?wait=30")
        } else {
            format!("/v1/requests/{id}")
        };
        let v = self.json(self.req(reqwest::Method::GET, &path))?;
        print_value(&v, as_json);
        match v.get("status").and_then(Value::as_str) {
            Some("failed") => Err(Failure(1, format!("request {id} failed"))),
            Some("pending") if wait => Err(Failure(1, format!("request {id} still pending"))),
            _ => Ok(()),
        }
    }
}

/// Largest page the API serves.
pub const PAGE: usize = 1000;

impl Api {
    /// Every item of a list route from `pages.cursor` on (up to `pages.limit`), following
    /// `next_cursor`; `query` holds the filters as `(name, value)`.
    pub fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
        pages: &Pages,
    ) -> Result<Vec<Value>, Failure> {
        let mut items = Vec::new();
        let mut cursor = pages.cursor.clone();
        let want = pages.limit.unwrap_or(usize::MAX);
        while items.len() < want {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("limit", (want - items.len()).min(PAGE).to_string()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let page = self.json(self.req(reqwest::Method::GET, path).query(&q))?;
            if let Some(list) = page.get("items").and_then(Value::as_array) {
                items.extend(list.iter().cloned());
            }
            cursor = page
                .get("next_cursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        items.truncate(want);
        Ok(items)
    }
}
