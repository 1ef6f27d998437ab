// A time-series line chart in plain SVG: a few series, a time axis, a value axis, a legend.
// Hand-written rather than a library: the UI draws a handful of lines and nothing more.

import { useEffect, useRef, useState } from "react";
import { formatClock, formatNumber } from "../format";

export interface ChartSeries {
  label: string;
  points: { t: number; v: number | null }[];
}

const COLORS = ["#2a7ab0", "#d9822b", "#3b9c5a", "#b8433b", "#7b5ea7", "#8c6d31", "#c2549d", "#5f7f8f"];

export function seriesColor(index: number): string {
  return COLORS[index % COLORS.length]!;
}

/** A round step that cuts [min, max] into about `count` parts. */
function tickStep(min: number, max: number, count: number): number {
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
}

/** Seconds for short ranges, the day for ranges over a day. */
function timeLabel(ms: number, spanMs: number): string {
  if (spanMs <= 86_400_000) return formatClock(ms);
  const date = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

const tickFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

function useWidth<T extends HTMLElement>(): [React.RefObject<T | null>, number] {
  const ref = useRef<T>(null);
  const [width, setWidth] = useState(600);
  useEffect(() => {
    const element = ref.current;
    if (!element) return;
    const observer = new ResizeObserver((entries) => {
      const next = Math.floor(entries[0]?.contentRect.width ?? 600);
      if (next > 0) setWidth(next);
    });
    observer.observe(element);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

export function LineChart(props: {
  series: ChartSeries[];
  height?: number;
  unit?: string;
  title?: string;
  emptyText?: string;
  /** The time range to show (ms), when it is wider than the data (a query's range). */
  range?: [number, number];
}) {
  const [ref, width] = useWidth<HTMLDivElement>();
  const height = props.height ?? 220;
  const margin = { top: 10, right: 12, bottom: 24, left: 56 };
  const all = props.series.flatMap((s) => s.points.filter((p) => p.v !== null && Number.isFinite(p.v)));
  if (all.length === 0) {
    return (
      <div ref={ref} className="chart chart-empty" style={{ height }} role="img" aria-label={props.title}>
        {props.emptyText ?? "No data in this range yet."}
      </div>
    );
  }
  const tMin = Math.min(...all.map((p) => p.t), props.range?.[0] ?? Infinity);
  const tMax = Math.max(...all.map((p) => p.t), props.range?.[1] ?? -Infinity, tMin + 1000);
  // The value axis starts at 0 (or below) and ends on a round tick above the highest value.
  const vMin = Math.min(0, ...all.map((p) => p.v!));
  const vMaxRaw = Math.max(...all.map((p) => p.v!));
  const top = vMaxRaw <= vMin ? vMin + 1 : vMaxRaw;
  const step = tickStep(vMin, top, 4);
  const vMax = Math.ceil(top / step - 1e-9) * step;
  const plotWidth = Math.max(10, width - margin.left - margin.right);
  const plotHeight = height - margin.top - margin.bottom;
  const x = (t: number) => margin.left + ((t - tMin) / (tMax - tMin)) * plotWidth;
  const y = (v: number) => margin.top + plotHeight - ((v - vMin) / (vMax - vMin)) * plotHeight;
  const yTicks: number[] = [];
  for (let value = Math.ceil(vMin / step) * step; value <= vMax + step * 1e-9; value += step) yTicks.push(value);
  // No more ticks than whole seconds in the range, so that labels do not repeat.
  const xTickCount = Math.max(1, Math.min(Math.floor(plotWidth / 110), Math.floor((tMax - tMin) / 1000)));
  const xTicks = Array.from({ length: xTickCount + 1 }, (_, i) => tMin + ((tMax - tMin) * i) / xTickCount);

  return (
    <div ref={ref} className="chart">
      <svg width={width} height={height} role="img" aria-label={props.title}>
        {yTicks.map((value) => (
          <g key={`y${value}`}>
            <line className="grid" x1={margin.left} x2={margin.left + plotWidth} y1={y(value)} y2={y(value)} />
            <text className="tick" x={margin.left - 6} y={y(value) + 4} textAnchor="end">
              {tickFormat.format(value)}
            </text>
          </g>
        ))}
        {xTicks.map((t, i) => (
          <text
            key={`x${i}`}
            className="tick"
            x={x(t)}
            y={height - 6}
            textAnchor={i === 0 ? "start" : i === xTicks.length - 1 ? "end" : "middle"}
          >
            {timeLabel(t, tMax - tMin)}
          </text>
        ))}
        {props.series.map((s, index) => {
          // A gap (null) breaks the line rather than drawing through it.
          const runs: string[][] = [[]];
          for (const p of s.points) {
            if (p.v === null || !Number.isFinite(p.v)) runs.push([]);
            else runs[runs.length - 1]!.push(`${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
          }
          return (
            <g key={s.label} stroke={seriesColor(index)} fill={seriesColor(index)}>
              {runs
                .filter((run) => run.length > 1)
                .map((run, i) => (
                  <polyline key={i} className="line" points={run.join(" ")} />
                ))}
              {runs
                .filter((run) => run.length === 1)
                .map((run, i) => {
                  const [cx, cy] = run[0]!.split(",");
                  return <circle key={`d${i}`} cx={cx} cy={cy} r={2.5} />;
                })}
            </g>
          );
        })}
      </svg>
      <ul className="legend">
        {props.series.map((s, index) => {
          const last = [...s.points].reverse().find((p) => p.v !== null);
          return (
            <li key={s.label}>
              <span className="swatch" style={{ background: seriesColor(index) }} />
              {s.label}
              {last ? `: ${formatNumber(last.v)}${props.unit ? ` ${props.unit}` : ""}` : ""}
            </li>
          );
        })}
      </ul>
    </div>
  );
}
