// Chat: POST /v1/chat/completions with stream: true, the conversation kept in this browser.
import { el, fill, models, ms, showError, stream } from "./api.js";

const STORE_KEY = "llama-stack-playground.chat";
const $ = (id) => document.getElementById(id);

// Each entry: {role, content, image?}. Images stay in memory only: data URLs would fill the
// browser's storage quota after a few pictures.
let messages = [];
let controller = null;

function save() {
  const kept = messages.map(({ role, content, image }) => ({
    role,
    content,
    ...(image ? { imageDropped: true } : {}),
  }));
  localStorage.setItem(STORE_KEY, JSON.stringify({ model: $("chat-model").value, messages: kept }));
}

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
    if (saved && Array.isArray(saved.messages)) return saved;
  } catch {
    // A corrupt entry starts a fresh conversation.
  }
  return { messages: [] };
}

function bubble(message) {
  const body = el("div", { className: "content" }, message.content);
  const item = el(
    "li",
    { className: `message ${message.role}` },
    el("span", { className: "role" }, message.role === "user" ? "You" : "Assistant"),
    message.image ? el("img", { src: message.image, alt: "Attached image", className: "thumb" }) : null,
    message.imageDropped ? el("span", { className: "hint" }, "(an image was attached)") : null,
    body,
  );
  $("chat-log").append(item);
  item.scrollIntoView({ block: "end" });
  return body;
}

function render() {
  $("chat-log").replaceChildren();
  for (const message of messages) bubble(message);
}

function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// What the API is sent: text alone, or text and an image_url part for vision models.
function wire(message) {
  if (!message.image) return { role: message.role, content: message.content };
  return {
    role: message.role,
    content: [
      { type: "text", text: message.content },
      { type: "image_url", image_url: { url: message.image } },
    ],
  };
}

function busy(on) {
  $("chat-send").disabled = on;
  $("chat-stop").disabled = !on;
}

async function send(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  const model = $("chat-model").value;
  if (!text || controller) return;
  if (!model) {
    showError($("chat-error"), new Error("no language model is registered on this server"));
    return;
  }
  showError($("chat-error"), null);
  const file = $("chat-image").files[0];
  const user = { role: "user", content: text };
  if (file) user.image = await readImage(file);
  messages.push(user);
  bubble(user);
  $("chat-input").value = "";
  clearImage();

  const system = $("chat-system").value.trim();
  const body = {
    model,
    messages: [...(system ? [{ role: "system", content: system }] : []), ...messages.map(wire)],
    stream: true,
    stream_options: { include_usage: true },
    temperature: Number($("chat-temperature").value),
    max_tokens: Number($("chat-max-tokens").value),
  };
  const answer = { role: "assistant", content: "" };
  const shown = bubble(answer);
  shown.setAttribute("aria-busy", "true");
  controller = new AbortController();
  busy(true);
  const started = performance.now();
  let first = null;
  let chunks = 0;
  let usage = null;
  const stats = () => {
    const now = performance.now();
    const tokens = usage?.completion_tokens ?? chunks;
    // Tokens per second over the decoding time, after the first token arrived.
    const decoding = first === null ? 0 : (now - first) / 1000;
    const rate = decoding > 0 && tokens > 1 ? ((tokens - 1) / decoding).toFixed(1) : "–";
    $("chat-stats").textContent =
      `Time to first token ${first === null ? "–" : ms(first - started)} · ` +
      `${rate} tok/s · ${tokens} tokens`;
  };
  try {
    await stream(
      "/v1/chat/completions",
      body,
      (chunk) => {
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices?.[0]?.delta?.content;
        if (!delta) return;
        if (first === null) first = performance.now();
        chunks += 1;
        answer.content += delta;
        shown.textContent = answer.content;
        stats();
      },
      controller.signal,
    );
  } catch (err) {
    // Whatever error a cut stream surfaces as, Stop was the cause when the signal fired.
    if (controller.signal.aborted) {
      answer.content += answer.content ? " [stopped]" : "[stopped]";
      shown.textContent = answer.content;
    } else {
      showError($("chat-error"), err);
    }
  } finally {
    shown.removeAttribute("aria-busy");
    if (answer.content || usage) {
      messages.push(answer);
    } else {
      // Refused before any answer (an image the model cannot read, say): the message leaves
      // the conversation, so the next one is not refused for it too, and goes back to the box.
      shown.closest("li").remove();
      messages.pop();
      $("chat-log").lastElementChild?.classList.add("unsent");
      $("chat-log").lastElementChild?.append(el("span", { className: "hint" }, "Not sent"));
      if (!$("chat-input").value) $("chat-input").value = user.content;
    }
    stats();
    save();
    controller = null;
    busy(false);
  }
}

function clearImage() {
  $("chat-image").value = "";
  $("chat-image-preview").hidden = true;
  $("chat-image-preview").removeAttribute("src");
}

async function loadModels() {
  try {
    const llms = await models("llm");
    fill($("chat-model"), llms, { value: (m) => m.identifier, label: (m) => m.identifier });
    const saved = load().model;
    if (saved && llms.some((m) => m.identifier === saved)) $("chat-model").value = saved;
    if (!llms.length) showError($("chat-error"), new Error("no language model is registered"));
  } catch (err) {
    showError($("chat-error"), err);
  }
}

export function start() {
  messages = load().messages;
  render();
  $("chat-form").addEventListener("submit", send);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("chat-form").requestSubmit();
  });
  $("chat-stop").addEventListener("click", () => controller?.abort());
  $("chat-clear").addEventListener("click", () => {
    messages = [];
    render();
    $("chat-stats").textContent = "";
    save();
  });
  $("chat-model").addEventListener("change", save);
  $("chat-image").addEventListener("change", async () => {
    const file = $("chat-image").files[0];
    if (!file) return clearImage();
    $("chat-image-preview").src = await readImage(file);
    $("chat-image-preview").hidden = false;
  });
  loadModels();
}

export function shown() {
  loadModels();
}
