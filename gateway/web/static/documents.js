// The Documents view: drag-and-drop (or chosen) files uploaded one by one through the
// gateway's /v1/documents with progress and a result per file; the index listed with delete.

import { request, uploadFile } from "./api.js";

const $ = (id) => document.getElementById(id);
const ACCEPTED = [".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl"];
let nextPage = null;

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function describe(outcome) {
  const chunks = `${outcome.chunks} chunk${outcome.chunks === 1 ? "" : "s"}`;
  if (outcome.status === "unchanged") return `already in the index, unchanged (${chunks})`;
  if (outcome.status === "updated") return `updated: ${chunks}`;
  return `added: ${chunks}`;
}

async function uploadOne(file) {
  const row = document.createElement("li");
  row.className = "upload";
  const name = document.createElement("span");
  name.className = "upload-name";
  name.textContent = `${file.name} (${formatSize(file.size)})`;
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute("aria-label", `Upload of ${file.name}`);
  const result = document.createElement("span");
  result.className = "upload-result";
  result.setAttribute("role", "status");
  row.append(name, bar, result);
  $("upload-list").prepend(row);
  const extension = file.name.slice(file.name.lastIndexOf(".")).toLowerCase();
  if (!ACCEPTED.includes(extension)) {
    row.classList.add("failed");
    bar.remove();
    result.textContent = `not uploaded: ${extension || "files without an extension"} is not accepted (${ACCEPTED.join(", ")})`;
    return;
  }
  result.textContent = "uploading…";
  try {
    const answer = await uploadFile(file, (fraction) => {
      bar.value = fraction;
      if (fraction >= 1) result.textContent = "indexing…";
    });
    bar.value = 1;
    row.classList.add("done");
    result.textContent = answer.data.map(describe).join("; ") || "nothing to index";
  } catch (error) {
    row.classList.add("failed");
    result.textContent = `failed: ${error.message}`;
    if (error.status === 401) document.dispatchEvent(new CustomEvent("needs-key"));
  }
}

export async function uploadFiles(files) {
  for (const file of files) await uploadOne(file);
  await loadDocuments();
}

function documentRow(doc) {
  const row = document.createElement("tr");
  const title = document.createElement("td");
  title.textContent = doc.title || "(untitled)";
  const source = document.createElement("td");
  source.className = "source";
  source.textContent = doc.source;
  const chunks = document.createElement("td");
  chunks.textContent = String(doc.chunks);
  const actions = document.createElement("td");
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "danger delete-document";
  const label = document.createElement("span");
  label.textContent = "Delete";
  const context = document.createElement("span");
  context.className = "visually-hidden";
  context.textContent = ` ${doc.title || doc.source}`;
  remove.append(label, context);
  remove.addEventListener("click", async () => {
    if (remove.dataset.confirm !== "yes") {
      remove.dataset.confirm = "yes";
      label.textContent = "Confirm delete";
      return;
    }
    remove.disabled = true;
    try {
      await request(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
      row.remove();
      const left = $("document-table").tBodies[0].rows.length;
      $("documents-empty").hidden = left > 0;
      $("document-table").hidden = left === 0;
    } catch (error) {
      remove.disabled = false;
      label.textContent = "Delete";
      delete remove.dataset.confirm;
      $("documents-empty").hidden = false;
      $("documents-empty").textContent = `Could not delete: ${error.message}`;
    }
  });
  actions.append(remove);
  row.append(title, source, chunks, actions);
  return row;
}

export async function loadDocuments(append = false) {
  const body = $("document-table").tBodies[0];
  const empty = $("documents-empty");
  const params = new URLSearchParams({ limit: "100" });
  if (append && nextPage) params.set("after", nextPage);
  try {
    const page = await request(`/v1/documents?${params}`);
    if (!append) body.replaceChildren();
    body.append(...page.data.map(documentRow));
    nextPage = page.has_more ? page.last_id : null;
    $("more-documents").hidden = !nextPage;
    empty.textContent = "No documents yet.";
    empty.classList.remove("error");
    empty.hidden = body.rows.length > 0;
    $("document-table").hidden = body.rows.length === 0;
  } catch (error) {
    if (error.status === 401) document.dispatchEvent(new CustomEvent("needs-key"));
    empty.textContent = `Could not list the documents: ${error.message}`;
    empty.classList.add("error");
    empty.hidden = false;
  }
}

export function setUpDocuments() {
  const zone = $("dropzone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    uploadFiles([...(event.dataTransfer?.files || [])]);
  });
  $("file-input").addEventListener("change", (event) => {
    uploadFiles([...event.target.files]);
    event.target.value = "";
  });
  $("refresh-documents").addEventListener("click", () => loadDocuments());
  $("more-documents").addEventListener("click", () => loadDocuments(true));
}
