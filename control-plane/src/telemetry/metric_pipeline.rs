//! Prometheus series of the metrics pipeline: samples aggregated, lines rejected by
//! reason, points flushed, stored and dropped, per listener.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::metrics::{MetricCounters, REJECT_REASONS};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use crate::metric_writer::MetricWriterCounters;

#[derive(Debug)]
pub struct MetricPipelineCollector {
    pub listeners: Arc<std::sync::RwLock<Vec<Arc<MetricCounters>>>>,
    pub writer: Arc<MetricWriterCounters>,
}

impl prometheus_client::collector::Collector for MetricPipelineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let read = ListenerCounters::read;
        let listeners = killkrill_dataplane::counters::snapshot(&self.listeners);
        let per_listener = |encoder: &mut DescriptorEncoder,
                            name: &str,
                            help: &str,
                            value: &dyn Fn(&MetricCounters) -> u64|
         -> Result<(), std::fmt::Error> {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for c in &listeners {
                ConstCounter::new(value(c))
                    .encode(metric.encode_family(&[("listener", c.listener.label())])?)?;
            }
            Ok(())
        };
        per_listener(
            &mut encoder,
            "killkrill_metric_lines",
            "Metric lines read (rejected ones included), by listener",
            &|c| read(&c.lines),
        )?;
        per_listener(
            &mut encoder,
            "killkrill_metric_samples",
            "Metric values aggregated, by listener",
            &|c| read(&c.samples),
        )?;
        per_listener(
            &mut encoder,
            "killkrill_metric_ignored",
            "DogStatsD events and service checks and Influx string fields: counted, not stored",
            &|c| read(&c.ignored),
        )?;
        per_listener(
            &mut encoder,
            "killkrill_metric_points_flushed",
            "Aggregated points handed to the metric writer, by listener",
            &|c| read(&c.points_flushed),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "killkrill_metric_lines_rejected",
                "Metric lines the parser rejected (counted, not kept), by listener and reason",
                None,
                MetricType::Counter,
            )?;
            for c in &listeners {
                for (reason, counter) in REJECT_REASONS.iter().zip(&c.rejected) {
                    let value = read(counter);
                    // Only reasons seen: the listener label times 29 reasons is noise.
                    if value > 0 {
                        ConstCounter::new(value).encode(
                            metric.encode_family(&[("listener", c.listener.label()), ("reason", reason)])?,
                        )?;
                    }
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "killkrill_metric_dropped",
                "Metric samples or points dropped, by listener, stage and reason",
                None,
                MetricType::Counter,
            )?;
            for c in &listeners {
                let listener = c.listener.label();
                for (stage, reason, counter) in [
                    ("handoff", "ring_full", &c.points_dropped_ring_full),
                    ("shutdown", "store_gone", &c.points_dropped_shutdown),
                    ("aggregate", "series_limit", &c.samples_dropped_series_limit),
                ] {
                    ConstCounter::new(read(counter)).encode(metric.encode_family(&[
                        ("listener", listener),
                        ("stage", stage),
                        ("reason", reason),
                    ])?)?;
                }
            }
        }
        for (name, help, counter) in [
            (
                "killkrill_store_metric_points",
                "Metric points committed to the store",
                &self.writer.stored_points,
            ),
            (
                "killkrill_store_metric_write_errors",
                "Metric writes that failed and were retried",
                &self.writer.write_errors,
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(counter.load(Ordering::Relaxed)).encode(metric)?;
        }
        Ok(())
    }
}
