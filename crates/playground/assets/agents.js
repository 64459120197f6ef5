// Agents: agents and their sessions, and turns run with stream: true, each step drawn as its
// events arrive (inference, tool calls and their results, shield calls and their verdicts).
// A turn that stops for a client tool asks for the tool's result in a form and resumes.
import { api, el, fill, models, ms, showError, stream } from "./api.js";

const $ = (id) => document.getElementById(id);
let controller = null;

const STEP_NAMES = {
  inference: "Inference",
  tool_execution: "Tool execution",
  shield_call: "Shield call",
  memory_retrieval: "Memory retrieval",
};

function json(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

// A call's arguments on one line: `get_weather({"city":"Paris"})`.
function call(name, args) {
  return `${name}(${typeof args === "string" ? args : JSON.stringify(args ?? {})})`;
}

function contentText(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map(contentText).join("\n");
  if (content.type === "text") return content.text;
  if (content.type === "image") return "[image]";
  return json(content);
}

function elapsed(from, to) {
  const start = Date.parse(from);
  const end = Date.parse(to);
  return Number.isFinite(start) && Number.isFinite(end) ? ms(end - start) : "";
}

// One turn in the trace: a heading and its steps, filled in from stream events or from a
// stored Turn.
class TurnView {
  constructor(message) {
    this.steps = new Map();
    this.list = el("ol", { className: "steps" });
    this.footer = el("p", { className: "turn-end" });
    this.item = el(
      "li",
      { className: "turn" },
      el("h3", {}, "Turn: ", el("q", {}, message)),
      this.list,
      this.footer,
    );
    $("trace").append(this.item);
  }

  step(id, type, touchpoint) {
    let step = this.steps.get(id);
    if (!step) {
      const label = STEP_NAMES[type] || type;
      const status = el("span", { className: "status in_progress" }, "running");
      const timing = el("span", { className: "timing" });
      const text = el("pre", { className: "text" });
      const details = el("div", { className: "details" });
      const item = el(
        "li",
        { className: `step ${type}`, dataset: { stepType: type } },
        el("div", { className: "step-head" }, el("strong", {}, label), touchpoint ? ` (${touchpoint})` : "", status, timing),
        text,
        details,
      );
      step = { item, status, timing, text, details };
      this.steps.set(id, step);
      this.list.append(item);
      item.scrollIntoView({ block: "nearest" });
    }
    return step;
  }

  progress(payload) {
    const step = this.step(payload.step_id, payload.step_type);
    const delta = payload.delta || {};
    if (delta.type === "text") {
      step.text.textContent += delta.text;
    } else if (delta.type === "tool_call" && typeof delta.tool_call === "object") {
      const made = delta.tool_call;
      const line = `Calls ${call(made.tool_name, made.arguments ?? made.arguments_json)}`;
      if (!step.details.textContent.includes(line)) step.details.append(el("p", { className: "call" }, line));
    }
  }

  complete(details) {
    const step = this.step(details.step_id, details.step_type);
    step.status.textContent = "done";
    step.status.className = "status completed";
    step.timing.textContent = elapsed(details.started_at, details.completed_at);
    step.details.replaceChildren();
    if (details.step_type === "inference") {
      const response = details.model_response || {};
      const text = contentText(response.content);
      if (text && !step.text.textContent) step.text.textContent = text;
      for (const c of response.tool_calls || []) {
        step.details.append(el("p", { className: "call" }, `Calls ${call(c.tool_name, c.arguments)}`));
      }
      if (response.stop_reason) step.details.append(el("p", { className: "hint" }, `Stop reason: ${response.stop_reason}`));
    } else if (details.step_type === "tool_execution") {
      for (const c of details.tool_calls || []) {
        step.details.append(el("p", { className: "call" }, call(c.tool_name, c.arguments)));
      }
      for (const response of details.tool_responses || []) {
        step.details.append(
          el("p", {}, `Result of ${response.tool_name}:`),
          el("pre", { className: "result" }, contentText(response.content)),
        );
      }
    } else if (details.step_type === "shield_call") {
      const violation = details.violation;
      const verdict = violation
        ? `Violation (${violation.violation_level}): ${violation.user_message || ""} ${
            violation.metadata?.violation_type ? `[${violation.metadata.violation_type}]` : ""
          }`
        : "Passed";
      step.details.append(el("p", { className: `verdict-line ${violation ? "bad" : "good"}` }, verdict));
    } else {
      step.details.append(el("pre", {}, json(details)));
    }
  }

  finish(turn, waiting) {
    const took = elapsed(turn.started_at, turn.completed_at);
    this.footer.textContent = waiting
      ? "Waiting for client tool results."
      : `Turn finished${took ? ` in ${took}` : ""}. Answer: ${
          contentText(turn.output_message?.content).trim() || "(blank)"
        }`;
  }

  // A stored turn, drawn at once.
  static from(turn) {
    const message = contentText(turn.input_messages?.[turn.input_messages.length - 1]?.content);
    const view = new TurnView(message);
    for (const step of turn.steps || []) {
      view.step(step.step_id, step.step_type);
      view.complete(step);
    }
    if (turn.completed_at) view.finish(turn, false);
    return view;
  }
}

function agentId() {
  return $("agent-select").value;
}

function sessionId() {
  return $("session-select").value;
}

async function loadAgents(select) {
  const page = await api("/v1/agents");
  const agents = page.data || [];
  fill($("agent-select"), agents, {
    value: (a) => a.agent_id,
    label: (a) => `${a.agent_config?.name || a.agent_id} · ${a.agent_config?.model || ""}`,
    empty: agents.length ? null : "No agent yet: create one",
  });
  if (select) $("agent-select").value = select;
  $("agent-new").open = !agents.length;
  await loadSessions();
}

async function loadSessions(select) {
  const agent = agentId();
  $("trace").replaceChildren();
  if (!agent) {
    fill($("session-select"), [], { empty: "No session" });
    return;
  }
  const page = await api(`/v1/agents/${agent}/sessions`);
  const sessions = page.data || [];
  fill($("session-select"), sessions, {
    value: (s) => s.session_id,
    label: sessionLabel,
    empty: sessions.length ? null : "No session yet",
  });
  if (select) $("session-select").value = select;
  const session = sessions.find((s) => s.session_id === sessionId());
  for (const turn of session?.turns || []) TurnView.from(turn);
}

// The sessions' turn counts in the picker, without redrawing the trace.
async function relabelSessions() {
  const page = await api(`/v1/agents/${agentId()}/sessions`);
  for (const session of page.data || []) {
    const option = [...$("session-select").options].find((o) => o.value === session.session_id);
    if (option) option.textContent = sessionLabel(session);
  }
}

function sessionLabel(s) {
  return `${s.session_name || s.session_id} (${(s.turns || []).length} turns)`;
}

async function newSession() {
  const agent = agentId();
  if (!agent) throw new Error("create or pick an agent first");
  const stamp = new Date().toLocaleTimeString();
  const created = await api(`/v1/agents/${agent}/session`, {
    method: "POST",
    body: { session_name: `playground ${stamp}` },
  });
  await loadSessions(created.session_id);
  return created.session_id;
}

// Runs one streamed call (a turn or its resumption) into `view`.
async function run(path, body, view) {
  controller = new AbortController();
  $("turn-send").disabled = true;
  $("turn-stop").disabled = false;
  try {
    await stream(
      path,
      { ...body, stream: true },
      (chunk) => {
        const payload = chunk.event?.payload;
        if (!payload) return;
        switch (payload.event_type) {
          case "step_start":
            view.step(payload.step_id, payload.step_type, payload.metadata?.touchpoint);
            break;
          case "step_progress":
            view.progress(payload);
            break;
          case "step_complete":
            view.complete(payload.step_details);
            break;
          case "turn_complete":
            view.finish(payload.turn, false);
            break;
          case "turn_awaiting_input":
            view.finish(payload.turn, true);
            askForToolResults(payload.turn, view);
            break;
          default:
            break;
        }
      },
      controller.signal,
    );
  } catch (err) {
    // Whatever error a cut stream surfaces as, Stop was the cause when the signal fired.
    if (controller?.signal.aborted) view.footer.textContent = "Stopped.";
    else showError($("agent-error"), err);
  } finally {
    controller = null;
    $("turn-send").disabled = false;
    $("turn-stop").disabled = true;
    relabelSessions().catch(() => {});
  }
}

function askForToolResults(turn, view) {
  const calls = turn.output_message?.tool_calls || [];
  const form = $("tool-form");
  form.replaceChildren(el("h3", {}, "The agent called client tools"));
  calls.forEach((pending, i) => {
    const id = `tool-result-${i}`;
    form.append(
      el(
        "fieldset",
        {},
        el("legend", {}, call(pending.tool_name, pending.arguments)),
        el("label", { for: id }, `Result of ${pending.tool_name}`),
        el("textarea", {
          id,
          rows: "2",
          required: true,
          dataset: { callId: pending.call_id, tool: pending.tool_name },
        }),
      ),
    );
  });
  form.append(el("button", { type: "submit" }, "Send results"));
  form.hidden = false;
  form.querySelector("textarea")?.focus();
  form.onsubmit = async (event) => {
    event.preventDefault();
    const responses = [...form.querySelectorAll("textarea")].map((area) => ({
      call_id: area.dataset.callId,
      tool_name: area.dataset.tool,
      content: area.value,
    }));
    form.hidden = true;
    await run(
      `/v1/agents/${agentId()}/session/${turn.session_id}/turn/${turn.turn_id}/resume`,
      { tool_responses: responses },
      view,
    );
  };
}

async function runTurn(event) {
  event.preventDefault();
  showError($("agent-error"), null);
  const message = $("turn-input").value.trim();
  if (!message || controller) return;
  try {
    if (!agentId()) throw new Error("create or pick an agent first");
    const session = sessionId() || (await newSession());
    $("turn-input").value = "";
    $("tool-form").hidden = true;
    const view = new TurnView(message);
    await run(
      `/v1/agents/${agentId()}/session/${session}/turn`,
      { messages: [{ role: "user", content: message }] },
      view,
    );
  } catch (err) {
    showError($("agent-error"), err);
  }
}

async function createAgent(event) {
  event.preventDefault();
  showError($("agent-error"), null);
  const shield = (id) => ($(id).value ? [$(id).value] : []);
  const config = {
    name: $("agent-name").value.trim(),
    model: $("agent-model").value,
    instructions: $("agent-instructions").value,
    input_shields: shield("agent-input-shield"),
    output_shields: shield("agent-output-shield"),
    sampling_params: { max_tokens: Number($("agent-max-tokens").value) || 128 },
    enable_session_persistence: true,
  };
  const toolgroups = [...$("agent-toolgroups").querySelectorAll("input:checked")].map((box) => box.value);
  if ($("agent-rag-store").value) {
    toolgroups.push({
      name: "builtin::rag/knowledge_search",
      args: { vector_db_ids: [$("agent-rag-store").value] },
    });
  }
  if (toolgroups.length) config.toolgroups = toolgroups;
  if ($("agent-client-tool").checked) {
    config.client_tools = [
      {
        name: "ask_user",
        description: "Ask the person using the playground a question and get their answer.",
        parameters: [
          { name: "question", parameter_type: "string", description: "The question to ask", required: true },
        ],
      },
    ];
  }
  try {
    const created = await api("/v1/agents", { method: "POST", body: { agent_config: config } });
    await loadAgents(created.agent_id);
    await newSession();
    $("agent-new").open = false;
    $("turn-input").focus();
  } catch (err) {
    showError($("agent-error"), err);
  }
}

async function loadChoices() {
  // A server without vector stores or tool runtimes still lets agents be made.
  const list = (path) => api(path).catch(() => ({ data: [] }));
  const [llms, shields, stores, groups] = await Promise.all([
    models("llm"),
    list("/v1/shields"),
    list("/v1/vector_stores?limit=100"),
    list("/v1/toolgroups"),
  ]);
  fill($("agent-model"), llms, { value: (m) => m.identifier, label: (m) => m.identifier });
  for (const id of ["agent-input-shield", "agent-output-shield"]) {
    fill($(id), shields.data || [], { value: (s) => s.identifier, label: (s) => s.identifier, empty: "None" });
  }
  fill($("agent-rag-store"), stores.data || [], {
    value: (s) => s.id,
    label: (s) => s.name || s.id,
    empty: "None",
  });
  // builtin::rag is offered through the store picker above, with the store it searches.
  const others = (groups.data || []).filter((g) => g.identifier !== "builtin::rag");
  const box = $("agent-toolgroups");
  const checked = new Set([...box.querySelectorAll("input:checked")].map((b) => b.value));
  box.replaceChildren(
    el("legend", {}, "Tool groups"),
    ...others.map((g) =>
      el(
        "label",
        { className: "check" },
        el("input", { type: "checkbox", value: g.identifier, checked: checked.has(g.identifier) }),
        ` ${g.identifier}`,
      ),
    ),
  );
  if (!others.length) box.append(el("p", { className: "hint" }, "No other tool group is registered."));
}

function guard(promise) {
  promise.catch((err) => showError($("agent-error"), err));
}

export function start() {
  $("agent-form").addEventListener("submit", createAgent);
  $("agent-select").addEventListener("change", () => guard(loadSessions()));
  $("session-select").addEventListener("change", () => guard(loadSessions(sessionId())));
  $("session-new").addEventListener("click", () => guard(newSession()));
  $("turn-form").addEventListener("submit", runTurn);
  $("turn-stop").addEventListener("click", () => controller?.abort());
  guard(Promise.all([loadChoices(), loadAgents()]));
}

export function shown() {
  guard(loadChoices());
}
