// Safety: a message run through one shield (POST /v1/safety/run-shield), and text through
// the OpenAI moderations route (POST /v1/moderations), each with its verdict and latency.
import { api, el, fill, ms } from "./api.js";

const $ = (id) => document.getElementById(id);
let firstLoad = true;

function verdict(target, lines, kind) {
  target.replaceChildren(...lines.map((line) => (line instanceof Node ? line : el("p", {}, line))));
  target.className = `verdict ${kind}`;
}

async function timed(call) {
  const started = performance.now();
  const result = await call();
  return [result, performance.now() - started];
}

async function runShield(event) {
  event.preventDefault();
  const target = $("shield-verdict");
  $("shield-run").disabled = true;
  try {
    const [result, took] = await timed(() =>
      api("/v1/safety/run-shield", {
        method: "POST",
        body: {
          shield_id: $("shield-select").value,
          messages: [{ role: $("shield-role").value, content: $("shield-input").value }],
          params: {},
        },
      }),
    );
    const violation = result.violation;
    if (!violation) {
      verdict(target, [el("strong", {}, "Safe"), `No violation · ${ms(took)}`], "good");
      return;
    }
    const metadata = violation.metadata || {};
    const categories = [metadata.violation_type, ...(metadata.categories || [])].filter(Boolean);
    verdict(
      target,
      [
        el("strong", {}, `Violation (${violation.violation_level})`),
        violation.user_message || "",
        categories.length ? `Categories: ${categories.join(", ")}` : "",
        `Latency ${ms(took)}`,
      ].filter(Boolean),
      violation.violation_level === "error" ? "bad" : "warn",
    );
  } catch (err) {
    verdict(target, [`Error: ${err.message}`], "bad");
  } finally {
    $("shield-run").disabled = false;
  }
}

async function moderate(event) {
  event.preventDefault();
  const target = $("moderation-result");
  $("moderation-run").disabled = true;
  try {
    const body = { input: $("moderation-input").value };
    if ($("moderation-model").value) body.model = $("moderation-model").value;
    const [result, took] = await timed(() => api("/v1/moderations", { method: "POST", body }));
    const lines = [];
    let flagged = false;
    for (const item of result.results || []) {
      flagged ||= item.flagged;
      const hits = Object.entries(item.categories || {}).filter(([, on]) => on);
      lines.push(el("strong", {}, item.flagged ? "Flagged" : "Not flagged"));
      if (hits.length) {
        lines.push(
          `Categories: ${hits
            .map(([name]) => `${name} (${(item.category_scores?.[name] ?? 0).toFixed(2)})`)
            .join(", ")}`,
        );
      }
      if (item.user_message) lines.push(item.user_message);
    }
    lines.push(`Model ${result.model} · latency ${ms(took)}`);
    verdict(target, lines, flagged ? "bad" : "good");
  } catch (err) {
    verdict(target, [`Error: ${err.message}`], "bad");
  } finally {
    $("moderation-run").disabled = false;
  }
}

async function loadShields() {
  try {
    const shields = (await api("/v1/shields")).data || [];
    fill($("shield-select"), shields, { value: (s) => s.identifier, label: (s) => s.identifier });
    // Moderations pick a shield by the provider's name for it, or the server's default.
    fill($("moderation-model"), shields, {
      value: (s) => s.provider_resource_id || s.identifier,
      label: (s) => s.provider_resource_id || s.identifier,
      empty: "Server default",
    });
    // A server without a default moderation shield answers only when one is named.
    if (firstLoad && shields.length) $("moderation-model").selectedIndex = 1;
    firstLoad = false;
    if (!shields.length) verdict($("shield-verdict"), ["No shield is registered on this server."], "warn");
  } catch (err) {
    verdict($("shield-verdict"), [`Error: ${err.message}`], "bad");
  }
}

export function start() {
  $("shield-form").addEventListener("submit", runShield);
  $("moderation-form").addEventListener("submit", moderate);
  loadShields();
}

export function shown() {
  loadShields();
}
