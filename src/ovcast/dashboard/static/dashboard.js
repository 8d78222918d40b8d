// The ovcast dashboard: one server-sent event stream (/events) drives every panel.
// Events: snapshot (everything, on connect or after falling behind), bar, forecast, status.
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
      };
    }
    return out;
  },
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function candle(bar) {
  const point = { time: bar.time, open: bar.open, high: bar.high, low: bar.low, close: bar.close };
  if (bar.filled) Object.assign(point, { color: "#5c6370", borderColor: "#5c6370", wickColor: "#5c6370" });
  // Partial: trades may be missing (hollow, outlined in amber); never trusted as a whole bar.
  if (bar.partial) Object.assign(point, { color: "rgba(0,0,0,0)", borderColor: "#d19a66", wickColor: "#d19a66" });
  return point;
}

function viewFor(product) {
  let view = views.get(product);
  if (view) return view;
  $("empty")?.remove();
  const card = el("article", { class: "product", "data-product": product });
  const head = el("header");
  const price = el("span", { class: "price" }, "–");
  const counts = el("span", { class: "muted counts" });
  head.append(el("h2", {}, product), price, counts);
  const box = el("div", { class: "chart" });
  card.append(head, box);
  $("charts").append(card);
  const chart = createChart(box, {
    autoSize: true,
    layout: { background: { color: "#171d24" }, textColor: "#d8dee9" },
    grid: { vertLines: { color: "#202935" }, horzLines: { color: "#202935" } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#263040" },
    rightPriceScale: { borderColor: "#263040" },
  });
  const candles = chart.addSeries(CandlestickSeries, {
    upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
    wickUpColor: "#26a69a", wickDownColor: "#ef5350",
  });
  const forecast = chart.addSeries(LineSeries, {
    color: "#f5a623", lineWidth: 2, lineStyle: 2, title: "forecast",
    priceLineVisible: false, crosshairMarkerVisible: true,
  });
  view = { chart, candles, forecast, price, counts };
  views.set(product, view);
  return view;
}

function showBars(product, bars) {
  const view = viewFor(product);
  view.candles.setData(bars.map(candle));
  if (bars.length) view.price.textContent = bars[bars.length - 1].close.toFixed(2);
  view.chart.timeScale().fitContent();
}

const KEEP_BARS = 300; // as the server keeps: a page left open for days stays small
function addBar(product, bar) {
  const view = viewFor(product);
  const data = view.candles.data();
  if (data.length && data[data.length - 1].time >= bar.time) return; // already shown
  if (data.length >= 2 * KEEP_BARS) view.candles.setData([...data.slice(-KEEP_BARS), candle(bar)]);
  else view.candles.update(candle(bar));
  view.price.textContent = bar.close.toFixed(2);
}

function showForecast(product, forecast) {
  const view = viewFor(product);
  if (!forecast) {
    view.forecast.setData([]);
    return;
  }
  view.forecast.setData(forecast.time.map((time, i) => ({ time, value: forecast.value[i] })));
  if (!forecastSeen.has(product)) {
    forecastSeen.add(product);
    view.chart.timeScale().fitContent(); // bring the future into view once
  }
}

function rows(target, entries) {
  const dl = $(target);
  dl.replaceChildren();
  for (const [key, label, value] of entries) {
    dl.append(el("dt", {}, label), el("dd", { "data-key": key }, value ?? "–"));
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

function showFeed(feed) {
  if ("connected" in feed) {
    badge("feed-badge", feed.connected ? "ok" : "bad", feed.connected ? "connected" : "disconnected");
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
    rows("feed", [
      ["source", "Source", feed.source],
      ["replayed", "Replayed", `${feed.replayed_bars} of ${feed.total_bars} bars`],
      ["holes", "Holes (bars missing)", `${feed.holes ?? 0} (${feed.missing_bars ?? 0})`],
    ]);
  }
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
  const ns = "http://www.w3.org/2000/svg";
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
    ["precision", "Precision", model.precision],
    ["threads", "Threads", String(model.threads)],
    ["path", "Package", model.path],
  ]);
}

function showStatus(status) {
  window.ovcast.status = status;
  showFeed(status.feed);
  showLatency(status.latency);
  showModel(status.model);
  for (const [product, counts] of Object.entries(status.products)) {
    viewFor(product).counts.textContent = `${counts.bars} bars · ${counts.forecasts} forecasts`;
  }
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
stream.onopen = () => badge("stream", "ok", "live");
stream.onerror = () => badge("stream", "bad", "ovcast unreachable: retrying");
