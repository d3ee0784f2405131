// The gateway's public API as the page uses it: the key, JSON calls, SSE streams, readable errors.

const KEY_STORAGE = "openchatkit-key";

export function apiKey() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) {
    localStorage.setItem(KEY_STORAGE, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function saveKey(key) {
  localStorage.setItem(KEY_STORAGE, key);
}

export function authHeaders(extra = {}) {
  const key = apiKey();
  return { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...extra };
}

// An error the page can show: a sentence, the HTTP status, and how long to wait before a retry.
export class ApiError extends Error {
  constructor(message, { status = 0, code = null, retryAfterS = 0 } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

function retryAfterSeconds(headers) {
  const ms = Number(headers.get("retry-after-ms"));
  if (ms > 0) return Math.ceil(ms / 1000);
  const s = Number(headers.get("retry-after"));
  return s > 0 ? Math.ceil(s) : 0;
}

// Turns a failed response into an ApiError with a sentence a person can act on.
export async function errorFromResponse(response) {
  let message = "";
  let code = null;
  try {
    const body = await response.json();
    message = body.error?.message || "";
    code = body.error?.code || null;
  } catch {
    // not JSON: fall back to the status
  }
  const retryAfterS = retryAfterSeconds(response.headers);
  const status = response.status;
  if (status === 401) message = message || "This gateway needs an API key.";
  else if (status === 429) {
    const wait = retryAfterS ? ` You can retry in ${retryAfterS} s.` : "";
    message = `Too many requests: ${message || "the rate limit was reached."}${wait}`;
  } else if (status >= 500 && !message) message = `The gateway answered ${status}.`;
  else if (!message) message = `HTTP ${status}`;
  return new ApiError(message, { status, code, retryAfterS });
}

export function networkError(error) {
  if (error instanceof ApiError || error?.name === "AbortError") return error;
  return new ApiError(
    `Cannot reach the gateway at ${location.origin} (${error?.message || error}). Check that it is running, then retry.`,
  );
}

export async function request(path, { method = "GET", body, headers = {}, signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      signal,
      headers: authHeaders(body === undefined ? headers : { "Content-Type": "application/json", ...headers }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw networkError(error);
  }
  if (!response.ok) throw await errorFromResponse(response);
  return response.json();
}

// Opens a streamed chat completion; yields each parsed chunk. `idleMs` without a byte aborts it.
export async function* streamChat(body, { signal, idleMs = 180_000 }) {
  const controller = new AbortController();
  const abort = () => controller.abort(signal.reason);
  signal.addEventListener("abort", abort, { once: true });
  let idle = false;
  let timer = setTimeout(() => ((idle = true), controller.abort()), idleMs);
  const touch = () => {
    clearTimeout(timer);
    timer = setTimeout(() => ((idle = true), controller.abort()), idleMs);
  };
  try {
    let response;
    try {
      response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: authHeaders({ "Content-Type": "application/json" }),
        body: JSON.stringify(body),
        signal: controller.signal,
      });
    } catch (error) {
      if (idle) throw new ApiError(`The gateway sent nothing for ${idleMs / 1000} s.`);
      throw networkError(error);
    }
    if (!response.ok) throw await errorFromResponse(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (error?.name === "AbortError" && !idle) throw error;
        if (idle) throw new ApiError(`The answer stalled: nothing arrived for ${idleMs / 1000} s.`);
        throw new ApiError("The connection to the gateway was lost while the answer was streaming.");
      }
      if (chunk.done) {
        throw new ApiError("The stream ended before the answer was complete.");
      }
      touch();
      buffer += decoder.decode(chunk.value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") return;
          const parsed = JSON.parse(data);
          if (parsed.error) {
            throw new ApiError(parsed.error.message || "The answer failed.", { code: parsed.error.code });
          }
          yield parsed;
        }
      }
    }
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", abort);
  }
}

// Uploads one file with progress (fetch has no upload progress): resolves to the JSON answer.
export function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/documents");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", async () => {
      const response = new Response(xhr.responseText, {
        status: xhr.status,
        headers: {
          "content-type": xhr.getResponseHeader("content-type") || "text/plain",
          "retry-after": xhr.getResponseHeader("retry-after") || "",
        },
      });
      if (xhr.status >= 200 && xhr.status < 300) resolve(await response.json());
      else reject(await errorFromResponse(response));
    });
    xhr.addEventListener("error", () => reject(networkError(new Error("the upload failed"))));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}
