// The web chat: the gateway's own OpenAI API, streamed, with feedback on every answer.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { messages: [], controller: null };

function apiKey() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) {
    localStorage.setItem("openchatkit-key", fromHash);
    history.replaceState(null, "", location.pathname);
  }
  return localStorage.getItem("openchatkit-key") || "";
}

function headers(extra = {}) {
  const key = apiKey();
  return { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}), ...extra };
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error?.message || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) {
    $("key-bar").hidden = false;
    showError("This gateway needs an API key.");
    return;
  }
  if (!response.ok) {
    showError(await errorText(response));
    return;
  }
  const { data } = await response.json();
  $("model").replaceChildren(...data.map((m) => new Option(m.id, m.id)));
  showError(data.length ? "" : "No model is available yet.");
}

function bubble(role, text) {
  const node = document.createElement("div");
  node.className = `message ${role}`;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  node.append(body);
  $("conversation").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

function requestBody() {
  const body = { model: $("model").value, messages: state.messages, stream: true };
  const temperature = $("temperature").value;
  const maxTokens = $("max-tokens").value;
  if (temperature !== "") body.temperature = Number(temperature);
  if (maxTokens !== "") body.max_tokens = Number(maxTokens);
  if ($("retrieval").checked) body.retrieval = { enabled: true };
  return body;
}

// Yields each `data:` payload of a server-sent event stream.
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

function renderExtras(node, answer) {
  const meta = document.createElement("div");
  meta.className = "meta";
  const parts = [];
  if (answer.finishReason === "content_filter") {
    node.classList.add("blocked");
    parts.push("stopped by moderation");
  }
  if (answer.moderation) parts.push(`moderation: ${answer.moderation.label}`);
  meta.textContent = parts.join(" · ");
  node.append(meta);
  if (answer.citations?.length) {
    const list = document.createElement("ol");
    list.className = "citations";
    for (const c of answer.citations) {
      const item = document.createElement("li");
      item.textContent = `${c.title || c.source || c.id}${c.source ? ` (${c.source})` : ""}`;
      list.append(item);
    }
    node.append(list);
  }
  if (answer.id) node.append(feedbackControls(answer.id));
}

// FNV-1a, 32 bits: a short, stable key for an action's content.
function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (const char of text) {
    hash ^= char.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16);
}

// One idempotency key per answer and action, so a double click stores one event.
async function sendFeedback(responseId, payload, status, action) {
  status.textContent = "sending…";
  const response = await fetch("/v1/feedback", {
    method: "POST",
    headers: headers({ "Idempotency-Key": `${responseId}:${fnv1a(action)}` }),
    body: JSON.stringify({ response_id: responseId, ...payload }),
  });
  status.textContent = response.ok ? "thanks!" : await errorText(response);
  return response.ok;
}

function feedbackControls(responseId) {
  const node = $("feedback-template").content.firstElementChild.cloneNode(true);
  const status = node.querySelector(".feedback-status");
  for (const rating of ["up", "down"]) {
    node.querySelector(`.${rating}`).addEventListener("click", async (event) => {
      if (await sendFeedback(responseId, { rating }, status, rating)) event.target.classList.add("chosen");
    });
  }
  node.querySelector(".send-report").addEventListener("click", async (event) => {
    const flags = [...node.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
    const ideal = node.querySelector(".ideal").value.trim();
    const report = { rating: "down", flags, ...(ideal ? { ideal_response: ideal } : {}) };
    event.target.disabled = true;
    if (!(await sendFeedback(responseId, report, status, `report:${flags.join(",")}:${ideal}`))) {
      event.target.disabled = false;
    }
  });
  return node;
}

async function ask(text) {
  state.messages.push({ role: "user", content: text });
  bubble("user", text);
  const node = bubble("assistant", "");
  const textNode = node.querySelector(".text");
  const answer = { id: null, text: "", finishReason: null, moderation: null, citations: null };
  state.controller = new AbortController();
  $("send").disabled = true;
  $("stop").hidden = false;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(requestBody()), signal: state.controller.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    for await (const data of sseEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      answer.id = chunk.id;
      if (chunk.moderation) answer.moderation = chunk.moderation;
      if (chunk.citations) answer.citations = chunk.citations;
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) {
        answer.text += choice.delta.content;
        textNode.textContent = answer.text;
        node.scrollIntoView({ block: "end" });
      }
      if (choice?.finish_reason) answer.finishReason = choice.finish_reason;
    }
    showError("");
  } catch (error) {
    if (error.name !== "AbortError") showError(error.message);
  } finally {
    state.controller = null;
    $("send").disabled = false;
    $("stop").hidden = true;
  }
  if (answer.text) state.messages.push({ role: "assistant", content: answer.text });
  else if (!answer.id) state.messages.pop();
  renderExtras(node, answer);
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.controller) return;
  $("prompt").value = "";
  ask(text);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => state.controller?.abort());
$("new-chat").addEventListener("click", () => {
  state.messages = [];
  $("conversation").replaceChildren();
});
$("save-key").addEventListener("click", () => {
  localStorage.setItem("openchatkit-key", $("api-key").value.trim());
  $("key-bar").hidden = true;
  loadModels();
});

loadModels();
