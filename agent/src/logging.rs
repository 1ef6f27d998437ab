//! One JSON object per line on stdout, with the fields CONVENTIONS.md names:
//! `timestamp` (RFC 3339 UTC), `level` (lower case), `service`, `message`, then the
//! event's own fields and those of the spans around it (`request_id`, ...).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::{Error, SERVICE_NAME};

/// Installs the JSON logger at `level` (a level name or a tracing filter directive).
pub fn init(level: &str) -> Result<(), Error> {
    let filter = EnvFilter::try_new(level)
        .map_err(|error| Error::Config(format!("LOG_LEVEL = {level:?} is not a level: {error}")))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(JsonFields::new())
        .event_format(JsonLogFormat)
        .with_writer(std::io::stdout)
        .try_init()
        .map_err(|error| Error::Config(format!("logger already installed: {error}")))
}

/// The event formatter; public so tests can render into a buffer.
pub struct JsonLogFormat;

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
        object.insert("service".into(), Value::String(SERVICE_NAME.into()));
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
