//! A two-panel SVG chart drawn as text: throughput (a sweep's curves, or bars per target)
//! on the left, latency percentiles per target on the right. Hand-drawn so reports need no
//! plotting stack on the benchmark machine.

use std::fmt::Write as _;

use super::ScenarioResult;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 420.0;
const PANEL_WIDTH: f64 = 440.0;
const PLOT_TOP: f64 = 60.0;
const PLOT_HEIGHT: f64 = 280.0;
const LEFT_MARGIN: f64 = 70.0;
const COLORS: [&str; 6] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

pub(super) fn render(result: &ScenarioResult) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, "<title>{}</title>", escape(&result.scenario));
    let _ = writeln!(svg, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{} — {}</text>"#,
        WIDTH / 2.0,
        escape(&result.scenario),
        escape(&result.machine.describe())
    );
    if result.has_sweep() {
        sweep_panel(&mut svg, result, 0.0);
    } else {
        throughput_bars(&mut svg, result, 0.0);
    }
    latency_bars(&mut svg, result, WIDTH / 2.0);
    svg.push_str("</svg>\n");
    svg
}

/// Plot-space helpers for one panel whose left edge is at `x0`.
struct Panel {
    x0: f64,
    y_max: f64,
}

impl Panel {
    fn left(&self) -> f64 {
        self.x0 + LEFT_MARGIN
    }

    fn bottom(&self) -> f64 {
        PLOT_TOP + PLOT_HEIGHT
    }

    fn y(&self, value: f64) -> f64 {
        self.bottom() - PLOT_HEIGHT * (value / self.y_max).clamp(0.0, 1.0)
    }

    /// Title, axes and five horizontal grid lines labelled with `unit`.
    fn frame(&self, svg: &mut String, title: &str, unit: &str) {
        let (left, bottom) = (self.left(), self.bottom());
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="48" text-anchor="middle">{}</text>"#,
            left + PANEL_WIDTH / 2.0 - 30.0,
            escape(title)
        );
        for step in 0..=5 {
            let value = self.y_max * f64::from(step) / 5.0;
            let y = self.y(value);
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + PANEL_WIDTH - LEFT_MARGIN,
                left - 6.0,
                y + 4.0,
                short_number(value)
            );
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{PLOT_TOP}" x2="{left}" y2="{bottom}" stroke="#333333"/><line x1="{left}" y1="{bottom}" x2="{:.1}" y2="{bottom}" stroke="#333333"/>"##,
            left + PANEL_WIDTH - LEFT_MARGIN
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" transform="rotate(-90 {:.1} {:.1})" text-anchor="middle">{}</text>"#,
            self.x0 + 16.0,
            PLOT_TOP + PLOT_HEIGHT / 2.0,
            self.x0 + 16.0,
            PLOT_TOP + PLOT_HEIGHT / 2.0,
            escape(unit)
        );
    }
}

fn plot_width() -> f64 {
    PANEL_WIDTH - LEFT_MARGIN
}

/// Bars of accepted and stored msgs/s per target.
fn throughput_bars(svg: &mut String, result: &ScenarioResult, x0: f64) {
    let y_max = nice_ceiling(
        result.targets.iter().map(|t| t.accepted_msgs_per_sec.max(t.stored_msgs_per_sec)).fold(0.0, f64::max),
    );
    let panel = Panel { x0, y_max };
    panel.frame(svg, "throughput (msgs/s): accepted, stored", "msgs/s");
    let slot = plot_width() / result.targets.len().max(1) as f64;
    for (i, target) in result.targets.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let x = panel.left() + slot * i as f64 + slot * 0.15;
        let bar = slot * 0.35;
        let _ = writeln!(svg, r#"<g class="series" data-target="{}">"#, escape(&target.name));
        for (k, (value, opacity)) in
            [(target.accepted_msgs_per_sec, 0.45), (target.stored_msgs_per_sec, 1.0)].iter().enumerate()
        {
            let top = panel.y(*value);
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{top:.1}" width="{bar:.1}" height="{:.1}" fill="{color}" fill-opacity="{opacity}"><title>{}</title></rect>"#,
                x + bar * k as f64,
                panel.bottom() - top,
                short_number(*value)
            );
        }
        label_below(svg, &panel, x + bar, &super::markdown::label(target));
        svg.push_str("</g>\n");
    }
}

/// Achieved msgs/s (solid) and loss % (dashed, right axis) against offered msgs/s.
fn sweep_panel(svg: &mut String, result: &ScenarioResult, x0: f64) {
    let points = || result.targets.iter().flat_map(|t| t.sweep.iter());
    let x_max = nice_ceiling(points().map(|p| p.offered_msgs_per_sec).fold(0.0, f64::max));
    let y_max = nice_ceiling(
        points().map(|p| p.achieved_msgs_per_sec.max(p.offered_msgs_per_sec)).fold(0.0, f64::max),
    );
    let panel = Panel { x0, y_max };
    panel.frame(svg, "achieved (solid) and loss % (dashed) vs offered msgs/s", "msgs/s");
    let x = |offered: f64| panel.left() + plot_width() * (offered / x_max).clamp(0.0, 1.0);
    let loss_y = |loss: f64| panel.bottom() - PLOT_HEIGHT * (loss / 100.0).clamp(0.0, 1.0);
    for step in 0..=4 {
        let value = x_max * f64::from(step) / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(value),
            panel.bottom() + 16.0,
            short_number(value)
        );
    }
    let right = panel.left() + plot_width();
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}">100% loss</text><text x="{:.1}" y="{:.1}">0%</text>"#,
        right + 4.0,
        PLOT_TOP + 4.0,
        right + 4.0,
        panel.bottom()
    );
    for (i, target) in result.targets.iter().filter(|t| !t.sweep.is_empty()).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let achieved: Vec<String> = target
            .sweep
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.offered_msgs_per_sec), panel.y(p.achieved_msgs_per_sec)))
            .collect();
        let loss: Vec<String> = target
            .sweep
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.offered_msgs_per_sec), loss_y(p.loss_percent)))
            .collect();
        let _ = writeln!(svg, r#"<g class="series" data-target="{}">"#, escape(&target.name));
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            achieved.join(" ")
        );
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="5,4"/>"#,
            loss.join(" ")
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}">{}</text>"#,
            panel.left() + 8.0,
            PLOT_TOP + 14.0 + 14.0 * i as f64,
            escape(&super::markdown::label(target))
        );
        svg.push_str("</g>\n");
    }
}

/// Grouped bars of p50, p99 and p99.9 per target, on a linear µs axis.
fn latency_bars(svg: &mut String, result: &ScenarioResult, x0: f64) {
    let with_latency: Vec<_> = result.targets.iter().filter_map(|t| Some((t, t.latency_us?))).collect();
    let y_max = nice_ceiling(with_latency.iter().map(|(_, l)| l.p999).fold(0.0, f64::max));
    let panel = Panel { x0, y_max };
    panel.frame(svg, "latency p50 / p99 / p99.9 (µs)", "µs");
    if with_latency.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">no latency measured</text>"#,
            panel.left() + plot_width() / 2.0,
            PLOT_TOP + PLOT_HEIGHT / 2.0
        );
        return;
    }
    let slot = plot_width() / with_latency.len() as f64;
    for (i, (target, latency)) in with_latency.iter().enumerate() {
        let color =
            COLORS[result.targets.iter().position(|t| t.name == target.name).unwrap_or(i) % COLORS.len()];
        let bar = slot * 0.25;
        let x = panel.left() + slot * i as f64 + slot * 0.125;
        let _ = writeln!(svg, r#"<g class="series" data-target="{}">"#, escape(&target.name));
        for (k, (value, opacity)) in
            [(latency.p50, 0.35), (latency.p99, 0.65), (latency.p999, 1.0)].iter().enumerate()
        {
            let top = panel.y(*value);
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{top:.1}" width="{bar:.1}" height="{:.1}" fill="{color}" fill-opacity="{opacity}"><title>{:.1} µs</title></rect>"#,
                x + bar * k as f64,
                panel.bottom() - top,
                value
            );
        }
        label_below(svg, &panel, x + bar * 1.5, &super::markdown::label(target));
        svg.push_str("</g>\n");
    }
}

fn label_below(svg: &mut String, panel: &Panel, x: f64, text: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        panel.bottom() + 16.0,
        escape(text)
    );
}

/// The smallest 1, 2 or 5 × 10^k at or above `value` (1 for nothing to plot).
fn nice_ceiling(value: f64) -> f64 {
    if value.is_nan() || value <= 0.0 || value.is_infinite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|c| *c >= value).unwrap_or(10.0 * magnitude)
}

/// `1500000` as `1.5M`, for axis labels.
fn short_number(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{}M", trim(v / 1e6)),
        v if v >= 1e3 => format!("{}k", trim(v / 1e3)),
        v => trim(v),
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(730.0), 1000.0);
        assert_eq!(nice_ceiling(1_200_000.0), 2_000_000.0);
        assert_eq!(nice_ceiling(5.0), 5.0);
        assert_eq!(short_number(1_500_000.0), "1.5M");
        assert_eq!(short_number(20_000.0), "20k");
    }
}
