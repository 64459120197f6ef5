// The one way the pages reach the server: its public HTTP API, as any client would, with the
// bearer token the person gave when the server first answered 401.

const TOKEN_KEY = "llama-stack-playground.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new Event("playground-token"));
}

// Several calls may be refused at once (each page loads in parallel); they all wait for the
// same dialog instead of opening one each.
let pendingToken = null;

function askForToken(message) {
  if (pendingToken) return pendingToken;
  const dialog = document.getElementById("auth-dialog");
  const form = document.getElementById("auth-form");
  const input = document.getElementById("auth-token");
  const reason = document.getElementById("auth-reason");
  reason.textContent = message || "This server needs a token.";
  input.value = "";
  pendingToken = new Promise((resolve) => {
    const done = (event) => {
      event.preventDefault();
      form.removeEventListener("submit", done);
      dialog.removeEventListener("cancel", cancel);
      setToken(input.value.trim());
      dialog.close();
      pendingToken = null;
      resolve(true);
    };
    const cancel = () => {
      form.removeEventListener("submit", done);
      dialog.removeEventListener("cancel", cancel);
      pendingToken = null;
      resolve(false);
    };
    form.addEventListener("submit", done);
    dialog.addEventListener("cancel", cancel);
  });
  dialog.showModal();
  input.focus();
  return pendingToken;
}

function headers(extra) {
  const out = { ...(extra || {}) };
  const value = token();
  if (value) out.Authorization = `Bearer ${value}`;
  return out;
}

// The server answers errors in the OpenAI shape ({error: {message}}) or the classic one
// ({detail} or {error: {detail}}); either becomes one readable sentence.
export function errorMessage(body, fallback) {
  if (!body || typeof body !== "object") return fallback;
  const error = body.error ?? body;
  if (typeof error === "string") return error;
  const detail = error.message ?? error.detail ?? body.detail;
  if (typeof detail === "string") return detail;
  if (detail && Array.isArray(detail.errors)) {
    return detail.errors.map((e) => e.msg || JSON.stringify(e)).join("; ");
  }
  if (Array.isArray(detail)) return detail.map((e) => e.msg || JSON.stringify(e)).join("; ");
  return detail ? JSON.stringify(detail) : fallback;
}

async function failure(response) {
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  const fallback = `${response.status} ${response.statusText}`.trim();
  return new ApiError(response.status, errorMessage(body, text || fallback) || fallback);
}

// fetch with the token, asking for one (and trying again) while the server answers 401.
async function send(path, init) {
  for (;;) {
    const response = await fetch(path, { ...init, headers: headers(init.headers) });
    if (response.status !== 401) return response;
    const refused = await failure(response);
    const again = await askForToken(
      token() ? `The token was refused: ${refused.message}` : refused.message,
    );
    if (!again) throw refused;
  }
}

// A JSON call: the parsed answer, or an ApiError.
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: {} };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await send(path, init);
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

// Plain text (e.g. /metrics); null when the server has no such route.
export async function text(path) {
  const response = await send(path, { method: "GET" });
  if (response.status === 404) return null;
  if (!response.ok) throw await failure(response);
  return response.text();
}

// POSTs `body` and calls `onEvent` with each server-sent event's parsed `data` as it arrives.
// Resolves when the stream ends; rejects with an ApiError on a refused call or an error event,
// and with the browser's abort error when `signal` fires.
export async function stream(path, body, onEvent, signal) {
  const response = await send(path, {
    method: "POST",
    signal,
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        continue;
      }
      if (event && event.error) throw new ApiError(500, errorMessage(event, "stream failed"));
      onEvent(event);
    }
  }
}

// A multipart upload with progress (fetch cannot report upload progress; XHR can).
export function upload(path, form, onProgress) {
  const attempt = () =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", path);
      const value = token();
      if (value) xhr.setRequestHeader("Authorization", `Bearer ${value}`);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      };
      xhr.onload = () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = xhr.responseText;
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else reject(new ApiError(xhr.status, errorMessage(body, `${xhr.status}`)));
      };
      xhr.onerror = () => reject(new ApiError(0, "the upload could not reach the server"));
      xhr.send(form);
    });
  return (async () => {
    for (;;) {
      try {
        return await attempt();
      } catch (err) {
        if (err.status !== 401 || !(await askForToken(err.message))) throw err;
      }
    }
  })();
}

// Builds an element: el("button", {type: "button", onclick}, "Send"). Text is always set as
// text, never parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function showError(target, err) {
  target.textContent = err ? `Error: ${err.message || err}` : "";
  target.hidden = !err;
}

export function ms(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

// The models of one type (llm, embedding, ...), as GET /v1/models lists them.
export async function models(type) {
  const page = await api("/v1/models");
  return (page.data || []).filter(
    (m) => (m.model_type || m.custom_metadata?.model_type) === type,
  );
}

// Fills a <select> with options, keeping the current choice when it is still offered.
export function fill(select, items, { value, label, empty } = {}) {
  const previous = select.value;
  select.replaceChildren();
  if (empty) select.append(el("option", { value: "" }, empty));
  for (const item of items) {
    const v = value ? value(item) : item;
    select.append(el("option", { value: v }, label ? label(item) : v));
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}
