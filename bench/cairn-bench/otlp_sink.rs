//! `cairn-bench otlp-sink`: a collector that takes every OTLP/gRPC export and drops it, so
//! bench/compare can measure what tracing costs the server, not what a collector costs the
//! machine. It answers each call with an empty message (an empty
//! `ExportTraceServiceResponse`, which is full success) and counts the bytes it was sent;
//! the count goes to stderr when the sink stops.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// An empty gRPC message: no compression flag, length 0.
const EMPTY_MESSAGE: [u8; 5] = [0; 5];

pub async fn run(listen: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    let received_bytes = Arc::new(AtomicU64::new(0));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let received_bytes = received_bytes.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let received_bytes = received_bytes.clone();
                    async move {
                        // Read the export whole, as a collector must before it answers.
                        let mut body = request.into_body();
                        while let Some(Ok(frame)) = body.frame().await {
                            if let Some(data) = frame.data_ref() {
                                received_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                            }
                        }
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let frames = futures::stream::iter([
                            Frame::data(Bytes::from_static(&EMPTY_MESSAGE)),
                            Frame::trailers(trailers),
                        ])
                        .map(Ok::<_, Infallible>);
                        let response = hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(StreamBody::new(frames))
                            .expect("a valid response");
                        Ok::<_, Infallible>(response)
                    }
                },
            );
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    eprintln!(
        "otlp-sink: received {} bytes of exports",
        received_bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
