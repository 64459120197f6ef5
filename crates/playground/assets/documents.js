// Documents: a vector store, files uploaded into it (POST /v1/files, then attached with
// POST /v1/vector_stores/{id}/files), and questions answered from its passages: the store is
// searched, the passages are numbered, and a chat model answers citing them by number.
import { api, el, fill, models, showError, stream, upload } from "./api.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;

// File id -> its row in the list, so a file attached twice or listed again is one row.
const rows = new Map();
let polling = new Set();

function storeId() {
  return $("store-select").value;
}

async function loadStores(select) {
  const page = await api("/v1/vector_stores?limit=100");
  const stores = page.data || [];
  fill($("store-select"), stores, {
    value: (s) => s.id,
    label: (s) => `${s.name || s.id} (${s.file_counts?.total ?? 0} files)`,
    empty: stores.length ? null : "No store yet: create one",
  });
  if (select) $("store-select").value = select;
  await listFiles();
}

function row(fileId, name) {
  let entry = rows.get(fileId);
  if (!entry) {
    const progress = el("progress", { max: "1", value: "0", "aria-label": `Upload of ${name}` });
    const status = el("span", { className: "status" });
    const error = el("span", { className: "error-text" });
    const item = el("li", { dataset: { file: name } }, el("span", { className: "name" }, name), progress, status, error);
    entry = { item, progress, status, error };
    rows.set(fileId, entry);
    $("doc-list").append(item);
  }
  return entry;
}

function setStatus(entry, status, lastError) {
  entry.status.textContent = status;
  entry.status.className = `status ${status}`;
  entry.item.dataset.status = status;
  entry.error.textContent = lastError ? lastError.message || JSON.stringify(lastError) : "";
  if (status !== "uploading") entry.progress.value = 1;
  entry.progress.hidden = status !== "uploading";
}

// Follows a file until the store has finished with it (completed, failed or cancelled).
async function poll(store, fileId, entry) {
  if (polling.has(fileId)) return;
  polling.add(fileId);
  try {
    for (;;) {
      const file = await api(`/v1/vector_stores/${store}/files/${fileId}`);
      setStatus(entry, file.status, file.last_error);
      if (file.status !== "in_progress" || store !== storeId()) return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } catch (err) {
    setStatus(entry, "failed", { message: err.message });
  } finally {
    polling.delete(fileId);
  }
}

async function listFiles() {
  rows.clear();
  polling = new Set();
  $("doc-list").replaceChildren();
  const store = storeId();
  if (!store) return;
  const page = await api(`/v1/vector_stores/${store}/files?limit=100`);
  await Promise.all(
    (page.data || []).map(async (file) => {
      let name = file.id;
      try {
        name = (await api(`/v1/files/${file.id}`)).filename || file.id;
      } catch {
        // A file deleted from /v1/files still shows in its store, by id.
      }
      const entry = row(file.id, name);
      setStatus(entry, file.status, file.last_error);
      if (file.status === "in_progress") poll(store, file.id, entry);
    }),
  );
}

// The store's file count in the picker, after files were added.
async function recount(store) {
  const current = await api(`/v1/vector_stores/${store}`);
  const option = [...$("store-select").options].find((o) => o.value === store);
  if (option) option.textContent = `${current.name || store} (${current.file_counts?.total ?? 0} files)`;
}

async function add(files) {
  const store = storeId();
  showError($("store-error"), null);
  if (!store) {
    showError($("store-error"), new Error("create or pick a vector store first"));
    return;
  }
  await Promise.all(
    [...files].map(async (file) => {
      const pending = `pending-${crypto.randomUUID()}`;
      const entry = row(pending, file.name);
      setStatus(entry, "uploading");
      try {
        const form = new FormData();
        form.append("purpose", "assistants");
        form.append("file", file, file.name);
        const uploaded = await upload("/v1/files", form, (share) => {
          entry.progress.value = share;
        });
        rows.delete(pending);
        rows.set(uploaded.id, entry);
        setStatus(entry, "in_progress");
        const attached = await api(`/v1/vector_stores/${store}/files`, {
          method: "POST",
          body: { file_id: uploaded.id },
        });
        setStatus(entry, attached.status, attached.last_error);
        if (attached.status === "in_progress") await poll(store, uploaded.id, entry);
      } catch (err) {
        setStatus(entry, "failed", { message: err.message });
      }
    }),
  );
  await recount(store).catch(() => {});
}

function showCitation(n, passage) {
  $("citation-title").textContent = `[${n}] ${passage.filename} · score ${passage.score.toFixed(3)}`;
  $("citation-text").textContent = passage.text;
  $("citation-view").hidden = false;
  $("citation-view").focus();
}

function citationButton(n, passage) {
  return el(
    "button",
    {
      type: "button",
      className: "cite",
      "aria-controls": "citation-view",
      dataset: { file: passage.filename },
      onclick: () => showCitation(n, passage),
    },
    `[${n}] ${passage.filename}`,
  );
}

// The answer with each [n] it cites turned into a button that shows passage n.
function renderAnswer(text, passages) {
  const parts = text.split(/(\[\d+\])/);
  $("answer").replaceChildren(
    ...parts.map((part) => {
      const n = /^\[(\d+)\]$/.exec(part)?.[1];
      const passage = n && passages[Number(n) - 1];
      if (!passage) return part;
      return el("button", { type: "button", className: "cite inline", onclick: () => showCitation(n, passage) }, `[${n}]`);
    }),
  );
}

async function ask(event) {
  event.preventDefault();
  const question = $("ask-input").value.trim();
  const store = storeId();
  showError($("ask-error"), null);
  if (!store) return showError($("ask-error"), new Error("create or pick a vector store first"));
  if (!$("ask-model").value) return showError($("ask-error"), new Error("no language model is registered"));
  $("ask-send").disabled = true;
  $("answer").textContent = "";
  $("citations").replaceChildren();
  $("citation-view").hidden = true;
  try {
    const found = await api(`/v1/vector_stores/${store}/search`, {
      method: "POST",
      body: { query: question, max_num_results: Number($("ask-count").value) || 4 },
    });
    const passages = (found.data || []).map((hit) => ({
      filename: hit.filename || hit.attributes?.filename || hit.file_id,
      score: hit.score ?? 0,
      text: (hit.content || []).map((c) => c.text || "").join("\n"),
    }));
    passages.forEach((passage, i) => {
      $("citations").append(el("li", {}, citationButton(i + 1, passage)));
    });
    if (!passages.length) $("answer").textContent = "No passage in this store matches the question.";
    const context = passages.map((p, i) => `[${i + 1}] (${p.filename})\n${p.text}`).join("\n\n");
    const system =
      "Answer the question from the numbered passages below only. Cite the passages you use " +
      "by their number in square brackets, like [1]. If they do not hold the answer, say so." +
      `\n\n${context}`;
    let answer = "";
    await stream(
      "/v1/chat/completions",
      {
        model: $("ask-model").value,
        messages: [
          { role: "system", content: system },
          { role: "user", content: question },
        ],
        stream: true,
        max_tokens: Number($("ask-max-tokens").value) || 256,
        temperature: 0.2,
      },
      (chunk) => {
        const delta = chunk.choices?.[0]?.delta?.content;
        if (!delta) return;
        answer += delta;
        $("answer").textContent = answer;
      },
    );
    renderAnswer(answer, passages);
  } catch (err) {
    showError($("ask-error"), err);
  } finally {
    $("ask-send").disabled = false;
  }
}

async function createStore(event) {
  event.preventDefault();
  showError($("store-error"), null);
  const name = $("store-name").value.trim() || "playground documents";
  const body = { name };
  const embedding = $("store-embedding").selectedOptions[0];
  if (embedding?.value) {
    body.embedding_model = embedding.value;
    if (embedding.dataset.dimension) body.embedding_dimension = Number(embedding.dataset.dimension);
  }
  $("store-create").disabled = true;
  try {
    const store = await api("/v1/vector_stores", { method: "POST", body });
    $("store-name").value = "";
    await loadStores(store.id);
  } catch (err) {
    showError($("store-error"), err);
  } finally {
    $("store-create").disabled = false;
  }
}

async function loadModels() {
  const [llms, embeddings] = await Promise.all([models("llm"), models("embedding")]);
  fill($("ask-model"), llms, { value: (m) => m.identifier, label: (m) => m.identifier });
  fill($("store-embedding"), embeddings, {
    value: (m) => m.identifier,
    label: (m) => m.identifier,
    empty: "Server default",
  });
  for (const option of $("store-embedding").options) {
    const model = embeddings.find((m) => m.identifier === option.value);
    const dimension = model?.metadata?.embedding_dimension;
    if (dimension) option.dataset.dimension = dimension;
  }
}

async function refresh() {
  try {
    await Promise.all([loadModels(), loadStores()]);
  } catch (err) {
    showError($("store-error"), err);
  }
}

export function start() {
  $("store-form").addEventListener("submit", createStore);
  $("store-select").addEventListener("change", () =>
    listFiles().catch((err) => showError($("store-error"), err)),
  );
  $("doc-files").addEventListener("change", () => {
    add($("doc-files").files).finally(() => {
      $("doc-files").value = "";
    });
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    add(event.dataTransfer.files);
  });
  $("ask-form").addEventListener("submit", ask);
  refresh();
}

export function shown() {
  loadModels().catch((err) => showError($("store-error"), err));
}
