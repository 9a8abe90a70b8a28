//! A small HTTP/1.1 client for the client port's plain HTTP (the JSON gateway, `/health`,
//! `/metrics`): one request per connection; a reply read whole, or chunk by chunk for the
//! gateway's streams (one message per chunk).

#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// No reply part may take longer: a test fails rather than hangs.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A reply whose body is read as it comes.
pub struct HttpStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
}

impl HttpStream {
    /// The next chunk of the body, None at its end.
    pub async fn next_chunk(&mut self) -> Option<String> {
        assert!(self.chunked, "not a chunked reply");
        tokio::time::timeout(READ_TIMEOUT, read_chunk(&mut self.reader))
            .await
            .expect("a chunk within the read timeout")
    }

    /// The next chunk, as JSON.
    pub async fn next_json(&mut self) -> serde_json::Value {
        let chunk = self.next_chunk().await.expect("another chunk");
        serde_json::from_str(&chunk).unwrap_or_else(|e| panic!("not JSON ({e}): {chunk:?}"))
    }
}

fn host_port(endpoint: &str) -> &str {
    endpoint
        .strip_prefix("http://")
        .unwrap_or(endpoint)
        .trim_end_matches('/')
}

/// Sends a request and reads the head of its reply.
pub async fn open(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpStream {
    let address = host_port(endpoint);
    let mut stream = TcpStream::connect(address)
        .await
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut reader = BufReader::new(stream);
    let (status, headers) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut reader))
        .await
        .expect("a reply head within the read timeout");
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    HttpStream {
        status,
        headers,
        reader,
        chunked,
    }
}

/// Sends a request and reads its whole reply.
pub async fn request(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let mut stream = open(endpoint, method, path, headers, body).await;
    let mut body = String::new();
    if stream.chunked {
        while let Some(chunk) = stream.next_chunk().await {
            body.push_str(&chunk);
        }
    } else {
        tokio::time::timeout(READ_TIMEOUT, stream.reader.read_to_string(&mut body))
            .await
            .expect("a reply body within the read timeout")
            .unwrap();
    }
    HttpReply {
        status: stream.status,
        headers: stream.headers,
        body,
    }
}

pub async fn get(endpoint: &str, path: &str) -> HttpReply {
    request(endpoint, "GET", path, &[], b"").await
}

pub async fn post(endpoint: &str, path: &str, body: &str) -> HttpReply {
    request(endpoint, "POST", path, &[], body.as_bytes()).await
}

async fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let field = line.trim_end();
        if field.is_empty() {
            return (status, headers);
        }
        let (name, value) = field.split_once(':').expect("a header field");
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

async fn read_chunk(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let size = usize::from_str_radix(line.trim(), 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut data = vec![0; size + 2];
    reader.read_exact(&mut data).await.unwrap();
    data.truncate(size);
    Some(String::from_utf8(data).expect("UTF-8 chunk"))
}

/// Standard base64, as the gateway's JSON writes bytes.
pub fn b64(data: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
