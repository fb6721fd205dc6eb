// Small interactive SVG line charts: steps for weights, mean + min..max band for scores.
// Hover shows the values at the nearest iteration; clicking a legend entry hides or shows a series.
'use strict';

const CHART = {width: 330, height: 180, left: 46, right: 10, top: 8, bottom: 26};
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];
const hiddenSeries = {};  // chart key -> Set of hidden series names (kept across live re-renders)

function niceTicks(low, high, count = 5) {
  if (!(high > low)) return [low];
  const raw = (high - low) / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(low / step) * step; v <= high + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

// The value a series shows at iteration x: steps hold the last point at or before x.
function valueAt(series, x) {
  if (series.step) {
    let value = null;
    for (const [px, py] of series.points) if (px <= x) value = py;
    return value;
  }
  const hit = series.points.find(([px]) => px === x);
  return hit ? hit[1] : null;
}

function lineChart(options) {
  const hidden = hiddenSeries[options.key] || (hiddenSeries[options.key] = new Set());
  const box = el('div', {class: 'chart', dataset: {chart: options.key}}, el('h4', {}, options.title));
  const plot = el('div');
  const tip = el('div', {class: 'tip'});
  const legend = el('div', {class: 'legend'});
  box.append(plot, legend, tip);
  options.series.forEach((s, i) => { s.color = s.color || COLORS[i % COLORS.length]; });

  function draw() {
    plot.replaceChildren(render(options, options.series.filter((s) => !hidden.has(s.name)), tip, box));
    legend.replaceChildren(...options.series.map((s) => el('span', {
      class: hidden.has(s.name) ? 'hidden' : null, title: 'show / hide',
      onclick: () => { hidden.has(s.name) ? hidden.delete(s.name) : hidden.add(s.name); draw(); },
    }, el('b', {class: 'swatch'}, '— '), s.name)));
    [...legend.querySelectorAll('b.swatch')].forEach((b, i) => { b.style.color = options.series[i].color; });
  }
  draw();
  return box;
}

function render(options, series, tip, box) {
  const {width, height, left, right, top, bottom} = CHART;
  const root = svg('svg', {width, height, viewBox: `0 0 ${width} ${height}`, role: 'img'});
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  let ys = series.flatMap((s) => s.points.map((p) => p[1]).concat((s.band || []).flatMap((b) => [b[1], b[2]])));
  ys = ys.filter((y) => typeof y === 'number' && isFinite(y) && (!options.log || y > 0));
  if (!xs.length || !ys.length) {
    root.append(svg('text', {x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'axis'}, 'no data yet'));
    return root;
  }
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const f = options.log ? Math.log10 : (v) => v;
  let [y0, y1] = [f(Math.min(...ys)), f(Math.max(...ys))];
  const pad = (y1 - y0) * 0.08 || Math.abs(y0) * 0.1 || 1;
  y0 -= pad; y1 += pad;
  const sx = (x) => left + (x - x0) / (x1 - x0) * (width - left - right);
  const sy = (y) => top + (1 - (f(y) - y0) / (y1 - y0)) * (height - top - bottom);
  const ok = (y) => typeof y === 'number' && isFinite(y) && (!options.log || y > 0);

  const axis = svg('g', {class: 'axis'});
  axis.append(svg('line', {x1: left, x2: width - right, y1: height - bottom, y2: height - bottom}));
  for (const t of niceTicks(x0, x1)) {
    axis.append(svg('text', {x: sx(t), y: height - bottom + 13, 'text-anchor': 'middle'}, fmt(t)));
  }
  const yTicks = options.log ? niceTicks(y0, y1, 4).map((t) => Math.pow(10, t)) : niceTicks(y0, y1, 4);
  for (const t of yTicks) {
    axis.append(svg('line', {x1: left, x2: width - right, y1: sy(t), y2: sy(t), 'stroke-dasharray': '2,3'}));
    axis.append(svg('text', {x: left - 4, y: sy(t) + 3, 'text-anchor': 'end'}, fmt(t, 3)));
  }
  axis.append(svg('text', {x: width - right, y: height - 2, 'text-anchor': 'end'}, options.xLabel || 'iteration'));
  root.append(axis);

  for (const s of series) {
    const band = (s.band || []).filter((b) => ok(b[1]) && ok(b[2]));
    if (band.length > 1) {
      const outline = band.map((b) => `${sx(b[0])},${sy(b[2])}`).concat(band.slice().reverse().map((b) => `${sx(b[0])},${sy(b[1])}`));
      root.append(svg('polygon', {points: outline.join(' '), fill: s.color, 'fill-opacity': 0.15, stroke: 'none'}));
    }
    const pts = s.points.filter((p) => ok(p[1]));
    if (!pts.length) continue;
    let d = `M${sx(pts[0][0])},${sy(pts[0][1])}`;
    for (const [x, y] of pts.slice(1)) d += s.step ? `H${sx(x)}V${sy(y)}` : `L${sx(x)},${sy(y)}`;
    root.append(svg('path', {d, fill: 'none', stroke: s.color, 'stroke-width': 1.8}));
    for (const [x, y] of pts) root.append(svg('circle', {cx: sx(x), cy: sy(y), r: 2.5, fill: s.color}));
  }

  const guide = svg('line', {y1: top, y2: height - bottom, stroke: '#888', 'stroke-dasharray': '3,3', visibility: 'hidden'});
  const overlay = svg('rect', {x: left, y: top, width: width - left - right, height: height - top - bottom, fill: 'transparent'});
  const allX = [...new Set(xs)].sort((a, b) => a - b);
  overlay.addEventListener('mousemove', (event) => {
    const rect = root.getBoundingClientRect();
    const px = (event.clientX - rect.left) * width / rect.width;
    const x = allX.reduce((best, v) => (Math.abs(sx(v) - px) < Math.abs(sx(best) - px) ? v : best), allX[0]);
    guide.setAttribute('x1', sx(x)); guide.setAttribute('x2', sx(x)); guide.setAttribute('visibility', 'visible');
    tip.textContent = [`iteration ${x}`].concat(series.map((s) => `${s.name}: ${fmt(valueAt(s, x))}`)).join('\n');
    tip.style.display = 'block';
    tip.style.left = `${Math.min(event.clientX - box.getBoundingClientRect().left + 12, width - 100)}px`;
    tip.style.top = `${event.clientY - box.getBoundingClientRect().top + 12}px`;
  });
  overlay.addEventListener('mouseleave', () => { guide.setAttribute('visibility', 'hidden'); tip.style.display = 'none'; });
  root.append(guide, overlay);
  return root;
}
