//! JSON for syslog records, in the shape docs/syslog-parsing.md documents.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::syslog::{StructuredData, SyslogMessage};

/// Renders a parsed frame. `frame` is the exact input (it becomes `raw_b64`); every key is
/// always present, `null` standing for NILVALUE or absence.
pub fn syslog_to_json(frame: &[u8], message: &SyslogMessage<'_>) -> Value {
    let mut object = Map::new();
    object.insert("format".into(), json!(message.format.name()));
    object.insert("facility".into(), json!(message.facility));
    object.insert("severity".into(), json!(message.severity));
    object.insert("version".into(), json!(message.version));
    object.insert("timestamp".into(), json!(message.timestamp.map(|timestamp| timestamp.to_string())));
    object.insert("hostname".into(), json!(message.hostname));
    object.insert("app_name".into(), json!(message.app_name));
    object.insert("procid".into(), json!(message.procid));
    object.insert("msgid".into(), json!(message.msgid));
    object.insert(
        "structured_data".into(),
        message.structured_data.map_or(Value::Null, structured_data_to_json),
    );
    let text = (!message.message.is_empty()).then(|| message.message_lossy());
    object.insert("message".into(), json!(text));
    object.insert("message_b64".into(), json!(STANDARD.encode(message.message)));
    object.insert("raw_b64".into(), json!(STANDARD.encode(frame)));
    object.insert("parse_error".into(), json!(message.parse_error.map(|error| error.reason())));
    Value::Object(object)
}

/// `[{"id": ..., "params": [[name, value], ...]}, ...]` in wire order: a list of pairs
/// rather than an object, because RFC 5424 allows a name to repeat within an element.
fn structured_data_to_json(data: StructuredData<'_>) -> Value {
    let elements = data
        .elements()
        .map(|element| {
            let params =
                element.params().map(|(name, value)| json!([name, value.unescaped()])).collect::<Vec<_>>();
            json!({ "id": element.id, "params": params })
        })
        .collect::<Vec<_>>();
    Value::Array(elements)
}
