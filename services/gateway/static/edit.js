// The Edit API Key page: copy the full key, rename, roll, delete; follows changes made elsewhere.
import { api, copyText, listen, showErrors, toast, wireDialog } from "./common.js";
import { wireRoll } from "./roll.js";

const $ = (id) => document.getElementById(id);
const main = document.getElementById("main");
const keyId = main.dataset.keyId;
const form = $("rename-form");

$("copy-key").addEventListener("click", () => {
  copyText($("full-key").textContent).then(() => toast("Key copied to the clipboard"),
    (error) => toast(`Could not copy the key: ${error.message}`));
});

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const submit = form.querySelector("[type=submit]");
  submit.disabled = true;
  try {
    const key = await api("PATCH", `/api/v1/keys/${keyId}`, { body: { name: $("key-name").value } });
    showErrors(form, "key", null);
    $("key-name").value = key.name;
    $("key-heading-name").textContent = key.name;
    toast(`Renamed to “${key.name}”`);
  } catch (error) {
    showErrors(form, "key", error);
  } finally {
    submit.disabled = false;
  }
});

// Roll Key; the expiry e-mail's link (/keys/{id}?roll) opens it at once. After a roll the page shows the link.
const roll = wireRoll({ onClosed: () => location.replace(`/keys/${keyId}`) });
const openRoll = () => roll.open({ id: keyId, name: $("key-name").value, expires_at: main.dataset.keyExpires });
$("roll-key")?.addEventListener("click", openRoll);
if (new URLSearchParams(location.search).has("roll") && $("roll-key")) openRoll();

const dialog = wireDialog($("delete-dialog"));
$("delete-key").addEventListener("click", () => dialog.showModal());
$("confirm-delete").addEventListener("click", async () => {
  try {
    await api("DELETE", `/api/v1/keys/${keyId}`);
    location.assign("/keys");
  } catch (error) {
    dialog.querySelector(".form-error").textContent = error.message;
  }
});

function gone() {
  $("gone").hidden = false;
  document.querySelectorAll(".edit-grid button, .edit-grid input").forEach((control) => { control.disabled = true; });
}

listen((message) => {
  if (message.key_id !== keyId) return;
  if (message.type === "deleted") gone();
  if (message.type === "updated" && document.activeElement !== $("key-name")) {
    $("key-name").value = message.name;
    $("key-heading-name").textContent = message.name;
  }
});
