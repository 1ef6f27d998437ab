//! One JSON object per line on stdout, with the fields CONVENTIONS.md names:
//! `timestamp` (RFC 3339 UTC), `level` (lower case), `service`, `message`, then the
//! event's own fields and those of the spans around it (`request_id`, ...), then `target`.
//! One formatter for every Killkrill process, so their lines read alike.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Why the logger could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("{level:?} is not a level: {reason}")]
    BadLevel { level: String, reason: String },
    #[error("logger already installed: {0}")]
    AlreadyInstalled(String),
}

/// Installs the JSON logger for `service` at `level` (a level name or a tracing filter
/// directive).
pub fn init(service: &'static str, level: &str) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_new(level)
        .map_err(|error| LoggingError::BadLevel { level: level.to_owned(), reason: error.to_string() })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(JsonFields::new())
        .event_format(JsonLogFormat::new(service))
        .with_writer(std::io::stdout)
        .try_init()
        .map_err(|error| LoggingError::AlreadyInstalled(error.to_string()))
}

/// The event formatter; public so tests can render into a buffer.
pub struct JsonLogFormat {
    service: &'static str,
}

impl JsonLogFormat {
    pub const fn new(service: &'static str) -> Self {
        Self { service }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLogFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut object = Map::new();
        object.insert("timestamp".into(), Value::String(jiff::Timestamp::now().to_string()));
        object.insert("level".into(), Value::String(level_name(*event.metadata().level()).into()));
        object.insert("service".into(), Value::String(self.service.into()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields)
                {
                    object.extend(fields);
                }
            }
        }
        event.record(&mut FieldCollector(&mut object));
        object.entry("message").or_insert_with(|| Value::String(String::new()));
        object.insert("target".into(), Value::String(event.metadata().target().into()));
        writeln!(writer, "{}", Value::Object(object))
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

struct FieldCollector<'a>(&'a mut Map<String, Value>);

impl Visit for FieldCollector<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::String(value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_holds_the_convention_fields_span_fields_and_event_fields() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLogFormat::new("killkrill-test"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("http_request", request_id = "abc-1");
            let _entered = span.enter();
            tracing::warn!(count = 3u64, ratio = 0.5, ok = true, "Something happened.");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["level"], "warn");
        assert_eq!(line["service"], "killkrill-test");
        assert_eq!(line["message"], "Something happened.");
        assert_eq!(line["request_id"], "abc-1", "span fields are carried");
        assert_eq!(
            (&line["count"], &line["ratio"], &line["ok"]),
            (&Value::from(3), &Value::from(0.5), &Value::from(true))
        );
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(line["target"].as_str().unwrap().contains("killkrill_logging"));
    }

    #[test]
    fn a_bad_level_is_an_error_naming_it() {
        let error = init("killkrill-test", "loud[").unwrap_err();
        assert!(error.to_string().contains("\"loud[\" is not a level"), "{error}");
    }
}
