// The ovcast dashboard: one server-sent event stream (/events) drives every panel.
// Events: snapshot (everything, on connect or after falling behind), bar, forecast, status
// (every second: feed, latency, model, and each product's forecast scorecard).
import { CandlestickSeries, LineSeries, createChart } from "./vendor/lightweight-charts.mjs";

const views = new Map(); // product -> {chart, candles, forecast, price, counts}
let forecastSeen = new Set(); // products whose view was fitted to their first forecast

// For people poking at the page, and for the browser tests: what the charts really hold.
window.ovcast = {
  views,
  events: 0,
  status: null,
  summary() {
    const out = {};
    for (const [product, view] of views) {
      const bars = view.candles.data();
      const line = view.forecast.data();
      out[product] = {
        bars: bars.length,
        lastBarTime: bars.length ? bars[bars.length - 1].time : null,
        forecastPoints: line.length,
        forecastFrom: line.length ? line[0].time : null,
        forecastTo: line.length ? line[line.length - 1].time : null,
        price: view.price.textContent,
        axisLabel: bars.length ? view.candles.priceFormatter().format(bars[bars.length - 1].close) : null,
      };
    }
    return out;
  },
};

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

// Prices by magnitude: cents for dollars, four significant digits below one (a 0.000123
// token read "0.00"); the chart's axis gets the same labels and a step to match.
function formatPrice(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return Math.abs(value) >= 1 || value === 0 ? value.toFixed(2) : value.toPrecision(4);
}

function priceFormat(value) {
  const digits = Math.abs(value) >= 1 || value === 0 ? 2 : 3 - Math.floor(Math.log10(Math.abs(value)));
  return { type: "custom", formatter: formatPrice, minMove: 10 ** -Math.min(digits, 12) };
}

function fitPriceAxis(view, close) {
  const format = priceFormat(close);
  if (format.minMove === view.minMove) return;
  view.minMove = format.minMove;
  view.candles.applyOptions({ priceFormat: format });
  view.forecast.applyOptions({ priceFormat: format });
}

function candle(bar) {
  const point = { time: bar.time, open: bar.open, high: bar.high, low: bar.low, close: bar.close };
  if (bar.filled) Object.assign(point, { color: "#5c6370", borderColor: "#5c6370", wickColor: "#5c6370" });
  // Partial: trades may be missing (hollow, outlined in amber); never trusted as a whole bar.
  if (bar.partial) Object.assign(point, { color: "rgba(0,0,0,0)", borderColor: "#d19a66", wickColor: "#d19a66" });
  return point;
}

function scorecardSection() {
  const section = el("section", { class: "scorecard", "aria-label": "forecast scorecard" });
  const table = el("div", { class: "score-table" });
  table.append(
    el("h3", {}, "Scorecard: how the forecasts fared"),
    el("p", { class: "muted caption" },
      "Mean absolute error of the close, in price, on the bars that came (lower is better). " +
      "On prices the random walk (no change) is usually the one to beat."),
    el("table"),
    el("p", { class: "verdict" }, "Nothing scored yet."),
  );
  const plot = el("div", { class: "score-plot" });
  plot.append(
    el("h3", {}, "Error by horizon"),
    document.createElementNS(SVG, "svg"),
    el("p", { class: "legend" }),
  );
  plot.querySelector("svg").setAttribute("role", "img");
  plot.querySelector("svg").setAttribute("aria-label", "MAE by horizon step, model vs random walk and drift");
  section.append(table, plot);
  return section;
}

function viewFor(product) {
  let view = views.get(product);
  if (view) return view;
  $("empty")?.remove();
  const card = el("article", { class: "product", "data-product": product });
  const head = el("header");
  const price = el("span", { class: "price" }, "–");
  const ahead = el("span", { class: "ahead", title: "the latest forecast's last step" });
  const counts = el("span", { class: "muted counts" });
  head.append(el("h2", {}, product), price, ahead, counts);
  const box = el("div", { class: "chart" });
  const score = scorecardSection();
  card.append(head, box, score);
  $("charts").append(card);
  const chart = createChart(box, {
    autoSize: true,
    layout: { background: { color: "#171d24" }, textColor: "#d8dee9" },
    grid: { vertLines: { color: "#202935" }, horzLines: { color: "#202935" } },
    // Fixed edges: the first and last time labels are moved inside instead of cut off.
    timeScale: {
      timeVisible: true, secondsVisible: false, borderColor: "#263040",
      fixLeftEdge: true, fixRightEdge: true,
    },
    // Only whole price labels at the top and bottom edges.
    rightPriceScale: { borderColor: "#263040", entireTextOnly: true },
  });
  const candles = chart.addSeries(CandlestickSeries, {
    upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
    wickUpColor: "#26a69a", wickDownColor: "#ef5350",
  });
  // No price tag on the axis (it covered the axis labels): the header says where it ends.
  const forecast = chart.addSeries(LineSeries, {
    color: "#f5a623", lineWidth: 2, lineStyle: 2,
    priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: true,
  });
  // Following (the default), the chart shows the latest KEEP_BARS bars and the forecast,
  // edge to edge, at every close: no bar scrolls half off the left edge, cutting its time
  // label. Scrolling or zooming stops that; a double click goes back to following.
  view = { chart, candles, forecast, price, ahead, counts, score, follow: true };
  const leave = () => { view.follow = false; };
  box.addEventListener("wheel", leave, { passive: true });
  box.addEventListener("pointerdown", leave);
  box.addEventListener("dblclick", () => { view.follow = true; chart.timeScale().fitContent(); });
  views.set(product, view);
  return view;
}

function showBars(product, bars) {
  const view = viewFor(product);
  view.candles.setData(bars.map(candle));
  if (bars.length) {
    const close = bars[bars.length - 1].close;
    fitPriceAxis(view, close);
    view.price.textContent = formatPrice(close);
  }
  view.chart.timeScale().fitContent();
}

const KEEP_BARS = 300; // as the server keeps: a page left open for days stays small
function addBar(product, bar) {
  const view = viewFor(product);
  const data = view.candles.data();
  if (data.length && data[data.length - 1].time >= bar.time) return; // already shown
  const keep = view.follow ? KEEP_BARS : 2 * KEEP_BARS; // not following: trimmed seldom
  if (data.length >= keep) view.candles.setData([...data.slice(1 - KEEP_BARS), candle(bar)]);
  else view.candles.update(candle(bar));
  fitPriceAxis(view, bar.close);
  view.price.textContent = formatPrice(bar.close);
  if (view.follow) view.chart.timeScale().fitContent();
}

function showForecast(product, forecast) {
  const view = viewFor(product);
  if (!forecast) {
    view.forecast.setData([]);
    return;
  }
  view.forecast.setData(forecast.time.map((time, i) => ({ time, value: forecast.value[i] })));
  const steps = forecast.time.length - 1;
  const end = new Date(forecast.time[steps] * 1000).toISOString().slice(11, 16);
  view.ahead.textContent = `forecast ${formatPrice(forecast.value[steps])} at ${end} (+${steps} bars)`;
  if (!forecastSeen.has(product)) {
    forecastSeen.add(product);
    view.chart.timeScale().fitContent(); // bring the future into view once
  }
}

// Long values (paths, error messages, sources) get a row of their own, left-aligned; a
// path may break after a slash, never inside a name.
const WIDE = new Set(["source", "last_error", "path", "precision", "precision_evidence"]);
function rows(target, entries) {
  const dl = $(target);
  dl.replaceChildren();
  for (const [key, label, value] of entries) {
    const wide = WIDE.has(key) ? { class: "wide" } : {};
    const dd = el("dd", { "data-key": key, ...wide });
    const text = value ?? "–";
    if (key === "path") { // each name unbroken (not even at a hyphen); a break after a slash
      text.split(/(?<=\/)/).forEach((part, i) => {
        if (i) dd.append(el("wbr"));
        dd.append(el("span", { class: "name" }, part));
      });
    } else {
      dd.textContent = text;
    }
    dl.append(el("dt", wide, label), dd);
  }
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "none yet";
  return seconds < 60 ? `${seconds.toFixed(1)} s ago` : `${Math.round(seconds / 60)} min ago`;
}

function badge(id, state, text) {
  const node = $(id);
  node.className = `badge ${state}`;
  node.textContent = text;
}

// The header's badge says what the page shows: live, replaying or finished, and whether
// this page still hears from ovcast (it said a green "live" through a finished replay).
const page = { open: false, state: "wait", text: "connecting…" };
function showPageBadge() {
  if (page.open) badge("stream", page.state, page.text);
  else badge("stream", "bad", "ovcast unreachable: retrying");
}

function showFeed(feed) {
  if ("connected" in feed) {
    badge("feed-badge", feed.connected ? "ok" : "bad", feed.connected ? "connected" : "disconnected");
    Object.assign(page, feed.connected ? { state: "ok", text: "live" } : { state: "bad", text: "feed down" });
    rows("feed", [
      ["source", "Source", feed.source],
      ["last_message", "Last message", ago(feed.last_message_age_s)],
      ["reconnects", "Reconnects", String(feed.reconnects)],
      ["trades", "Trades", String(feed.trades)],
      ["duplicates", "Duplicates dropped", String(feed.duplicates)],
      ["rejected", "Rejected (bad input)", String(feed.rejected ?? 0)],
      ["gaps", "Gaps repaired", `${feed.repaired} of ${feed.gaps}` + (feed.repairing ? ` (${feed.repairing} in flight)` : "")],
      ["partial_bars", "Partial bars", String(feed.partial_bars ?? 0)],
      ["last_error", "Last error", feed.last_error || "none"],
    ]);
  } else {
    badge("feed-badge", feed.state === "finished" ? "wait" : "ok", feed.state);
    Object.assign(page, { state: feed.state === "finished" ? "wait" : "ok", text: feed.state });
    rows("feed", [
      ["source", "Source", feed.source],
      ["replayed", "Replayed", `${feed.replayed_bars} of ${feed.total_bars} bars`],
      ["holes", "Holes (bars missing)", `${feed.holes ?? 0} (${feed.missing_bars ?? 0})`],
    ]);
  }
  showPageBadge();
}

function showLatency(latency) {
  const ms = (v) => (v === null ? "–" : `${v.toFixed(2)} ms`);
  rows("latency", [
    ["p50", "p50", ms(latency.p50_ms)],
    ["p99", "p99", ms(latency.p99_ms)],
    ["count", "Forecasts", String(latency.count)],
  ]);
  drawHistogram(latency.buckets_ms, latency.counts);
}

function drawHistogram(bounds, counts) {
  const svg = $("histogram");
  const ns = SVG;
  svg.replaceChildren();
  const used = counts.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0);
  if (!used.length) return;
  const first = Math.max(0, Math.min(used[0], counts.length - 6));
  const last = Math.max(used[used.length - 1], first + 5);
  const shown = counts.slice(first, last + 1);
  const width = svg.clientWidth || 270;
  const height = 90;
  const slot = width / shown.length;
  const peak = Math.max(...shown);
  shown.forEach((count, k) => {
    const h = count ? Math.max(2, ((height - 16) * count) / peak) : 0;
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ x: k * slot + 2, y: height - 14 - h, width: slot - 4, height: h }).forEach(
      ([key, value]) => rect.setAttribute(key, value),
    );
    const bound = first + k < bounds.length ? `≤${bounds[first + k]} ms` : `>${bounds[bounds.length - 1]} ms`;
    const title = document.createElementNS(ns, "title");
    title.textContent = `${bound}: ${count}`;
    rect.append(title);
    const label = document.createElementNS(ns, "text");
    Object.entries({ x: k * slot + slot / 2, y: height - 2, "text-anchor": "middle" }).forEach(
      ([key, value]) => label.setAttribute(key, value),
    );
    label.textContent = first + k < bounds.length ? bounds[first + k] : "more";
    svg.append(rect, label);
  });
}

function showModel(model) {
  rows("model", [
    ["name", "Name", model.name],
    ["shape", "Window → horizon", `${model.context_length} → ${model.prediction_length} bars`],
    ["precision", "Precision", `${model.precision}: ${model.precision_reason}`],
    ["precision_evidence", "bf16 check", model.precision_evidence || "not measured"],
    ["static_batch1", "Single windows", model.static_batch1 ? "static batch-1 model" : "dynamic model"],
    ["threads", "Threads", String(model.threads)],
    ["path", "Package", model.path],
  ]);
}

const SERIES = [ // the scorecard's forecasters: name, label, colour, dash
  ["model", "model", "#f5a623", ""],
  ["random_walk", "random walk", "#8ab4f8", ""],
  ["drift", "drift", "#7c8799", "4 3"],
];

function number(value) {
  if (value === null || value === undefined) return "–";
  if (Math.abs(value) >= 100) return value.toFixed(1);
  // small errors as 1.19e-5, not 0.0000119 (cut off beside the plot's axis)
  return value !== 0 && Math.abs(value) < 0.001 ? value.toExponential(2) : value.toPrecision(3);
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(0)}%`;
}

function showScorecard(product, card) {
  const section = viewFor(product).score;
  const table = section.querySelector("table");
  const head = el("tr");
  for (const name of ["Steps", "Scored", "Model", "Random walk", "Drift", "Hits model", "Hits drift"]) {
    head.append(el("th", { scope: "col" }, name));
  }
  const body = [head];
  const all = card.all ? [{ ...card.all, steps: "all" }] : [];
  for (const row of [...card.buckets, ...all]) {
    const tr = el("tr", row.steps === "all" ? { class: "total" } : {});
    const better = row.mae.model !== null && row.mae.random_walk !== null
      ? (row.mae.model < row.mae.random_walk ? "model" : "random_walk") : null;
    tr.append(el("th", { scope: "row" }, row.steps), el("td", {}, String(row.scored)));
    for (const [name] of SERIES) {
      tr.append(el("td", name === better ? { class: "better" } : {}, number(row.mae[name])));
    }
    tr.append(el("td", {}, percent(row.hit_rate.model)), el("td", {}, percent(row.hit_rate.drift)));
    body.push(tr);
  }
  table.replaceChildren(...body);
  const verdict = section.querySelector(".verdict");
  let extra = card.skipped_partial ? ` ${card.skipped_partial} steps on partial bars not scored.` : "";
  if (card.unscorable) extra += ` ${card.unscorable} forecasts not scored (NaN or infinite).`;
  const scored = card.forecasts === 1 ? "1 forecast" : `${card.forecasts} forecasts`;
  verdict.textContent = `${scored} scored, ${card.pending} in flight: ${card.verdict}.${extra}`;
  verdict.dataset.model = card.model ?? "";
  drawScorePlot(section.querySelector("svg"), card.by_step);
  const legend = section.querySelector(".legend");
  legend.replaceChildren(...SERIES.map(([, label, colour]) => {
    const item = el("span", {}, label);
    item.style.setProperty("--swatch", colour);
    return item;
  }));
}

function drawScorePlot(svg, byStep) {
  svg.replaceChildren();
  if (!byStep) return;
  const width = svg.clientWidth || 360;
  const height = svg.clientHeight || 150;
  const left = 44, right = 8, top = 6, bottom = 18;
  const steps = byStep.scored.length;
  const values = SERIES.flatMap(([name]) => byStep.mae[name]).filter((v) => v !== null);
  if (!values.length) return;
  const peak = Math.max(...values) || 1;
  const x = (step) => left + ((step - 1) / Math.max(1, steps - 1)) * (width - left - right);
  const y = (value) => top + (1 - value / peak) * (height - top - bottom);
  const add = (tag, attrs, text = "") => {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis" });
  add("line", { x1: left, y1: top, x2: left, y2: height - bottom, class: "axis" });
  for (const value of [0, peak / 2, peak]) {
    add("text", { x: left - 4, y: y(value) + 3, "text-anchor": "end" }, number(value));
  }
  const ticks = [[1, "start"], [Math.ceil(steps / 2), "middle"], [steps, "end"]];
  for (const [step, anchor] of ticks) {  // the edge labels lie inside the plot, never cut
    add("text", { x: x(step), y: height - 4, "text-anchor": anchor }, `+${step}`);
  }
  for (const [name, , colour, dash] of SERIES) {
    const points = byStep.mae[name]
      .map((value, k) => (value === null ? null : `${x(k + 1).toFixed(1)},${y(value).toFixed(1)}`))
      .filter((p) => p !== null);
    if (!points.length) continue;
    add("polyline", { points: points.join(" "), stroke: colour, "stroke-dasharray": dash, class: `series ${name}` });
    if (points.length <= 24) { // few steps (a short horizon, or early on): mark each one
      for (const point of points) {
        const [cx, cy] = point.split(",");
        add("circle", { cx, cy, r: 2.5, fill: colour, class: `series ${name}` });
      }
    }
  }
}

function showStatus(status) {
  window.ovcast.status = status;
  showFeed(status.feed);
  showLatency(status.latency);
  showModel(status.model);
  for (const [product, counts] of Object.entries(status.products)) {
    viewFor(product).counts.textContent = `${counts.bars} bars · ${counts.forecasts} forecasts`;
  }
  for (const [product, card] of Object.entries(status.scorecard ?? {})) showScorecard(product, card);
}

const handlers = {
  snapshot(data) {
    forecastSeen = new Set();
    for (const [product, entry] of Object.entries(data.products)) {
      showBars(product, entry.bars);
      showForecast(product, entry.forecast);
    }
    showStatus(data.status);
  },
  bar(data) { addBar(data.product, data.bar); },
  forecast(data) { showForecast(data.product, data.forecast); },
  status(data) { showStatus(data); },
};

const stream = new EventSource("/events");
for (const [name, handle] of Object.entries(handlers)) {
  stream.addEventListener(name, (event) => {
    window.ovcast.events += 1;
    handle(JSON.parse(event.data));
  });
}
stream.onopen = () => { page.open = true; showPageBadge(); };
stream.onerror = () => { page.open = false; showPageBadge(); };
