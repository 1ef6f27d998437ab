//! statsd and DogStatsD datagrams: `parse_statsd` must not panic, must end, and must hand
//! out only slices of the datagram; tag iteration, newline unescaping and the JSON
//! rendering must not panic either.

#![no_main]

mod borrow;

use killkrill_parsers::json::statsd_to_json;
use killkrill_parsers::statsd::{StatsdItem, StatsdTags, StatsdValue, parse_statsd, unescape_newlines};
use libfuzzer_sys::fuzz_target;

use borrow::{assert_inside, assert_inside_if_not_empty};

fuzz_target!(|datagram: &[u8]| {
    for item in parse_statsd(datagram) {
        match item {
            StatsdItem::Metric(metric) => {
                assert_inside(datagram, metric.name.as_bytes(), "metric name");
                match metric.value {
                    StatsdValue::Number(number) => assert!(number.is_finite(), "value {number}"),
                    StatsdValue::Set(member) => assert_inside(datagram, member.as_bytes(), "set member"),
                }
                assert!(metric.sample_rate > 0.0 && metric.sample_rate <= 1.0, "sample rate outside (0, 1]");
                check_optional(datagram, metric.container_id, "container id");
                check_tags(datagram, metric.tags);
            }
            StatsdItem::Event(event) => {
                assert_inside(datagram, event.title.as_bytes(), "event title");
                assert_inside_if_not_empty(datagram, event.text.as_bytes(), "event text");
                let _ = unescape_newlines(event.title);
                let _ = unescape_newlines(event.text);
                for (what, field) in [
                    ("event hostname", event.hostname),
                    ("aggregation key", event.aggregation_key),
                    ("priority", event.priority),
                    ("source type name", event.source_type_name),
                    ("alert type", event.alert_type),
                ] {
                    check_optional(datagram, field, what);
                }
                check_tags(datagram, event.tags);
            }
            StatsdItem::ServiceCheck(check) => {
                assert_inside(datagram, check.name.as_bytes(), "service check name");
                assert!(check.status <= 3, "service check status {}", check.status);
                check_optional(datagram, check.hostname, "service check hostname");
                if let Some(message) = check.message {
                    assert_inside_if_not_empty(datagram, message.as_bytes(), "service check message");
                    let _ = unescape_newlines(message);
                }
                check_tags(datagram, check.tags);
            }
            StatsdItem::Reject(reject) => assert_inside(datagram, reject.line, "rejected line"),
        }
    }
    let _ = statsd_to_json(datagram);
});

fn check_optional(datagram: &[u8], field: Option<&str>, what: &str) {
    if let Some(text) = field {
        assert_inside_if_not_empty(datagram, text.as_bytes(), what);
    }
}

fn check_tags(datagram: &[u8], tags: StatsdTags<'_>) {
    assert_inside_if_not_empty(datagram, tags.raw.as_bytes(), "tags");
    let _ = tags.is_empty();
    for (key, value) in tags {
        assert_inside_if_not_empty(datagram, key.as_bytes(), "tag key");
        if let Some(value) = value {
            assert_inside_if_not_empty(datagram, value.as_bytes(), "tag value");
        }
    }
}
