// Tabs, and each page's module started the first time it is shown.
import { setToken, token } from "./api.js";
import * as chat from "./chat.js";
import * as documents from "./documents.js";
import * as agents from "./agents.js";
import * as safety from "./safety.js";
import * as server from "./server.js";

const PAGES = { chat, documents, agents, safety, server };
const started = new Set();
const tabs = [...document.querySelectorAll('[role="tab"]')];

function pageName(tab) {
  return tab.id.replace(/^tab-/, "");
}

function show(name, { focus = false } = {}) {
  if (!PAGES[name]) name = "chat";
  for (const tab of tabs) {
    const selected = pageName(tab) === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
    if (selected && focus) tab.focus();
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  const page = PAGES[name];
  if (!started.has(name)) {
    started.add(name);
    page.start();
  } else if (page.shown) {
    page.shown();
  }
}

for (const tab of tabs) {
  tab.addEventListener("click", () => show(pageName(tab)));
  // Arrow keys move between tabs, as in any tab list.
  tab.addEventListener("keydown", (event) => {
    const at = tabs.indexOf(tab);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    show(pageName(tabs[(to + tabs.length) % tabs.length]), { focus: true });
  });
}

window.addEventListener("hashchange", () => show(location.hash.slice(1)));

const forget = document.getElementById("forget-token");
forget.addEventListener("click", () => setToken(""));
// The button shows while a token is in use, so a person can sign in as someone else.
const syncForget = () => {
  forget.hidden = !token();
};
window.addEventListener("playground-token", syncForget);
syncForget();

show(location.hash.slice(1) || "chat");
