// The open chat in the middle column (head, transcript) and its CRM panel on the right, drawn
// from the store. The composer is composer.js.
import { $, h, formatDate, formatTime, FINISH_LABEL, START_LABEL } from "./render.js";
import { renderTranscript } from "./transcript.js";

const NO_CONTACT = "Open a chat to see its contact and earlier chats.";

/** mountConversation({store, actions, me}) → render(topics). */
export function mountConversation({ store, actions, me }) {
  const { state } = store;
  let shownChatId = null; // the chat whose transcript and panel the DOM holds

  function renderOpen() {
    if (shownChatId === state.openChatId) return;
    shownChatId = state.openChatId;
    $("transcript").replaceChildren();
    if (state.openChatId) {
      $("crm-body").replaceChildren(h("p", { class: "empty" }, "Loading contact…"));
      $("chat-view").hidden = false;
    } else {
      $("crm-body").replaceChildren(h("p", { class: "empty" }, NO_CONTACT));
      $("chat-view").hidden = true;
    }
  }

  function renderHead() {
    const chat = store.openChat();
    if (!chat) return;
    $("chat-title").textContent = chat.consumer_number;
    $("chat-meta").textContent = [
      chat.queue_name || store.queueName(chat.queue_id) || null,
      START_LABEL[chat.start_type] || null,
      chat.assigned_at ? `since ${formatTime(chat.assigned_at)}` : null,
      chat.portal_number ? `on ${chat.portal_number}` : null,
    ].filter(Boolean).join(" · ");
  }

  function contactChoice(data, chatId) {
    const form = h("form", { class: "crm-choice", id: "crm-choice" },
      h("p", { class: "crm-note" }, `${data.matches.length} contacts share this number. Pick the right one, or create a new contact.`),
      ...data.matches.map((c, i) =>
        h("label", { class: "choice" },
          h("input", { type: "radio", name: "contact", value: String(c.id), checked: i === 0 }),
          h("span", {}, h("strong", {}, c.name || "No name"), h("small", {}, [c.email, `contact #${c.id}`].filter(Boolean).join(" · "))),
        ),
      ),
      h("label", { class: "choice" },
        h("input", { type: "radio", name: "contact", value: "new" }),
        h("span", {}, h("strong", {}, "New contact")),
      ),
      h("input", { type: "text", name: "new_name", class: "crm-new-name", placeholder: "Name of the new contact", "aria-label": "Name of the new contact", maxlength: 120 }),
      h("p", { class: "form-error", role: "alert" }),
      h("button", { type: "submit", class: "btn btn-primary btn-small" }, "Save contact"),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const choice = new FormData(form);
      const picked = choice.get("contact");
      const payload = picked === "new" ? { new_name: String(choice.get("new_name") || "").trim() } : { contact_id: Number(picked) };
      const error = await actions.chooseContact(chatId, payload);
      if (error) form.querySelector(".form-error").textContent = error;
    });
    return form;
  }

  // Where the contact is, for their quiet hours (SPEC R1): empty lets the number's area code decide.
  const US_ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", "America/Puerto_Rico"];

  function placeForm(c) {
    const zones = c.time_zone && !US_ZONES.includes(c.time_zone) ? [...US_ZONES, c.time_zone] : US_ZONES;
    const zone = h("select", { name: "time_zone", class: "contact-zone", "aria-label": "The contact's time zone" },
      h("option", { value: "" }, "Time zone: from the number"),
      ...zones.map((z) => h("option", { value: z, selected: z === c.time_zone }, z.replace("America/", "").replace("Pacific/", "").replace("_", " "))),
    );
    const state = h("input", { name: "state", class: "contact-state", maxlength: 2, size: 3, value: c.state || "", placeholder: "State", "aria-label": "The contact's US state (two letters)" });
    const error = h("p", { class: "form-error", role: "alert" });
    const save = async () => {
      const result = await actions.chooseContact(store.state.openChatId, { time_zone: zone.value, state: state.value.trim().toUpperCase() });
      error.textContent = result || "";
    };
    zone.addEventListener("change", save);
    state.addEventListener("change", save);
    return h("div", { class: "contact-place", title: "Where the contact is: decides their quiet hours" }, zone, state, error);
  }

  function contactCard(c) {
    const chat = store.openChat();
    const initial = (c.name || "").trim().slice(0, 1).toUpperCase();
    return h("div", { class: "contact-card" },
      h("span", { class: `avatar avatar-lg${initial ? "" : " avatar-anon"}`, "aria-hidden": "true" }, initial || "?"),
      h("div", { class: "contact-lines" },
        h("p", { class: "contact-name" }, c.name || "No name on file"),
        h("p", { class: "contact-sub" }, chat ? chat.consumer_number : c.label),
        h("p", { class: "contact-sub" }, c.email || "No email on file"),
        placeForm(c),
      ),
    );
  }

  function earlierChats(data) {
    if (!data.earlier_chats.length) return h("p", { class: "empty" }, "First conversation with this number.");
    return h("ul", { class: "earlier" },
      ...data.earlier_chats.map((c) =>
        h("li", {},
          h("span", { class: "e-date" }, formatDate(c.created_at)),
          h("span", { class: "e-queue" }, c.queue || "—"),
          h("span", { class: "e-reason" }, FINISH_LABEL[c.finish_reason] || c.finish_reason || ""),
        ),
      ),
    );
  }

  function consentHistory(data) {
    const rows = data.consent || [];
    if (!rows.length) return h("p", { class: "empty" }, "No opt-out or opt-in recorded.");
    return h("ul", { class: "earlier consent" },
      ...rows.map((c) =>
        h("li", {},
          h("span", { class: "e-date" }, formatDate(c.at)),
          h("span", { class: "e-queue" }, `${c.kind_label} · ${c.portal_number}`),
          h("span", { class: "e-reason" }, c.by ? `${c.source_label}: ${c.by}` : c.source_label),
        ),
      ),
    );
  }

  function renderContact() {
    const data = state.contact;
    if (!data) return;
    let top;
    if (data.needs_choice) top = contactChoice(data, state.openChatId);
    else if (data.contact) top = contactCard(data.contact);
    else top = h("p", { class: "empty" }, "No CRM contact yet.");
    $("crm-body").replaceChildren(
      top, h("h3", {}, "Earlier chats"), earlierChats(data), h("h3", {}, "Consent"), consentHistory(data),
    );
  }

  return (topics) => {
    // The middle column holds the open chat, or the open call (calls.js), or says neither is open.
    if (topics.has("open") || topics.has("call")) $("no-chat").hidden = Boolean(state.openChatId || state.calls.openId);
    if (topics.has("open")) renderOpen();
    if (!state.openChatId) return;
    if (topics.has("open") || topics.has("head")) renderHead();
    if (topics.has("open") || topics.has("transcript")) renderTranscript($("transcript"), state.transcript, { me });
    if (topics.has("contact")) renderContact();
  };
}

/** The CRM panel's error when the contact could not be loaded. */
export function showContactError(text) {
  $("crm-body").replaceChildren(h("p", { class: "form-error" }, text));
}
