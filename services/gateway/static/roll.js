// Roll Key (issue 21): the dialog the list's Actions menu and the Edit page share. The new full key is shown
// once, to copy; `onClosed(rolled)` runs when the dialog closes after a roll.
import { api, copyText, showErrors, toast, wireDialog } from "./common.js";

const SECONDS = { s: 1, m: 60, h: 3600, d: 86400 };
const $ = (id) => document.getElementById(id);

function overlapEnd(key, overlap) {
  const [, amount, unit] = /^(\d+)([smhd])$/.exec(overlap);
  const end = Date.now() + Number(amount) * SECONDS[unit] * 1000;
  return new Date(Math.min(end, Date.parse(key.expires_at)));
}

export function wireRoll({ onClosed = () => {} } = {}) {
  const dialog = wireDialog($("roll-dialog"));
  const form = $("roll-form");
  let current = null;
  let rolled = null;

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const submit = form.querySelector("[type=submit]");
    submit.disabled = true;
    const overlap = $("roll-overlap").value;
    try {
      rolled = await api("POST", `/api/v1/keys/${current.id}/roll`, { body: { overlap } });
      showErrors(form, "roll", null);
      const end = overlapEnd(current, overlap);
      $("rolled-key").textContent = rolled.key;
      $("rolled-overlap").dateTime = end.toISOString();
      $("rolled-overlap").textContent = end.toLocaleString();
      $("rolled-open").href = `/keys/${rolled.id}`;
      form.hidden = true;
      $("roll-result").hidden = false;
      $("copy-rolled").focus();
    } catch (error) {
      showErrors(form, "roll", error);
    } finally {
      submit.disabled = false;
    }
  });

  $("copy-rolled").addEventListener("click", () => {
    copyText($("rolled-key").textContent).then(() => toast("New key copied to the clipboard"),
      (error) => toast(`Could not copy the key: ${error.message}`));
  });

  dialog.addEventListener("close", () => {
    $("rolled-key").textContent = "";  // shown once
    if (rolled) onClosed(rolled);
    rolled = null;
  });

  return {
    open(key) {
      current = key;
      rolled = null;
      $("roll-name").textContent = key.name;
      $("roll-overlap").value = "7d";
      showErrors(form, "roll", null);
      form.hidden = false;
      $("roll-result").hidden = true;
      dialog.showModal();
    },
  };
}
