// The adapter's dialogs: transfer the open chat, end it, start a new outbound chat. Each sends
// its request through `actions` and shows the server's sentence when it is refused.
import { $, h } from "./render.js";
import { countSegments, MAX_BODY_CHARS } from "./segments.js";
import { optinShortcut } from "./composer.js";

function withButton(button, work) {
  button.disabled = true;
  return work().finally(() => {
    button.disabled = false;
  });
}

function mountTransfer({ store, actions }) {
  $("transfer-button").addEventListener("click", async () => {
    $("transfer-error").textContent = "";
    $("transfer-targets").replaceChildren(h("p", { class: "empty" }, "Loading…"));
    $("transfer-dialog").showModal();
    const { targets, error } = await actions.transferTargets();
    if (error) {
      $("transfer-targets").replaceChildren();
      $("transfer-error").textContent = error;
      return;
    }
    const group = (title, kind, items, empty) =>
      h("fieldset", { class: "target-group" },
        h("legend", {}, title),
        items.length
          ? items.map((t) => h("label", { class: "choice" }, h("input", { type: "radio", name: "target", value: `${kind}:${t.id}` }), h("span", {}, t.name)))
          : h("p", { class: "empty" }, empty),
      );
    $("transfer-targets").replaceChildren(
      group("Agents", "agent", targets.agents, "No other agent is available right now."),
      group("Queues", "queue", targets.queues, "No queue takes SMS chats."),
    );
    $("transfer-dialog").querySelector('input[name="target"]')?.focus();
  });

  $("transfer-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chatId = store.state.openChatId;
    const picked = $("transfer-form").querySelector('input[name="target"]:checked');
    if (!picked) {
      $("transfer-error").textContent = "Choose an agent or a queue.";
      return;
    }
    const [kind, id] = picked.value.split(":");
    const target = kind === "agent" ? { agent_id: Number(id) } : { queue_id: Number(id) };
    withButton($("transfer-submit"), async () => {
      const error = await actions.transfer(chatId, target, picked.closest("label").textContent);
      if (error) $("transfer-error").textContent = error;
      else $("transfer-dialog").close();
    });
  });
}

function mountEnd({ store, actions }) {
  $("end-button").addEventListener("click", () => {
    $("end-error").textContent = "";
    $("end-dialog").showModal();
    $("end-confirm").focus();
  });

  $("end-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chatId = store.state.openChatId;
    withButton($("end-confirm"), async () => {
      const error = await actions.end(chatId);
      if (error) $("end-error").textContent = error;
      else $("end-dialog").close();
    });
  });
}

function mountDoNotContact({ store, actions }) {
  $("dnc-button").addEventListener("click", () => {
    $("dnc-error").textContent = "";
    $("dnc-dialog").showModal();
    $("dnc-confirm").focus();
  });

  $("dnc-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chatId = store.state.openChatId;
    withButton($("dnc-confirm"), async () => {
      const error = await actions.doNotContact(chatId);
      if (error) $("dnc-error").textContent = error;
      else $("dnc-dialog").close();
    });
  });
}

function mountOutbound({ store, actions }) {
  const { state } = store;

  function updateCounter() {
    const info = countSegments($("outbound-body").value);
    $("outbound-counter").textContent = `${info.chars.toLocaleString("en-US")} / 1,600 · ${info.segments} segment${info.segments === 1 ? "" : "s"} · ${info.encoding}`;
    $("outbound-counter").classList.toggle("over", info.chars > MAX_BODY_CHARS);
  }

  function open() {
    $("outbound-from").replaceChildren(
      ...state.outboundNumbers.map((n) => h("option", { value: String(n.id) }, n.label ? `${n.number} — ${n.label}` : n.number)),
    );
    const optin = optinShortcut(state.shortcuts);
    $("optin-suggestion").hidden = !optin;
    if (optin) $("optin-keyword").textContent = `/${optin.keyword}`;
    const body = $("outbound-body");
    if (!body.value && optin) body.value = optin.text; // the opt-in message is suggested first (SPEC S9)
    updateCounter();
    $("outbound-error").textContent = state.outboundNumbers.length ? "" : "None of your queues has an outbound number.";
    $("outbound-submit").disabled = !state.outboundNumbers.length;
    $("outbound-dialog").showModal();
    $("outbound-number").focus();
  }

  $("outbound-body").addEventListener("input", updateCounter);
  $("optin-use").addEventListener("click", () => {
    const optin = optinShortcut(state.shortcuts);
    if (optin) $("outbound-body").value = optin.text;
    updateCounter();
    $("outbound-body").focus();
  });
  $("new-outbound").addEventListener("click", open);
  document.querySelector("[data-open-outbound]").addEventListener("click", open);

  $("outbound-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const number = $("outbound-number").value.trim().replace(/[\s().-]/g, "");
    const body = $("outbound-body").value;
    if (countSegments(body).chars > MAX_BODY_CHARS) {
      $("outbound-error").textContent = "The first message is over 1,600 characters.";
      return;
    }
    $("outbound-error").textContent = "";
    withButton($("outbound-submit"), async () => {
      const { chat, error } = await actions.outbound(number, Number($("outbound-from").value), body);
      if (error) {
        $("outbound-error").textContent = error;
        return;
      }
      $("outbound-dialog").close();
      $("outbound-form").reset();
      actions.openChat(chat.id);
    });
  });
}

export function mountDialogs({ store, actions }) {
  for (const dialog of document.querySelectorAll("dialog")) {
    dialog.addEventListener("click", (ev) => {
      if (ev.target.closest("[data-close]")) dialog.close();
    });
  }
  mountTransfer({ store, actions });
  mountEnd({ store, actions });
  mountDoNotContact({ store, actions });
  mountOutbound({ store, actions });
}
