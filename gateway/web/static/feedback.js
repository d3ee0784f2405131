// Thumbs, flags and an ideal answer for one answer, sent to /v1/feedback; what was sent
// is kept on the message ({rating, report: {flags, ideal}}) and shown again on reload.

import { request } from "./api.js";

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
async function send(responseId, payload, action) {
  await request("/v1/feedback", {
    method: "POST",
    headers: { "Idempotency-Key": `${responseId}:${fnv1a(action)}` },
    body: { response_id: responseId, ...payload },
  });
}

export function attachFeedback(message, save) {
  const node = document.getElementById("feedback-template").content.firstElementChild.cloneNode(true);
  const status = node.querySelector(".feedback-status");
  const state = (message.feedback ||= { rating: null, report: null });
  const paint = () => {
    for (const rating of ["up", "down"]) {
      const chosen = state.rating === rating;
      node.querySelector(`.${rating}`).classList.toggle("chosen", chosen);
      node.querySelector(`.${rating}`).setAttribute("aria-pressed", String(chosen));
    }
    if (state.report) {
      for (const box of node.querySelectorAll("input[type=checkbox]")) box.checked = state.report.flags.includes(box.value);
      node.querySelector(".ideal").value = state.report.ideal || "";
      node.querySelector(".send-report").textContent = "Update feedback";
    }
  };
  paint();
  if (state.rating || state.report) status.textContent = "Feedback sent.";
  for (const rating of ["up", "down"]) {
    node.querySelector(`.${rating}`).addEventListener("click", async () => {
      status.textContent = "sending…";
      try {
        await send(message.id, { rating }, rating);
        state.rating = rating;
        save();
        paint();
        status.textContent = "thanks!";
      } catch (error) {
        status.textContent = error.message;
      }
    });
  }
  const submit = node.querySelector(".send-report");
  submit.addEventListener("click", async () => {
    const flags = [...node.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
    const ideal = node.querySelector(".ideal").value.trim();
    const report = { rating: "down", flags, ...(ideal ? { ideal_response: ideal } : {}) };
    submit.disabled = true;
    status.textContent = "sending…";
    try {
      await send(message.id, report, `report:${flags.join(",")}:${ideal}`);
      state.rating = "down";
      state.report = { flags, ideal };
      save();
      paint();
      status.textContent = "thanks!";
    } catch (error) {
      status.textContent = error.message;
    } finally {
      submit.disabled = false;
    }
  });
  return node;
}
