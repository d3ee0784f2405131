// Model output is untrusted: Markdown is rendered by marked, then sanitised by DOMPurify
// (no script, no event handler, no javascript: URL, no image that could leak data), then
// code is highlighted by highlight.js and [n] markers become links to citation cards.

const available = () => Boolean(window.marked?.parse && window.DOMPurify?.sanitize);

export const markdownAvailable = available;

let hooked = false;
function installHooks() {
  if (hooked) return;
  hooked = true;
  window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
}

const SANITIZE = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "img", "picture", "source", "video", "audio", "iframe", "form", "input", "button",
    "textarea", "select", "option", "svg", "math"],
  FORBID_ATTR: ["style", "srcset", "action", "formaction"],
  ALLOW_DATA_ATTR: false,
};

// Sanitised HTML for a Markdown text.
export function toSafeHtml(text) {
  installHooks();
  const html = window.marked.parse(text, { gfm: true, breaks: false, async: false });
  return window.DOMPurify.sanitize(html, SANITIZE);
}

// Renders `text` into `target`; `citations` ([{title, source}]) turn [n] into links to `#${anchor}-n`.
export function renderMarkdown(target, text, { citations = [], anchor = "cite", highlight = true } = {}) {
  if (!available()) {
    target.classList.add("plain");
    target.textContent = text;
    return;
  }
  const template = document.createElement("template");
  template.innerHTML = toSafeHtml(text);
  const fragment = template.content;
  for (const table of fragment.querySelectorAll("table")) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.tabIndex = 0;
    wrap.setAttribute("role", "region");
    wrap.setAttribute("aria-label", "Table");
    table.replaceWith(wrap);
    wrap.append(table);
  }
  for (const code of fragment.querySelectorAll("pre > code")) decorateCode(code, highlight);
  if (citations.length) linkCitations(fragment, citations, anchor);
  target.classList.remove("plain");
  target.replaceChildren(fragment);
}

function decorateCode(code, highlight) {
  const pre = code.parentElement;
  const language = [...code.classList].find((c) => c.startsWith("language-"))?.slice(9) || "";
  if (highlight && window.hljs) {
    if (language && !window.hljs.getLanguage(language)) code.classList.remove(`language-${language}`);
    window.hljs.highlightElement(code);
  }
  pre.tabIndex = 0; // long lines scroll sideways: reachable by keyboard
  const block = document.createElement("div");
  block.className = "codeblock";
  const bar = document.createElement("div");
  bar.className = "codebar";
  const name = document.createElement("span");
  name.textContent = language || "code";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy-code";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = "Copy";
  const context = document.createElement("span");
  context.className = "visually-hidden";
  context.textContent = ` ${language || ""} code`.replace("  ", " ");
  copy.append(label, context);
  bar.append(name, copy);
  pre.replaceWith(block);
  block.append(bar, pre);
}

const MARKER = /\[(\d{1,2})\]/g;
const HAS_MARKER = /\[\d{1,2}\]/;

function linkCitations(fragment, citations, anchor) {
  const walker = document.createTreeWalker(fragment, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) =>
      node.parentElement?.closest("a, code, pre") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const nodes = [];
  while (walker.nextNode()) if (HAS_MARKER.test(walker.currentNode.data)) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const parts = [];
    let last = 0;
    for (const match of node.data.matchAll(MARKER)) {
      const n = Number(match[1]);
      if (n < 1 || n > citations.length) continue;
      parts.push(document.createTextNode(node.data.slice(last, match.index)));
      const link = document.createElement("a");
      link.className = "cite";
      link.href = `#${anchor}-${n}`;
      link.textContent = `[${n}]`;
      const c = citations[n - 1];
      link.setAttribute("aria-label", `Source ${n}: ${c.title || c.source || "untitled"}`);
      parts.push(link);
      last = match.index + match[0].length;
    }
    if (!parts.length) continue;
    parts.push(document.createTextNode(node.data.slice(last)));
    node.replaceWith(...parts);
  }
}

// Copies text; falls back to a hidden textarea where the Clipboard API is not allowed (plain http).
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}
