// Conversations kept in this browser (localStorage): one entry per conversation.
//
// A conversation: {id, title, created, updated, retrieval: bool, messages: [...]}; a message:
// {role: "user", content} or {role: "assistant", content, id, finishReason, moderation,
// citations, retrieval, truncation, stopped, error, feedback: {rating, report, status}}.

const PREFIX = "openchatkit-conversation:";
const TITLE_CHARS = 60;

function newId() {
  return (crypto.randomUUID?.() || `${Date.now()}-${Math.random()}`).replace(/-/g, "").slice(0, 16);
}

export function titleFrom(text) {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > TITLE_CHARS ? `${line.slice(0, TITLE_CHARS - 1)}…` : line || "New chat";
}

export function createConversation(retrieval = false) {
  const now = Date.now();
  return { id: newId(), title: "New chat", titled: false, created: now, updated: now, retrieval, messages: [] };
}

export function loadConversation(id) {
  try {
    const raw = localStorage.getItem(PREFIX + id);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

// Saves the conversation (only once it has a message: an empty chat is not listed).
export function saveConversation(conversation) {
  if (!conversation.messages.length) return;
  conversation.updated = Date.now();
  try {
    localStorage.setItem(PREFIX + conversation.id, JSON.stringify(conversation));
  } catch (error) {
    console.warn("could not save the conversation", error);
  }
}

export function deleteConversation(id) {
  localStorage.removeItem(PREFIX + id);
}

// Newest first: [{id, title, updated}].
export function listConversations() {
  const out = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (!key?.startsWith(PREFIX)) continue;
    const conversation = loadConversation(key.slice(PREFIX.length));
    if (conversation) out.push({ id: conversation.id, title: conversation.title, updated: conversation.updated });
  }
  return out.sort((a, b) => b.updated - a.updated);
}

// What the API gets: the visible conversation's questions and answers, without failed answers.
export function historyForApi(conversation) {
  return conversation.messages
    .filter((m) => m.role === "user" || (m.role === "assistant" && m.content && !m.error))
    .map((m) => ({ role: m.role, content: m.content }));
}
