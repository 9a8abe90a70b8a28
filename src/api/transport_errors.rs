//! Transport errors, reworded as grpc-go words them: etcd's clients see the same code and
//! text from Cairn as from etcd even where tonic, not Cairn, answers.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use tonic::codegen::http::{HeaderValue, Response};

/// Characters gRPC requires percent-encoded in `grpc-message`.
const GRPC_MESSAGE_ENCODE: &AsciiSet = &CONTROLS.add(b'%');
const CODE_OUT_OF_RANGE: &[u8] = b"11";
const CODE_RESOURCE_EXHAUSTED: &str = "8";

/// tonic refuses an oversized message with OUT_OF_RANGE "Error, decoded message length too
/// large: found N bytes, the limit is: M bytes"; grpc-go, and so etcd, with
/// RESOURCE_EXHAUSTED "grpc: received message larger than max (N vs. M)".
pub fn oversized_message_as_grpc_go<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").map(HeaderValue::as_bytes) != Some(CODE_OUT_OF_RANGE) {
        return response;
    }
    let Some(message) = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|v| percent_decode_str(v).decode_utf8_lossy().into_owned())
    else {
        return response;
    };
    let Some(sizes) = message.strip_prefix("Error, decoded message length too large: found ")
    else {
        return response;
    };
    let Some((found, limit)) = sizes
        .strip_suffix(" bytes")
        .and_then(|s| s.split_once(" bytes, the limit is: "))
    else {
        return response;
    };
    let reworded = format!("grpc: received message larger than max ({found} vs. {limit})");
    let encoded = utf8_percent_encode(&reworded, GRPC_MESSAGE_ENCODE).to_string();
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert(
            "grpc-status",
            HeaderValue::from_static(CODE_RESOURCE_EXHAUSTED),
        );
        headers.insert("grpc-message", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewords_tonic_size_error() {
        let mut r = Response::new(());
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("11"));
        r.headers_mut().insert(
            "grpc-message",
            HeaderValue::from_static(
                "Error,%20decoded%20message%20length%20too%20large:%20found%203145738%20bytes,%20the%20limit%20is:%202097152%20bytes",
            ),
        );
        let r = oversized_message_as_grpc_go(r);
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(
            r.headers()["grpc-message"],
            "grpc: received message larger than max (3145738 vs. 2097152)"
        );
    }

    #[test]
    fn leaves_other_errors_alone() {
        let mut r = Response::new(());
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("11"));
        r.headers_mut().insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver: mvcc: required revision is a future revision"),
        );
        let r = oversized_message_as_grpc_go(r);
        assert_eq!(r.headers()["grpc-status"], "11");
    }
}
