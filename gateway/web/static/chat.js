// The chat view: one conversation, streamed answers rendered as Markdown, notices,
// citation cards, regenerate / edit and resend / stop / copy, and feedback per answer.

import { ApiError, streamChat } from "./api.js";
import { copyText, renderMarkdown } from "./markdown.js";
import { historyForApi, saveConversation, titleFrom } from "./store.js";
import { attachFeedback } from "./feedback.js";

const $ = (id) => document.getElementById(id);

export const chat = {
  conversation: null,
  controller: null,
  onChange: () => {}, // the sidebar re-lists conversations
};

// --- errors and retry ------------------------------------------------------------------

let retryTimer = null;

export function showError(text, retry = null, waitS = 0) {
  clearInterval(retryTimer);
  $("error-text").textContent = text || "";
  $("error").hidden = !text;
  const button = $("retry");
  button.hidden = !retry;
  button.onclick = retry ? () => { showError(""); retry(); } : null;
  if (!retry) return;
  button.disabled = waitS > 0;
  let left = waitS;
  const label = () => (button.textContent = left > 0 ? `Retry in ${left} s` : "Retry");
  label();
  if (left > 0) {
    retryTimer = setInterval(() => {
      left -= 1;
      label();
      if (left <= 0) {
        clearInterval(retryTimer);
        button.disabled = false;
      }
    }, 1000);
  }
}

function announce(text) {
  $("status").textContent = text;
}

// --- rendering -------------------------------------------------------------------------

// A button whose visible label starts its accessible name; `context` is read by screen readers only.
function button(label, className, onClick, context = "") {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  const text = document.createElement("span");
  text.className = "label";
  text.textContent = label;
  node.append(text);
  if (context) {
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = ` ${context}`;
    node.append(hidden);
  }
  node.addEventListener("click", onClick);
  return node;
}

function flashLabel(node, text) {
  const label = node.querySelector(".label") || node;
  label.textContent = text;
  setTimeout(() => (label.textContent = "Copy"), 1500);
}

export function renderConversation() {
  const list = $("conversation");
  const messages = chat.conversation?.messages || [];
  list.replaceChildren($("empty-state"));
  $("empty-state").hidden = messages.length > 0;
  messages.forEach((message, index) => list.append(messageNode(message, index)));
  $("page-title").textContent = chat.conversation?.title || "New chat";
  $("retrieval").checked = Boolean(chat.conversation?.retrieval);
  list.scrollTop = list.scrollHeight;
}

function messageNode(message, index) {
  const node = document.createElement("article");
  node.className = `message ${message.role}`;
  node.dataset.index = String(index);
  const who = document.createElement("h2");
  who.className = "visually-hidden";
  who.textContent = message.role === "user" ? "You said:" : "The assistant said:";
  const body = document.createElement("div");
  body.className = "text";
  node.append(who, body);
  if (message.role === "user") {
    body.textContent = message.content;
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.append(button("Edit", "edit", () => startEdit(node, index), "this message and resend it"));
    node.append(actions);
  } else {
    fillAnswer(node, message, index);
  }
  return node;
}

const anchorFor = (index) => `cite-${chat.conversation?.id}-${index}`;

// Everything around an answer's text: notices, citation cards, actions, feedback.
function fillAnswer(node, message, index, streaming = false) {
  const body = node.querySelector(".text");
  renderMarkdown(body, message.content || "", { citations: message.citations || [], anchor: anchorFor(index) });
  node.querySelectorAll(".notices, .citations, .answer-footer").forEach((n) => n.remove());
  node.classList.toggle("streaming", streaming);
  node.setAttribute("aria-busy", String(streaming));
  const notices = noticesFor(message);
  if (notices.length) {
    const box = document.createElement("ul");
    box.className = "notices";
    box.setAttribute("aria-label", "Notices");
    for (const [kind, text] of notices) {
      const item = document.createElement("li");
      item.className = `notice ${kind}`;
      item.textContent = text;
      box.append(item);
    }
    node.append(box);
  }
  node.classList.toggle("blocked", notices.some(([kind]) => kind === "blocked"));
  if (message.citations?.length) node.append(citationCards(message.citations, anchorFor(index)));
  if (streaming) return;
  const actions = document.createElement("div");
  actions.className = "actions";
  if (message.content) {
    const copy = button("Copy", "copy", async () => {
      flashLabel(copy, (await copyText(message.content)) ? "Copied" : "Copy failed");
    }, "this answer");
    actions.append(copy);
  }
  if (index === chat.conversation.messages.length - 1) {
    actions.append(button("Regenerate", "regenerate", () => regenerate(), "this answer"));
  }
  const footer = document.createElement("div");
  footer.className = "answer-footer";
  footer.append(actions);
  if (message.id) footer.append(attachFeedback(message, () => saveConversation(chat.conversation)));
  node.append(footer);
}

function noticesFor(message) {
  const out = [];
  const moderation = message.moderation || {};
  const output = moderation.output || {};
  if (message.finishReason === "content_filter" && output.action === "block") {
    out.push(["blocked", "Moderation stopped this answer: it was judged unsafe to show."]);
  } else if (message.finishReason === "content_filter" || moderation.action === "block") {
    const label = moderation.label ? ` (classified as “${moderation.label}”)` : "";
    out.push(["blocked", `Moderation blocked this message${label}; the model did not answer it.`]);
  } else if (moderation.action === "caution") {
    out.push(["caution", `Answered with caution: the message was classified as “${moderation.label}”.`]);
  }
  const retrieval = message.retrieval;
  if (retrieval?.status === "unavailable") {
    out.push(["warning", "Sources were unavailable, so this answer is not grounded in your documents."]);
  } else if (retrieval?.status === "partial") {
    out.push(["warning", "Some sources were unavailable; the answer uses the ones that answered."]);
  } else if (retrieval && !retrieval.hits && retrieval.status === "ok") {
    out.push(["info", "No matching sources were found for this question."]);
  }
  const dropped = message.truncation?.dropped_messages;
  if (dropped) {
    out.push(["info", `The conversation was too long for the model: the oldest ${dropped} message${
      dropped === 1 ? " was" : "s were"} left out of this answer.`]);
  }
  if (message.finishReason === "length") out.push(["info", "The answer stopped at the length limit."]);
  if (message.stopped) out.push(["info", "Stopped."]);
  if (message.error) out.push(["error", message.error]);
  return out;
}

function citationCards(citations, anchor) {
  const section = document.createElement("ol");
  section.className = "citations";
  section.setAttribute("aria-label", "Sources");
  citations.forEach((c, i) => {
    const card = document.createElement("li");
    card.className = "citation";
    card.id = `${anchor}-${i + 1}`;
    card.tabIndex = -1;
    const head = document.createElement("div");
    head.className = "citation-head";
    const number = document.createElement("span");
    number.className = "citation-number";
    number.textContent = `[${i + 1}]`;
    const title = document.createElement("span");
    title.className = "citation-title";
    title.textContent = c.title || c.source || "Untitled";
    head.append(number, title);
    if (typeof c.score === "number") {
      const score = document.createElement("span");
      score.className = "citation-score";
      score.textContent = `score ${c.score.toFixed(2)}`;
      head.append(score);
    }
    const source = document.createElement(/^https?:\/\//i.test(c.source || "") ? "a" : "span");
    source.className = "citation-source";
    source.textContent = c.source || "";
    if (source.tagName === "A") {
      source.href = c.source;
      source.target = "_blank";
      source.rel = "noopener noreferrer nofollow";
    }
    const snippet = document.createElement("p");
    snippet.className = "citation-snippet";
    const text = (c.text || "").replace(/\s+/g, " ").trim();
    snippet.textContent = text.length > 280 ? `${text.slice(0, 279)}…` : text;
    card.append(head, source, snippet);
    section.append(card);
  });
  return section;
}

// --- sending ---------------------------------------------------------------------------

function requestBody() {
  const body = { model: $("model").value, messages: historyForApi(chat.conversation), stream: true };
  const temperature = $("temperature").value;
  const maxTokens = $("max-tokens").value;
  if (temperature !== "") body.temperature = Number(temperature);
  if (maxTokens !== "") body.max_tokens = Number(maxTokens);
  if (chat.conversation.retrieval) body.retrieval = { enabled: true };
  return body;
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").hidden = !busy;
  document.querySelectorAll(".message .actions button").forEach((b) => (b.disabled = busy));
}

export async function ask(text) {
  const conversation = chat.conversation;
  conversation.messages.push({ role: "user", content: text });
  if (!conversation.titled) {
    conversation.title = titleFrom(text);
    conversation.titled = true;
  }
  saveConversation(conversation);
  chat.onChange();
  renderConversation();
  await generate();
}

// Streams an answer to the conversation as it stands (its last message is a question).
async function generate() {
  const conversation = chat.conversation;
  const message = { role: "assistant", content: "", id: null, finishReason: null };
  conversation.messages.push(message);
  const index = conversation.messages.length - 1;
  const node = messageNode(message, index);
  $("empty-state").hidden = true;
  $("conversation").append(node);
  fillAnswer(node, message, index, true);
  node.scrollIntoView({ block: "end" });
  chat.controller = new AbortController();
  setBusy(true);
  showError("");
  announce("The assistant is answering.");
  let frame = 0;
  const paint = () => {
    frame = 0;
    fillAnswer(node, message, index, true);
    const log = $("conversation");
    if (log.scrollHeight - log.scrollTop - log.clientHeight < 160) node.scrollIntoView({ block: "end" });
  };
  try {
    for await (const chunk of streamChat(requestBody(), { signal: chat.controller.signal })) {
      message.id = chunk.id || message.id;
      for (const field of ["moderation", "citations", "retrieval", "truncation"]) {
        if (chunk[field] !== undefined) message[field] = chunk[field];
      }
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) message.content += choice.delta.content;
      if (choice?.finish_reason) message.finishReason = choice.finish_reason;
      if (!frame) frame = requestAnimationFrame(paint);
    }
    announce("The answer is complete.");
  } catch (error) {
    if (error?.name === "AbortError") {
      message.stopped = true;
      announce("Stopped.");
    } else {
      const failure = error instanceof ApiError ? error : new ApiError(String(error?.message || error));
      if (failure.status === 401) document.dispatchEvent(new CustomEvent("needs-key"));
      if (message.content) message.error = failure.message;
      else conversation.messages.pop();
      showError(failure.message, () => retryLast(), failure.retryAfterS);
      announce(`Error: ${failure.message}`);
    }
  } finally {
    cancelAnimationFrame(frame);
    chat.controller = null;
    setBusy(false);
  }
  saveConversation(conversation);
  chat.onChange();
  renderConversation();
}

// After a failure: answer the last question again (dropping a partial answer).
function retryLast() {
  const messages = chat.conversation.messages;
  if (messages.at(-1)?.role === "assistant") messages.pop();
  if (messages.at(-1)?.role === "user") generate();
}

export function regenerate() {
  if (chat.controller) return;
  const messages = chat.conversation.messages;
  if (messages.at(-1)?.role !== "assistant") return;
  messages.pop();
  renderConversation();
  generate();
}

function startEdit(node, index) {
  if (chat.controller || node.querySelector(".edit-form")) return;
  const message = chat.conversation.messages[index];
  const form = document.createElement("form");
  form.className = "edit-form";
  const area = document.createElement("textarea");
  area.value = message.content;
  area.rows = Math.min(8, message.content.split("\n").length + 1);
  area.setAttribute("aria-label", "Edit your message");
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "primary";
  save.textContent = "Save and send";
  const cancel = button("Cancel", "cancel", () => renderConversation(), "the edit");
  form.append(area, save, cancel);
  node.querySelector(".text").hidden = true;
  node.querySelector(".actions").hidden = true;
  node.append(form);
  area.focus();
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") renderConversation();
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = area.value.trim();
    if (!text) return;
    // The edited question replaces the old one; what came after it is gone.
    chat.conversation.messages.splice(index);
    chat.conversation.messages.push({ role: "user", content: text });
    if (index === 0) chat.conversation.title = titleFrom(text);
    saveConversation(chat.conversation);
    chat.onChange();
    renderConversation();
    generate();
  });
}

export function stop() {
  chat.controller?.abort();
}

// Citation links scroll to their card without changing the page's address.
document.addEventListener("click", (event) => {
  const link = event.target.closest?.("a.cite");
  if (link) {
    event.preventDefault();
    const card = document.getElementById(link.getAttribute("href").slice(1));
    if (card) {
      card.scrollIntoView({ block: "nearest", behavior: "smooth" });
      card.focus({ preventScroll: true });
      card.classList.add("flash");
      setTimeout(() => card.classList.remove("flash"), 1200);
    }
    return;
  }
  const copy = event.target.closest?.("button.copy-code");
  if (copy) {
    const code = copy.closest(".codeblock")?.querySelector("code");
    copyText(code?.textContent || "").then((ok) => flashLabel(copy, ok ? "Copied" : "Copy failed"));
  }
});
