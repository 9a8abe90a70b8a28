//! Log lines as etcd's zap logger writes them in JSON: one object per line with `level`,
//! `ts`, `caller` and `msg`, then the event's own fields.
//!
//! ```text
//! {"level":"info","ts":"2026-12-03T13:52:03.012973Z","caller":"src/main.rs:180","msg":"ready to serve client requests"}
//! ```
//!
//! zap's levels (`debug`, `info`, `warn`, `error`; tracing's `trace` is `debug`), its
//! ISO 8601 UTC time with microseconds, and its short caller (the file's directory and name,
//! and the line). tracing-subscriber's own JSON names these `timestamp`, `level` in capitals,
//! `fields.message` and `target`, which tools reading etcd's logs do not know.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `--log-format json`.
pub(super) struct ZapJson;

impl<S, N> FormatEvent<S, N> for ZapJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(128);
        line.push_str("{\"level\":");
        push_json(&mut line, &serde_json::Value::from(zap_level(meta.level())));
        line.push_str(",\"ts\":");
        push_json(
            &mut line,
            &serde_json::Value::from(zap_time(time::OffsetDateTime::now_utc())),
        );
        if let (Some(file), Some(number)) = (meta.file(), meta.line()) {
            line.push_str(",\"caller\":");
            let caller = format!("{}:{number}", short_caller(file));
            push_json(&mut line, &serde_json::Value::from(caller));
        }
        line.push_str(",\"msg\":");
        push_json(&mut line, &serde_json::Value::from(fields.message));
        for (name, value) in &fields.others {
            line.push(',');
            push_json(&mut line, &serde_json::Value::from(*name));
            line.push(':');
            push_json(&mut line, value);
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

fn push_json(line: &mut String, value: &serde_json::Value) {
    // Writing JSON into a String cannot fail.
    let _ = write!(line, "{value}");
}

fn zap_level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        _ => "debug",
    }
}

/// zap's ISO 8601 time in UTC, to the microsecond: `2026-12-03T13:52:03.012973Z`.
fn zap_time(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// zap's short caller: the file's last directory and its name.
fn short_caller(file: &str) -> &str {
    let mut slashes = file.rmatch_indices('/').map(|(i, _)| i);
    match (slashes.next(), slashes.next()) {
        (Some(_), Some(before)) => &file[before + 1..],
        _ => file,
    }
}

/// An event's message and its other fields, in the order given.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, serde_json::Value)>,
}

impl Fields {
    fn record(&mut self, field: &Field, value: serde_json::Value) {
        match (field.name(), value) {
            ("message", serde_json::Value::String(message)) => self.message = message,
            (name, value) => self.others.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.record(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zaps_time_and_caller() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_796_305_923_012_973_000).unwrap();
        assert_eq!(zap_time(t), "2026-12-03T13:52:03.012973Z");
        assert_eq!(short_caller("src/server/proposer.rs"), "server/proposer.rs");
        assert_eq!(short_caller("src/main.rs"), "src/main.rs");
        assert_eq!(short_caller("main.rs"), "main.rs");
    }

    #[test]
    fn an_event_is_one_json_object_with_zaps_keys() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::fmt::MakeWriter;

        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Captured {
            type Writer = Captured;
            fn make_writer(&'a self) -> Captured {
                self.clone()
            }
        }

        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(ZapJson)
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(member_id = %"8e9e05c52164694d", term = 2_u64, "published {}", "\"x\"");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["level"], "warn");
        assert_eq!(line["msg"], "published \"x\"");
        assert_eq!(line["member_id"], "8e9e05c52164694d");
        assert_eq!(line["term"], 2);
        assert!(line["caller"]
            .as_str()
            .unwrap()
            .starts_with("telemetry/zap_json.rs:"));
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    }
}
