// Shared helpers of the console's pages. Data from the server only ever reaches the DOM through textContent.

export const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export class RequestError extends Error {
  constructor(status, error) {
    super(error?.message || `request failed (${status})`);
    this.status = status;
    this.code = error?.code;
    this.fields = error?.fields || {};
  }
}

export async function api(method, url, { body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // On every call: the reveal of a full key (a GET) asks for it too.
  headers["X-CSRF-Token"] = csrfToken();
  const response = await fetch(url, {
    method, headers, signal, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    location.assign(`/sign-in?next=${encodeURIComponent(location.pathname)}`);
    throw new RequestError(401, { message: "Your session has ended: sign in again." });
  }
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch { /* not JSON: handled below */ }
  if (!response.ok) throw new RequestError(response.status, data?.error);
  return data;
}

let toastTimer;
export function toast(message) {
  const element = document.getElementById("toast");
  element.textContent = message;
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { element.hidden = true; }, 4000);
}

// A ClipboardItem built from a promise keeps the click's user activation while the key is fetched.
export async function copyText(textOrPromise) {
  if (window.ClipboardItem && navigator.clipboard?.write) {
    const blob = Promise.resolve(textOrPromise).then((text) => new Blob([text], { type: "text/plain" }));
    await navigator.clipboard.write([new ClipboardItem({ "text/plain": blob })]);
  } else {
    await navigator.clipboard.writeText(await textOrPromise);
  }
}

// Dates as the search matches them: YYYY-MM-DD in UTC.
export const day = (iso) => new Date(iso).toISOString().slice(0, 10);
export const daysLeft = (iso) => Math.max(0, Math.ceil((Date.parse(iso) - Date.now()) / 86400000));

export function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

export function wireDialog(dialog) {
  dialog.querySelectorAll("[data-close]").forEach((button) => button.addEventListener("click", () => dialog.close()));
  return dialog;
}

// Shows an API error on a form: messages next to the fields it names, the rest in its .form-error.
export function showErrors(form, prefix, error) {
  form.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
  form.querySelectorAll(".field-error").forEach((p) => { p.textContent = ""; });
  const general = form.querySelector(".form-error");
  if (general) general.textContent = "";
  if (!error) return;
  let placed = false;
  for (const [field, message] of Object.entries(error.fields || {})) {
    const input = document.getElementById(`${prefix}-${field.replace("_id", "")}`) || document.getElementById(`${prefix}-${field}`);
    const hint = document.getElementById(`${prefix}-${field.replace("_id", "")}-error`);
    if (input && hint) {
      input.setAttribute("aria-invalid", "true");
      hint.textContent = `${message[0].toUpperCase()}${message.slice(1)}`;
      placed = true;
    }
  }
  if (!placed && general) general.textContent = error.message;
}

// Live updates over Server-Sent Events. After a reconnect the caller is told to reload its view (it may
// have missed events meanwhile).
export function listen(onMessage) {
  if (!window.EventSource) return null;
  const source = new EventSource("/api/v1/events");
  let connected = false;
  source.addEventListener("ready", () => {
    if (connected) onMessage({ type: "resync" });
    connected = true;
    document.documentElement.dataset.live = "on";
  });
  source.addEventListener("key", (event) => onMessage(JSON.parse(event.data)));
  source.addEventListener("error", () => { document.documentElement.dataset.live = "off"; });
  return source;
}
