//! The CLI's side of the admin API: blocking HTTP with the bearer token read
//! from the node's data directory.

use serde_json::Value;
use std::time::Duration;

pub struct AdminClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// Characters that would change a URL's meaning inside a path segment.
fn encode_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            ' ' => out.push_str("%20"),
            _ => out.push(c),
        }
    }
    out
}

impl AdminClient {
    pub fn new(listen: &str, token: String, timeout: Duration) -> Self {
        let agent = ureq::AgentBuilder::new().timeout(timeout).build();
        Self { base: format!("http://{listen}/v1"), token, agent }
    }

    /// Joins path parts, encoding each user-supplied one.
    pub fn path(parts: &[&str]) -> String {
        parts.iter().map(|p| encode_segment(p)).collect::<Vec<_>>().join("/")
    }

    /// A query-string value: everything but unreserved characters percent-encoded.
    pub fn query_value(raw: &str) -> String {
        raw.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call("POST", path, Some(Body::Json(body)))
    }

    pub fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call("PUT", path, Some(Body::Json(body)))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call("DELETE", path, None)
    }

    /// GETs a body that is not JSON (an exported file), as bytes.
    pub fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}/{}", self.base, path);
        let request = self.agent.get(&url).set("Authorization", &format!("Bearer {}", self.token));
        match request.call() {
            Ok(response) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes)?;
                Ok(bytes)
            }
            Err(ureq::Error::Status(code, response)) => {
                let body: Value = response.into_json().unwrap_or(Value::Null);
                anyhow::bail!("{} (HTTP {code})", body.get("error").and_then(Value::as_str).unwrap_or("request failed"))
            }
            Err(e) => anyhow::bail!("cannot reach the admin API at {}: {e}", self.base),
        }
    }

    /// POSTs raw bytes (a message) as `message/rfc822`.
    pub fn post_message(&self, path: &str, message: &[u8]) -> anyhow::Result<Value> {
        self.call("POST", path, Some(Body::Message(message)))
    }

    fn call(&self, method: &str, path: &str, body: Option<Body<'_>>) -> anyhow::Result<Value> {
        let url = format!("{}/{}", self.base, path);
        let request = self.agent.request(method, &url).set("Authorization", &format!("Bearer {}", self.token));
        let result = match body {
            Some(Body::Json(b)) => request.send_json(b),
            Some(Body::Message(bytes)) => request.set("Content-Type", "message/rfc822").send_bytes(bytes),
            None => request.call(),
        };
        match result {
            Ok(response) => Ok(response.into_json()?),
            Err(ureq::Error::Status(code, response)) => {
                let body: Value = response.into_json().unwrap_or(Value::Null);
                let error = body.get("error").and_then(Value::as_str).unwrap_or("request failed");
                match body.get("field").and_then(Value::as_str) {
                    Some(field) if !error.starts_with(&format!("{field}:")) => {
                        anyhow::bail!("{field}: {error} (HTTP {code})")
                    }
                    _ => anyhow::bail!("{error} (HTTP {code})"),
                }
            }
            Err(e) => anyhow::bail!("cannot reach the admin API at {}: {e}", self.base),
        }
    }
}

/// What a request carries.
enum Body<'a> {
    Json(Value),
    Message(&'a [u8]),
}
