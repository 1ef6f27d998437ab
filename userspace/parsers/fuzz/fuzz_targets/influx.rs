//! Influx line protocol: `parse_influx` must not panic, must end, and must hand out only
//! slices of the datagram, for every precision (the timestamp scaling can overflow);
//! iterating tags and fields, unescaping them and the JSON rendering must not panic.

#![no_main]

mod borrow;

use killkrill_parsers::influx::{InfluxFieldValue, InfluxItem, InfluxPrecision, parse_influx};
use killkrill_parsers::json::influx_to_json;
use libfuzzer_sys::fuzz_target;

use borrow::{assert_inside, assert_inside_if_not_empty};

const PRECISIONS: [InfluxPrecision; 4] = [
    InfluxPrecision::Nanoseconds,
    InfluxPrecision::Microseconds,
    InfluxPrecision::Milliseconds,
    InfluxPrecision::Seconds,
];

fuzz_target!(|datagram: &[u8]| {
    for precision in PRECISIONS {
        for item in parse_influx(datagram, precision) {
            match item {
                InfluxItem::Point(point) => {
                    let measurement = point.measurement();
                    assert_inside(datagram, measurement.raw().as_bytes(), "measurement");
                    let _ = measurement.unescaped();
                    assert_inside_if_not_empty(datagram, point.tags_raw().as_bytes(), "tags");
                    assert_inside_if_not_empty(datagram, point.fields_raw().as_bytes(), "fields");
                    for tag in point.tags() {
                        assert_inside(datagram, tag.key.raw().as_bytes(), "tag key");
                        assert_inside(datagram, tag.value.raw().as_bytes(), "tag value");
                        let _ = tag.key.unescaped();
                        let _ = tag.value.unescaped();
                    }
                    for field in point.fields() {
                        assert_inside(datagram, field.key.raw().as_bytes(), "field key");
                        let _ = field.key.unescaped();
                        match field.value {
                            InfluxFieldValue::Float(number) => assert!(number.is_finite(), "field {number}"),
                            InfluxFieldValue::String(text) => {
                                assert_inside_if_not_empty(datagram, text.raw().as_bytes(), "string field");
                                let _ = text.unescaped();
                            }
                            InfluxFieldValue::Integer(_)
                            | InfluxFieldValue::Unsigned(_)
                            | InfluxFieldValue::Boolean(_) => {}
                        }
                    }
                }
                InfluxItem::Reject(reject) => assert_inside(datagram, reject.line, "rejected line"),
            }
        }
        let _ = influx_to_json(datagram, precision);
    }
});
