import { useEffect, useRef } from "react";
import uPlot from "uplot";
import type { AlignedData, Options } from "uplot";
import "uplot/dist/uPlot.min.css";

/** Series colours that read on light and dark backgrounds. */
export const COLORS = ["#2f7ed8", "#d9534f", "#3aa657", "#e0a030", "#8e5bd6", "#17a2b8", "#c0568f", "#7a8a2b"];

/**
 * A uPlot chart sized to its container (redrawn when the container resizes). `data` is uPlot's
 * columns: x values first, then one array per series.
 */
export function Chart(props: { title: string; data: AlignedData; series: { label: string; stroke?: string }[]; xTime?: boolean; yLabel?: string; bars?: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = () => Math.max(280, el.clientWidth);
    // Two bar series stand side by side (left, right of the x value) instead of on top of each other.
    const paths = (i: number) => (props.bars ? uPlot.paths.bars!({ size: [props.series.length > 1 ? 0.4 : 0.6, 40], align: props.series.length > 1 ? (i === 0 ? -1 : 1) : 0 }) : undefined);
    const opts: Options = {
      width: width(),
      height: 260,
      title: props.title,
      scales: { x: { time: props.xTime ?? true } },
      axes: [{ stroke: "currentColor", incrs: props.xTime === false ? [1, 2, 5, 10, 20, 50, 100] : undefined, grid: { stroke: "rgba(128,128,128,0.2)" } }, { stroke: "currentColor", label: props.yLabel, grid: { stroke: "rgba(128,128,128,0.2)" } }],
      series: [{}, ...props.series.map((s, i) => ({ label: s.label, stroke: s.stroke ?? COLORS[i % COLORS.length], width: 2, paths: paths(i), fill: props.bars ? `${s.stroke ?? COLORS[i % COLORS.length]}99` : undefined }))],
    };
    const plot = new uPlot(opts, props.data, el);
    const ro = new ResizeObserver(() => plot.setSize({ width: width(), height: 260 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [props.data, props.series, props.title, props.xTime, props.yLabel, props.bars]);
  return <div className="chart" ref={box} role="img" aria-label={props.title} />;
}
