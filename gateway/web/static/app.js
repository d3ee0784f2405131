// The page: routes (#/c/<id> a conversation, #/documents), the sidebar of conversations,
// the model list and the API key. Everything goes through the gateway's public API.

import { apiKey, request, saveKey } from "./api.js";
import { ask, chat, renderConversation, showError, stop } from "./chat.js";
import { loadDocuments, setUpDocuments } from "./documents.js";
import { markdownAvailable } from "./markdown.js";
import {
  createConversation,
  deleteConversation,
  listConversations,
  loadConversation,
  saveConversation,
  titleFrom,
} from "./store.js";

const $ = (id) => document.getElementById(id);
const phone = window.matchMedia("(max-width: 860px)");

// --- the API key -------------------------------------------------------------------------

function askForKey(message = "This gateway needs an API key.") {
  $("key-bar").hidden = false;
  showError(message);
  $("api-key").focus();
}

document.addEventListener("needs-key", () => askForKey());

$("key-bar").addEventListener("submit", (event) => {
  event.preventDefault();
  saveKey($("api-key").value.trim());
  $("api-key").value = "";
  $("key-bar").hidden = true;
  showError("");
  loadModels();
  if (!$("documents-view").hidden) loadDocuments();
});
$("open-key").addEventListener("click", () => {
  $("key-bar").hidden = !$("key-bar").hidden;
  if (!$("key-bar").hidden) $("api-key").focus();
});

async function loadModels() {
  try {
    const { data } = await request("/v1/models");
    const current = $("model").value;
    $("model").replaceChildren(...data.map((m) => new Option(m.id, m.id)));
    if (data.some((m) => m.id === current)) $("model").value = current;
    if (!data.length) showError("No model is available yet.", loadModels);
    else if ($("error-text").textContent.startsWith("No model")) showError("");
  } catch (error) {
    if (error.status === 401) askForKey(error.message);
    else showError(error.message, loadModels, error.retryAfterS);
  }
}

// --- conversations -----------------------------------------------------------------------

function open(conversation) {
  if (chat.controller) stop();
  chat.conversation = conversation;
  renderConversation();
  renderSidebar();
  showError("");
  closeSidebarOnPhone();
}

function newChat() {
  open(createConversation($("retrieval").checked));
  if (location.hash !== "#/") history.replaceState(null, "", "#/");
  $("prompt").focus();
}

function renderSidebar() {
  const list = $("conversation-list");
  const items = listConversations();
  list.replaceChildren(...items.map(sidebarItem));
  if (!items.length) {
    const empty = document.createElement("li");
    empty.className = "sidebar-empty";
    empty.textContent = "Your conversations will appear here.";
    list.append(empty);
  }
}

function sidebarItem({ id, title }) {
  const item = document.createElement("li");
  item.className = "conversation-item";
  item.dataset.id = id;
  const current = chat.conversation?.id === id;
  item.classList.toggle("current", current);
  const link = document.createElement("a");
  link.className = "conversation-link";
  link.href = `#/c/${id}`;
  link.textContent = title;
  if (current) link.setAttribute("aria-current", "page");
  const rename = iconButton(ICONS.pencil, "rename", `Rename conversation “${title}”`, () => startRename(item, id, title));
  const remove = iconButton(ICONS.trash, "delete", `Delete conversation “${title}”`, () => confirmDelete(item, id, title));
  item.append(link, rename, remove);
  return item;
}

const svg = (body) =>
  `<svg aria-hidden="true" viewBox="0 0 24 24" width="15" height="15" fill="none" stroke="currentColor" ` +
  `stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${body}</svg>`;
const ICONS = {
  pencil: svg('<path d="M17 3a2.83 2.83 0 1 1 4 4L7.5 20.5 2 22l1.5-5.5L17 3z"/>'),
  trash: svg('<path d="M3 6h18M19 6v14a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2V6m3 0V4a2 2 0 0 1 2-2h4a2 2 0 0 1 2 2v2"/>'),
};

// An icon button is named by `label`; a word button by its word, with `label` as hidden context.
function iconButton(text, className, label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `icon ${className}`;
  button.title = label;
  if (text.startsWith("<svg")) {
    button.innerHTML = text; // one of our own constant icons
    button.setAttribute("aria-label", label);
  } else if (/\w/.test(text)) {
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = ` ${label}`;
    button.append(text, hidden);
  }
  button.addEventListener("click", onClick);
  return button;
}

function startRename(item, id, title) {
  const input = document.createElement("input");
  input.className = "rename-input";
  input.value = title;
  input.setAttribute("aria-label", "New name for the conversation");
  item.replaceChildren(input);
  input.focus();
  input.select();
  let done = false;
  const finish = (save) => {
    if (done) return;
    done = true;
    const conversation = id === chat.conversation?.id ? chat.conversation : loadConversation(id);
    if (save && conversation && input.value.trim()) {
      conversation.title = titleFrom(input.value);
      conversation.titled = true;
      saveConversation(conversation);
      if (conversation === chat.conversation) $("page-title").textContent = conversation.title;
    }
    renderSidebar();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
}

function confirmDelete(item, id, title) {
  const question = document.createElement("span");
  question.className = "confirm-text";
  question.textContent = "Delete?";
  const yes = iconButton("Delete", "confirm-delete danger", `“${title}”`, () => {
    deleteConversation(id);
    if (chat.conversation?.id === id) newChat();
    renderSidebar();
    $("new-chat").focus();
  });
  const no = iconButton("Cancel", "cancel", "and keep the conversation", () => renderSidebar());
  item.replaceChildren(question, yes, no);
  yes.focus();
}

// --- routes ------------------------------------------------------------------------------

function route() {
  const hash = location.hash;
  const documents = hash === "#/documents";
  $("chat-view").hidden = documents;
  $("documents-view").hidden = !documents;
  document.querySelector(".topbar .controls").hidden = documents;
  $("nav-chat").toggleAttribute("aria-current", !documents);
  $("nav-documents").toggleAttribute("aria-current", documents);
  if (documents) {
    $("page-title").textContent = "Documents";
    closeSidebarOnPhone();
    loadDocuments();
    return;
  }
  const match = hash.match(/^#\/c\/([A-Za-z0-9]+)$/);
  if (match) {
    const conversation = match[1] === chat.conversation?.id ? chat.conversation : loadConversation(match[1]);
    if (conversation) return open(conversation);
  }
  if (!chat.conversation || match) return newChat();
  renderConversation(); // back from Documents to the open chat
  if (chat.conversation.messages.length) history.replaceState(null, "", `#/c/${chat.conversation.id}`);
}

window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#/") || location.hash === "") route();
});

// --- layout on a phone ---------------------------------------------------------------------

function setSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  $("toggle-sidebar").setAttribute("aria-expanded", String(open));
  $("toggle-sidebar").setAttribute("aria-label", open ? "Hide conversations" : "Show conversations");
  $("scrim").hidden = !open || !phone.matches;
}

function closeSidebarOnPhone() {
  if (phone.matches) setSidebar(false);
}

$("toggle-sidebar").addEventListener("click", () => setSidebar(!document.body.classList.contains("sidebar-open")));
$("scrim").addEventListener("click", () => setSidebar(false));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && phone.matches && document.body.classList.contains("sidebar-open")) setSidebar(false);
});
phone.addEventListener("change", () => setSidebar(!phone.matches));

// --- the composer --------------------------------------------------------------------------

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || chat.controller) return;
  if (!$("model").value) {
    showError("No model is available yet.", loadModels);
    return;
  }
  $("prompt").value = "";
  if (!location.hash.startsWith("#/c/")) history.replaceState(null, "", `#/c/${chat.conversation.id}`);
  ask(text).then(() => {
    if (!location.hash.startsWith("#/c/")) history.replaceState(null, "", `#/c/${chat.conversation.id}`);
  });
  renderSidebar();
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("prompt").addEventListener("input", () => {
  const area = $("prompt");
  area.style.height = "auto";
  area.style.height = `${Math.min(area.scrollHeight, 240)}px`;
});
$("stop").addEventListener("click", stop);
$("new-chat").addEventListener("click", newChat);
$("retrieval").addEventListener("change", () => {
  chat.conversation.retrieval = $("retrieval").checked;
  saveConversation(chat.conversation);
});

chat.onChange = renderSidebar;
window.addEventListener("storage", (event) => {
  if (event.key?.startsWith("openchatkit-conversation:")) renderSidebar(); // changed in another tab
});
$("vendor-warning").hidden = markdownAvailable();
apiKey(); // takes a #key=... from the address
setSidebar(!phone.matches);
setUpDocuments();
route();
loadModels();
