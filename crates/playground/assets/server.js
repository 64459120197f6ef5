// Server: version, providers and their health, models, shields, vector stores, routes, and
// request counts and latencies from /metrics when the server exposes it.
import { api, el, ms, showError, text } from "./api.js";

const $ = (id) => document.getElementById(id);
// The previous /metrics sample, for request rates between two refreshes.
let previous = null;

function table(title, columns, rows, { empty, wide } = {}) {
  const id = `server-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  const section = el(
    "section",
    { className: wide ? "card wide" : "card", "aria-labelledby": id },
    el("h2", { id }, title),
  );
  if (!rows.length) {
    section.append(el("p", { className: "hint" }, empty || "None."));
    return section;
  }
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)));
  const body = rows.map((row) => el("tr", {}, row.map((cell) => el("td", {}, cell))));
  section.append(el("div", { className: "scroll" }, el("table", {}, el("thead", {}, head), el("tbody", {}, body))));
  return section;
}

function health(info) {
  const status = info.health?.status || "unknown";
  const kind = { OK: "good", Error: "bad" }[status] || "neutral";
  const message = info.health?.message;
  return el(
    "span",
    {},
    el("span", { className: `pill ${kind}` }, status),
    message ? el("span", { className: "hint" }, ` ${message}`) : null,
  );
}

// Prometheus text: {name, labels, value} per sample line.
function parseMetrics(body) {
  const samples = [];
  for (const line of body.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}

function requestRows(samples, now) {
  const byRoute = new Map();
  const key = (l) => `${l.method} ${l.route}`;
  const entry = (l) => {
    const k = key(l);
    if (!byRoute.has(k)) byRoute.set(k, { method: l.method, route: l.route, count: 0, errors: 0, sum: 0, timed: 0 });
    return byRoute.get(k);
  };
  for (const s of samples) {
    if (s.name === "llama_stack_http_requests_total") {
      const e = entry(s.labels);
      e.count += s.value;
      if (Number(s.labels.status) >= 400) e.errors += s.value;
    } else if (s.name === "llama_stack_http_request_duration_seconds_sum") {
      entry(s.labels).sum += s.value;
    } else if (s.name === "llama_stack_http_request_duration_seconds_count") {
      entry(s.labels).timed += s.value;
    }
  }
  const rows = [...byRoute.values()].filter((e) => e.count > 0).sort((a, b) => b.count - a.count);
  const counts = new Map(rows.map((e) => [key(e), e.count]));
  const rates = previous
    ? (k, count) => {
        const seconds = (now - previous.at) / 1000;
        const delta = count - (previous.counts.get(k) ?? 0);
        return seconds > 0 ? `${(delta / seconds).toFixed(2)}/s` : "–";
      }
    : () => "–";
  const out = rows.map((e) => [
    e.method,
    e.route,
    String(e.count),
    String(e.errors),
    rates(key(e), e.count),
    e.timed ? ms((e.sum / e.timed) * 1000) : "–",
  ]);
  previous = { at: now, counts };
  return out;
}

async function refresh() {
  showError($("server-error"), null);
  $("server-refresh").disabled = true;
  try {
    // One refused list (a route policy may deny some) leaves the others on the page.
    const list = (path) => api(path).catch((err) => ({ data: [], error: err.message }));
    const [version, providers, models, shields, stores, routes, metrics] = await Promise.all([
      api("/v1/version"),
      list("/v1/providers"),
      list("/v1/models"),
      list("/v1/shields"),
      list("/v1/vector_stores?limit=100"),
      list("/v1/inspect/routes"),
      text("/metrics").catch(() => null),
    ]);
    $("server-version").textContent = `Llama Stack API version ${version.version}`;
    const sections = [
      table(
        "Providers",
        ["API", "Provider", "Type", "Health"],
        (providers.data || []).map((p) => [p.api, p.provider_id, p.provider_type, health(p)]),
        { wide: true, empty: providers.error },
      ),
      table(
        "Models",
        ["Model", "Type", "Provider"],
        (models.data || []).map((m) => [m.identifier, m.model_type, m.provider_id]),
        { empty: models.error },
      ),
      table(
        "Shields",
        ["Shield", "Provider", "Provider's name"],
        (shields.data || []).map((s) => [s.identifier, s.provider_id, s.provider_resource_id || ""]),
        { empty: shields.error },
      ),
      table(
        "Vector stores",
        ["Store", "Name", "Files", "Status"],
        (stores.data || []).map((s) => [s.id, s.name || "", String(s.file_counts?.total ?? 0), s.status]),
        { empty: stores.error },
      ),
    ];
    if (metrics !== null) {
      sections.push(
        table(
          "Requests",
          ["Method", "Route", "Requests", "Errors", "Rate since last refresh", "Mean latency"],
          requestRows(parseMetrics(metrics), performance.now()),
          { empty: "No request counted yet.", wide: true },
        ),
      );
    }
    sections.push(
      table(
        "Routes",
        ["Method", "Route", "Provider types"],
        (routes.data || []).map((r) => [r.method, r.route, (r.provider_types || []).join(", ")]),
        { wide: true, empty: routes.error },
      ),
    );
    $("server-tables").replaceChildren(...sections);
  } catch (err) {
    showError($("server-error"), err);
  } finally {
    $("server-refresh").disabled = false;
  }
}

export function start() {
  $("server-refresh").addEventListener("click", refresh);
  refresh();
}

export function shown() {
  refresh();
}
