//! Plain HTTP on the client port, as etcd serves it beside gRPC: the JSON gateway
//! (`/v3/...`, `gateway`), `/version`, `/health`, `/livez`, `/readyz` and `/metrics`. Each
//! answer comes from the server (`Server::health`, `Server::probe`, `Server::metrics`); this
//! only translates. The `--listen-metrics-urls` URLs serve the last four alone.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tonic::body::Body;

use super::dispatch::Services;
use super::gateway;
use crate::config::ETCD_API_VERSION;
use crate::server::{Probe, Server};

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const APPLICATION_JSON: &str = "application/json";

/// Answers one request that is not gRPC.
pub async fn serve(
    services: Services,
    request: Request<Body>,
    presented_common_name: bool,
) -> Response<Body> {
    let mut response = route(services, request, presented_common_name).await;
    // etcd's default `--cors=*`: browsers may call the gateway from any origin.
    let headers = response.headers_mut();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    response
}

async fn route(
    services: Services,
    request: Request<Body>,
    presented_common_name: bool,
) -> Response<Body> {
    if request.method() == Method::OPTIONS {
        return with_body(StatusCode::OK, Bytes::new());
    }
    let path = request.uri().path();
    // etcd 3.4 serves the gateway under `/v3beta/` too, the same as `/v3/`.
    if let Some(rest) = path
        .strip_prefix("/v3/")
        .or_else(|| path.strip_prefix("/v3beta/"))
    {
        let rest = rest.to_string();
        return gateway::handle(&services, &rest, request, presented_common_name).await;
    }
    let path = path.to_string();
    let (request, _) = request.into_parts();
    if let Some(response) = observability(services.server(), &path, &request).await {
        return response;
    }
    match path.as_str() {
        "/version" => get_only(&request.method).unwrap_or_else(|| {
            let cluster = match services.server().cluster_version() {
                Some((major, minor)) => format!("{major}.{minor}.0"),
                None => "not_decided".to_string(),
            };
            let body = format!(
                "{{\"etcdserver\":\"{ETCD_API_VERSION}\",\"etcdcluster\":\"{cluster}\",\"storage\":\"{}\"}}",
                services
                    .server()
                    .storage_version()
                    .unwrap_or_else(|| "unknown".to_string())
            );
            json(StatusCode::OK, body)
        }),
        "/v3" => {
            let mut moved = text(
                StatusCode::MOVED_PERMANENTLY,
                "<a href=\"/v3/\">Moved Permanently</a>.\n\n",
            );
            let headers = moved.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            headers.remove("x-content-type-options");
            headers.insert(http::header::LOCATION, HeaderValue::from_static("/v3/"));
            moved
        }
        _ => not_found(),
    }
}

/// Answers one request on a `--listen-metrics-urls` URL: only what `observability` serves,
/// as etcd's metrics listener (no gateway, no `/version`, no CORS).
pub async fn serve_metrics_url(server: &Server, request: Request<Body>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let (request, _) = request.into_parts();
    observability(server, &path, &request)
        .await
        .unwrap_or_else(not_found)
}

/// `/metrics`, `/health`, `/livez` and `/readyz`: what both the client URLs and the
/// metrics URLs serve. None for any other path.
async fn observability(
    server: &Server,
    path: &str,
    request: &http::request::Parts,
) -> Option<Response<Body>> {
    let response = match path {
        "/metrics" => get_only(&request.method).unwrap_or_else(|| {
            let (content_type, body) = server.metrics().render();
            // Sent chunked, as etcd sends it.
            let mut metrics = Response::new(chunked(Bytes::from(body)));
            metrics
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            metrics
        }),
        "/health" => match get_only(&request.method) {
            Some(refused) => refused,
            None => {
                let query = Query::of(&request.uri);
                let excluded_alarms = query.all("exclude");
                let serializable = query.first("serializable") == Some("true");
                // etcd 3.5+'s bodies (3.4's lack `reason`), as text: `{"health":"true",
                // "reason":""}`, and when unhealthy (503) with etcd's reason, as Go's
                // http.Error writes it, with a line end.
                match server.health(serializable, &excluded_alarms).await {
                    Ok(()) => {
                        let body = "{\"health\":\"true\",\"reason\":\"\"}";
                        let mut healthy = text(StatusCode::OK, body);
                        healthy.headers_mut().remove("x-content-type-options");
                        healthy
                    }
                    Err(reason) => {
                        let body =
                            serde_json::json!({"health": "false", "reason": reason.to_string()});
                        text(StatusCode::SERVICE_UNAVAILABLE, format!("{body}\n"))
                    }
                }
            }
        },
        _ => {
            let (probe, only) = probe_of(path)?;
            match get_only(&request.method) {
                Some(refused) => refused,
                None => probe_answer(server, Query::of(&request.uri), probe, only).await,
            }
        }
    };
    Some(response)
}

/// `/livez`, `/readyz`, or one of their checks (`/readyz/linearizable_read`).
fn probe_of(path: &str) -> Option<(Probe, Option<&'static str>)> {
    let (probe, rest) = if let Some(rest) = path.strip_prefix("/livez") {
        (Probe::Live, rest)
    } else {
        (Probe::Ready, path.strip_prefix("/readyz")?)
    };
    if rest.is_empty() {
        return Some((probe, None));
    }
    let check = rest.strip_prefix('/')?;
    let known = probe.checks().iter().find(|known| **known == check)?;
    Some((probe, Some(*known)))
}

/// `/livez` and `/readyz` (etcd 3.6, backported to 3.4.29): `ok` when every check passes,
/// each check's line with `?verbose`, and always on failure (503).
async fn probe_answer(
    server: &Server,
    query: Query,
    probe: Probe,
    only: Option<&'static str>,
) -> Response<Body> {
    let excluded = query.all("exclude");
    let results = server.probe(probe, only, &excluded).await;
    let mut report = String::new();
    let mut healthy = true;
    for (check, result) in &results {
        match result {
            Ok(()) => report.push_str(&format!("[+]{check} ok\n")),
            Err(reason) => {
                healthy = false;
                report.push_str(&format!("[-]{check} failed: {reason}\n"));
            }
        }
    }
    if !healthy {
        // Go's http.Error adds a line end.
        report.push('\n');
        return text(StatusCode::SERVICE_UNAVAILABLE, report);
    }
    if !query.has("verbose") {
        report.clear();
    }
    report.push_str("ok\n");
    text(StatusCode::OK, report)
}

/// The refusal of anything but GET, as Go's `http.Error`.
fn get_only(method: &Method) -> Option<Response<Body>> {
    if method == Method::GET {
        return None;
    }
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET"));
    Some(response)
}

/// Go's `http.NotFound`.
pub fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "404 page not found\n")
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = with_body(status, body.into());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = with_body(status, body.into());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON));
    response
}

fn with_body(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(body)));
    *response.status_mut() = status;
    response
}

/// A body of unknown length (so sent chunked) holding `data`.
pub fn chunked(data: Bytes) -> Body {
    let frames = futures::stream::iter([Ok::<_, tonic::Status>(hyper::body::Frame::data(data))]);
    Body::new(http_body_util::StreamBody::new(frames))
}

/// A request's query parameters, percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn of(uri: &http::Uri) -> Query {
        let query = uri.query().unwrap_or("");
        Query(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    fn first(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }
}
