// The API Key page: list, search, organization filter, sorting, selection, paging, actions, live updates.
import { api, copyText, day, daysLeft, debounce, listen, showErrors, toast, wireDialog } from "./common.js";
import { wireRoll } from "./roll.js";

const PAGE = 50;
const MAX_PAGE = 500;
const $ = (id) => document.getElementById(id);
const rows = $("rows");
const template = $("row-template");
const selectAll = $("select-all");
const table = $("keys-table");
const state = {
  organization_id: $("organization").value, q: "", sort: "name", order: "asc",
  items: [], cursor: null, total: 0, selected: new Set(), loading: false, seq: 0,
};

function params(extra = {}) {
  const p = new URLSearchParams({ organization_id: state.organization_id, sort: state.sort, order: state.order });
  if (state.q) p.set("q", state.q);
  for (const [name, value] of Object.entries(extra)) p.set(name, value);
  return p;
}

async function load({ append = false, limit = PAGE, fresh = null } = {}) {
  const seq = ++state.seq;
  state.loading = true;
  table.setAttribute("aria-busy", "true");
  const extra = { limit: String(limit) };
  if (append && state.cursor) extra.cursor = state.cursor;
  try {
    const page = await api("GET", `/api/v1/keys?${params(extra)}`);
    if (seq !== state.seq) return;  // a newer query has started: its answer wins
    const known = new Set(state.items.map((k) => k.id));
    state.items = append ? state.items.concat(page.items) : page.items;
    state.cursor = page.next_cursor;
    state.total = page.total;
    state.totalExact = page.total_exact !== false;
    const present = new Set(state.items.map((k) => k.id));
    for (const id of [...state.selected]) if (!present.has(id)) state.selected.delete(id);
    render(append ? page.items : state.items, append, fresh ? (id) => fresh && !known.has(id) : () => false);
  } catch (error) {
    if (seq === state.seq) $("list-status").textContent = error.message;
  } finally {
    if (seq === state.seq) {
      state.loading = false;
      // What the list now shows, for assistive technology (aria-busy) and for tests waiting on it.
      table.dataset.q = state.q;
      table.dataset.organization = state.organization_id;
      table.dataset.sort = `${state.sort}:${state.order}`;
      table.setAttribute("aria-busy", "false");
    }
  }
}

function render(items, append, isFresh) {
  // A live refresh re-renders the rows: keep the keyboard where it was (same key, same control).
  const focused = rows.contains(document.activeElement) ? document.activeElement : null;
  const focusedRow = focused?.closest("tr")?.dataset.id;
  const focusedControl = focused ? [...focused.classList].find((c) => c === "row-check" || c === "actions-button") : null;
  if (append) {
    const fragment = document.createDocumentFragment();
    for (const item of items) fragment.append(row(item, isFresh(item.id)));
    rows.append(fragment);
  } else {
    reconcile(items, isFresh);
  }
  if (focusedRow && focusedControl && !append && document.activeElement !== focused) {
    rows.querySelector(`tr[data-id="${CSS.escape(focusedRow)}"] .${focusedControl}`)?.focus();
  }
  const empty = state.items.length === 0;
  $("empty").hidden = !empty;
  $("empty-hint").textContent = state.q ? `Nothing matches “${state.q}”.` : "Create one with New in the toolbar.";
  $("load-more").hidden = !state.cursor;
  $("list-status").textContent = empty ? "" :
    `Showing ${state.items.length.toLocaleString()} of ${state.total.toLocaleString()}${state.totalExact ? "" : "+"} API key${state.total === 1 ? "" : "s"}`;
  updateSelection();
}

// Rows whose key is unchanged are kept as they are, so a live refresh never pulls a row from under the
// pointer or the keyboard; only new, changed or moved rows are touched.
function reconcile(items, isFresh) {
  const existing = new Map([...rows.children].map((tr) => [tr.dataset.id, tr]));
  items.forEach((item, index) => {
    const signature = JSON.stringify(item);
    let tr = existing.get(item.id);
    if (!tr || tr.dataset.signature !== signature) {
      const replacement = row(item, isFresh(item.id));
      if (tr) tr.replaceWith(replacement);
      tr = replacement;
    }
    existing.delete(item.id);
    if (rows.children[index] !== tr) rows.insertBefore(tr, rows.children[index] || null);
  });
  for (const stale of existing.values()) stale.remove();
}

function row(item, fresh) {
  const tr = template.content.firstElementChild.cloneNode(true);
  tr.dataset.id = item.id;
  tr.dataset.signature = JSON.stringify(item);
  if (fresh) tr.classList.add("fresh");
  const name = tr.querySelector(".key-name");
  name.textContent = item.name;
  name.id = `name-${item.id}`;
  name.title = item.name;
  // A rolled key links to its successor, a successor to the key it replaces.
  const link = tr.querySelector(".key-link");
  const other = item.replaced_by || item.replaces;
  if (other) {
    link.hidden = false;
    link.href = `/keys/${other}`;
    link.textContent = item.replaced_by ? "replaced" : "replaces a key";
    link.title = item.replaced_by ? "Rolled: open the key that replaces it" : "Open the key it replaces";
  }
  tr.querySelector(".col-org").textContent = item.organization_name;
  const time = tr.querySelector(".col-exp time");
  time.dateTime = item.expires_at;
  time.textContent = day(item.expires_at);
  const left = daysLeft(item.expires_at);
  if (left < 30) {
    const badge = tr.querySelector(".days-left");
    badge.hidden = false;
    badge.textContent = `${left} day${left === 1 ? "" : "s"} left`;
  }
  tr.querySelector(".col-creator").textContent = item.created_by;
  tr.querySelector(".col-key code").textContent = item.key_display;
  const check = tr.querySelector(".row-check");
  check.setAttribute("aria-label", `Select ${item.name}`);
  check.checked = state.selected.has(item.id);
  tr.classList.toggle("selected", check.checked);
  tr.querySelector(".actions-button").setAttribute("aria-describedby", name.id);
  return tr;
}

function updateSelection() {
  const count = state.selected.size;
  $("delete-selected").hidden = count === 0;
  $("selected-count").textContent = count ? String(count) : "";
  $("delete-selected").title = count ? `Delete the ${count} selected API key${count === 1 ? "" : "s"}` : "Delete";
  const loaded = state.items.length;
  selectAll.checked = loaded > 0 && count === loaded;
  selectAll.indeterminate = count > 0 && count < loaded;
  for (const tr of rows.children) {
    const selected = state.selected.has(tr.dataset.id);
    tr.classList.toggle("selected", selected);
    tr.querySelector(".row-check").checked = selected;
  }
}

const reload = () => load({ limit: Math.min(MAX_PAGE, Math.max(PAGE, state.items.length)) });

function updateDownload() {
  $("download").href = `/api/v1/keys/export.csv?${params()}`;
}

function requery() {
  state.selected.clear();
  state.items = [];
  state.cursor = null;
  updateDownload();
  load();
}

// --- filters, search, sorting, paging
$("organization").addEventListener("change", (e) => { state.organization_id = e.target.value; requery(); });
$("search").addEventListener("input", debounce((e) => { state.q = e.target.value.trim(); requery(); }, 250));
for (const th of document.querySelectorAll("th[data-sort]")) {
  th.querySelector("button").addEventListener("click", () => {
    const column = th.dataset.sort;
    state.order = state.sort === column && state.order === "asc" ? "desc" : "asc";
    state.sort = column;
    for (const other of document.querySelectorAll("th[data-sort]")) other.setAttribute("aria-sort", "none");
    th.setAttribute("aria-sort", state.order === "asc" ? "ascending" : "descending");
    requery();
  });
}
$("load-more").addEventListener("click", () => load({ append: true }));
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting) && state.cursor && !state.loading) load({ append: true });
}, { rootMargin: "400px" }).observe($("sentinel"));

// --- selection
rows.addEventListener("change", (e) => {
  if (!e.target.classList.contains("row-check")) return;
  const id = e.target.closest("tr").dataset.id;
  if (e.target.checked) state.selected.add(id); else state.selected.delete(id);
  updateSelection();
});
selectAll.addEventListener("change", () => {
  if (selectAll.checked) state.items.forEach((k) => state.selected.add(k.id)); else state.selected.clear();
  updateSelection();
});
rows.addEventListener("dblclick", (e) => {
  const tr = e.target.closest("tr");
  if (tr && !e.target.closest(".col-select, .col-actions")) location.assign(`/keys/${tr.dataset.id}`);
});

// --- actions menu (menu button pattern: arrows move, Escape closes and returns focus)
let openMenu = null;
function closeMenu(focusButton = false) {
  if (!openMenu) return;
  const { button, list } = openMenu;
  list.hidden = true;
  button.setAttribute("aria-expanded", "false");
  openMenu = null;
  if (focusButton) button.focus();
}
function showMenu(button) {
  closeMenu();
  const list = button.nextElementSibling;
  list.hidden = false;
  list.classList.toggle("up", button.getBoundingClientRect().bottom + 150 > window.innerHeight);
  button.setAttribute("aria-expanded", "true");
  openMenu = { button, list };
  list.querySelector("[role=menuitem]").focus();
}
rows.addEventListener("click", (e) => {
  const button = e.target.closest(".actions-button");
  if (button) { if (openMenu?.button === button) closeMenu(); else showMenu(button); return; }
  const item = e.target.closest("[role=menuitem]");
  if (item) {
    const id = item.closest("tr").dataset.id;
    closeMenu(true);
    act(item.dataset.action, state.items.find((k) => k.id === id));
  }
});
rows.addEventListener("keydown", (e) => {
  if (!openMenu || !openMenu.list.contains(e.target)) return;
  const items = [...openMenu.list.querySelectorAll("[role=menuitem]")];
  const at = items.indexOf(e.target);
  const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 };
  if (e.key in moves) { e.preventDefault(); items[(moves[e.key] + items.length) % items.length].focus(); }
  else if (e.key === "Escape") { e.preventDefault(); closeMenu(true); }
  else if (e.key === "Tab") closeMenu();
});
document.addEventListener("click", (e) => { if (openMenu && !e.target.closest(".menu")) closeMenu(); });

function act(action, key) {
  if (!key) return;
  if (action === "edit") location.assign(`/keys/${key.id}`);
  if (action === "delete") confirmDelete([key]);
  if (action === "roll") roll.open(key);
  if (action === "copy") {
    copyText(api("GET", `/api/v1/keys/${key.id}`).then((full) => full.key))
      .then(() => toast(`Key of “${key.name}” copied to the clipboard`))
      .catch((error) => toast(`Could not copy the key: ${error.message}`));
  }
}

// --- roll (from a key's menu): the list then shows the successor beside the key it replaces
const roll = wireRoll({ onClosed: () => reload() });

// --- delete (one from its menu, or the selection from the toolbar)
const deleteDialog = wireDialog($("delete-dialog"));
let pendingDelete = [];
function confirmDelete(keys) {
  pendingDelete = keys;
  $("delete-title").textContent = keys.length === 1 ? "Delete API key" : `Delete ${keys.length} API keys`;
  $("delete-text").textContent = keys.length === 1 ? "This API key will be deleted:" : "These API keys will be deleted:";
  $("delete-names").replaceChildren(...keys.map((k) => Object.assign(document.createElement("li"), { textContent: k.name })));
  deleteDialog.querySelector(".form-error").textContent = "";
  deleteDialog.showModal();
}
$("delete-selected").addEventListener("click", () => {
  confirmDelete(state.items.filter((k) => state.selected.has(k.id)));
});
$("confirm-delete").addEventListener("click", async () => {
  const button = $("confirm-delete");
  button.disabled = true;
  try {
    const ids = pendingDelete.map((k) => k.id);
    if (ids.length === 1) await api("DELETE", `/api/v1/keys/${ids[0]}`);
    else await api("POST", "/api/v1/keys/bulk-delete", { body: { ids } });
    deleteDialog.close();
    ids.forEach((id) => state.selected.delete(id));
    toast(ids.length === 1 ? `Deleted “${pendingDelete[0].name}”` : `Deleted ${ids.length} API keys`);
    await reload();
  } catch (error) {
    deleteDialog.querySelector(".form-error").textContent = error.message;
  } finally {
    button.disabled = false;
  }
});

// --- add
const addDialog = wireDialog($("add-dialog"));
const addForm = $("add-form");
$("new-key").addEventListener("click", () => {
  addForm.reset();
  showErrors(addForm, "add", null);
  $("add-organization").value = state.organization_id;
  addForm.hidden = false;
  $("add-result").hidden = true;
  addDialog.setAttribute("aria-labelledby", "add-title");
  addDialog.showModal();
  $("add-name").focus();
});
addForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const submit = addForm.querySelector("[type=submit]");
  submit.disabled = true;
  try {
    const body = { name: $("add-name").value, organization_id: $("add-organization").value };
    const created = await api("POST", "/api/v1/keys", { body });
    $("created-key").textContent = created.key;
    $("created-name").textContent = created.name;
    $("created-organization").textContent = created.organization_name;
    $("created-expires").textContent = day(created.expires_at);
    addForm.hidden = true;
    $("add-result").hidden = false;
    addDialog.setAttribute("aria-labelledby", "created-title");
    $("copy-created").focus();
    load({ limit: Math.min(MAX_PAGE, Math.max(PAGE, state.items.length + 1)), fresh: true });
  } catch (error) {
    showErrors(addForm, "add", error);
  } finally {
    submit.disabled = false;
  }
});
$("copy-created").addEventListener("click", () => {
  copyText($("created-key").textContent).then(() => toast("Key copied to the clipboard"),
    (error) => toast(`Could not copy the key: ${error.message}`));
});

// --- live updates: reload the current view, so search, filter and sort stay exact
const announce = { created: "created", updated: "renamed", deleted: "deleted", expiring: "about to expire" };
const refresh = debounce(() => load({ limit: Math.min(MAX_PAGE, Math.max(PAGE, state.items.length)), fresh: true }), 300);
listen((message) => {
  if (message.type in announce && message.name) {
    $("announcer").textContent = `API key “${message.name}” ${announce[message.type]}`;
  }
  refresh();
});

// The toolbar's buttons also answer the arrow keys, as a toolbar does.
document.querySelector("[role=toolbar]").addEventListener("keydown", (e) => {
  if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
  const tools = [...e.currentTarget.querySelectorAll(".tool")].filter((t) => !t.hidden);
  const at = tools.indexOf(document.activeElement);
  if (at < 0) return;
  e.preventDefault();
  tools[(at + (e.key === "ArrowRight" ? 1 : -1) + tools.length) % tools.length].focus();
});

updateDownload();
load();
