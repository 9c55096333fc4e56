// The adapter's top bar and left column, drawn from the store: the status switch, my chats, the
// offers (manual answer), my queues with what waits in each, and Your Stats vs Team Average.
import { patchChildren } from "../patch.js";
import { $, h, formatClock, formatDuration, since } from "./render.js";

function waitingLabel(chat) {
  const consumerAt = chat.last_consumer_message_at ? new Date(chat.last_consumer_message_at).getTime() : 0;
  const agentAt = chat.last_agent_message_at ? new Date(chat.last_agent_message_at).getTime() : 0;
  if (consumerAt && consumerAt > agentAt) {
    const seconds = since(chat.last_consumer_message_at);
    return { text: `Waiting ${formatClock(seconds)}`, waiting: true, seconds };
  }
  return { text: `In chat ${formatClock(since(chat.assigned_at))}`, waiting: false, seconds: 0 };
}

/** mountSidebar({store, actions}) → render(topics), to subscribe to the store. */
export function mountSidebar({ store, actions }) {
  const { state } = store;
  const root = $("app");

  function renderStatus() {
    const shown = state.statusPending || state.agent.status;
    for (const input of document.querySelectorAll('#status-switch input[name="status"]')) {
      input.checked = input.value === shown;
    }
    root.dataset.status = state.agent.status; // what the server confirmed
  }

  function chatItem(chat) {
    const wait = waitingLabel(chat);
    const active = chat.id === state.openChatId;
    const unread = active && !document.hidden ? 0 : chat.unread || 0;
    return h("li", { dataset: { key: chat.id } },
      h("button", {
        type: "button",
        class: `chat-item${active ? " active" : ""}${unread ? " unread" : ""}`,
        dataset: { chatId: chat.id },
        "aria-current": active ? "true" : null,
        "aria-label": `${chat.consumer_number}, ${chat.queue_name || "no queue"}${unread ? `, ${unread} unread` : ""}`,
        onclick: () => actions.openChat(chat.id),
      },
        h("span", { class: "ci-top" },
          h("span", { class: "ci-number" }, chat.consumer_number),
          unread ? h("span", { class: "badge", title: `${unread} unread` }, String(unread)) : null,
        ),
        h("span", { class: "ci-mid" },
          h("span", { class: "ci-queue" }, chat.queue_name || (chat.start_type === "outbound" ? "Outbound" : "—")),
          chat.chat_type === "outbound_sms" ? h("span", { class: "tag" }, "Outbound") : null,
          chat.start_type === "deflection" ? h("span", { class: "tag", title: "The caller chose to continue by text while waiting on the phone" }, "From a call") : null,
          h("span", { class: `ci-wait${wait.waiting ? " waiting" : ""}${wait.seconds > 120 ? " late" : ""}`, dataset: { tick: "chat", chatId: chat.id } }, wait.text),
        ),
        h("span", { class: "ci-preview" }, chat.last_message || ""),
      ),
    );
  }

  function renderChatList() {
    const list = $("chat-list");
    const chats = [...state.chats.values()].sort((a, b) => new Date(a.assigned_at) - new Date(b.assigned_at) || a.id - b.id);
    patchChildren(list, chats.map(chatItem));
    $("chat-count").textContent = String(chats.length);
    $("no-chats").hidden = chats.length > 0;
  }

  function renderOffers() {
    const offers = [...state.offers.values()].sort((a, b) => new Date(a.queued_at) - new Date(b.queued_at));
    $("offers-section").hidden = offers.length === 0;
    $("offer-count").textContent = offers.length ? String(offers.length) : "";
    patchChildren(
      $("offers"),
      offers.map((offer) =>
        h("li", { class: "offer", dataset: { offerId: offer.id, key: offer.id } },
          h("div", { class: "offer-main" },
            h("span", { class: "ci-number" }, offer.consumer_number),
            h("span", { class: "offer-meta" },
              offer.queue_name || store.queueName(offer.queue_id) || "Queue",
              " · ",
              h("span", { dataset: { tick: "offer", since: offer.queued_at || offer.created_at } }, `waiting ${formatClock(since(offer.queued_at || offer.created_at))}`),
            ),
          ),
          h("button", { type: "button", class: "btn btn-primary btn-small", onclick: (ev) => actions.acceptOffer(offer.id, ev.currentTarget) }, "Accept"),
        ),
      ),
    );
  }

  function renderQueues() {
    const list = $("queues");
    list.replaceChildren(
      ...state.queues.map((q) => {
        const waiting = store.waitingIn(q.id);
        return h("li", { class: waiting ? "has-waiting" : "" },
          h("span", { class: "q-name" }, q.name),
          h("span", { class: "q-waiting", title: "Chats waiting" }, waiting ? `${waiting} waiting` : "none waiting"),
        );
      }),
    );
    if (!state.queues.length) list.append(h("li", { class: "empty" }, "You are not in any queue."));
  }

  function renderStats() {
    const s = state.stats;
    if (!s) return;
    $("stat-you-answered").textContent = String(s.you.answered);
    $("stat-team-answered").textContent = String(s.team.answered);
    $("stat-you-duration").textContent = formatDuration(s.you.average_duration_seconds);
    $("stat-team-duration").textContent = formatDuration(s.team.average_duration_seconds);
  }

  $("status-switch").addEventListener("change", (ev) => actions.setStatus(ev.target.value));

  $("chat-list").addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
    const items = [...$("chat-list").querySelectorAll(".chat-item")];
    const index = items.indexOf(document.activeElement);
    if (index < 0) return;
    ev.preventDefault();
    items[(index + (ev.key === "ArrowDown" ? 1 : -1) + items.length) % items.length].focus();
  });

  // Live clocks in the list and the offers.
  setInterval(() => {
    for (const el of document.querySelectorAll("[data-tick]")) {
      if (el.dataset.tick === "offer") {
        el.textContent = `waiting ${formatClock(since(el.dataset.since))}`;
        continue;
      }
      const chat = state.chats.get(Number(el.dataset.chatId));
      if (!chat) continue;
      const wait = waitingLabel(chat);
      el.textContent = wait.text;
      el.classList.toggle("waiting", wait.waiting);
      el.classList.toggle("late", wait.seconds > 120);
    }
  }, 1000);

  const VIEWS = { status: renderStatus, chats: renderChatList, open: renderChatList, offers: renderOffers, queues: renderQueues, stats: renderStats };
  return (topics) => {
    const done = new Set();
    for (const topic of topics) {
      const view = VIEWS[topic];
      if (view && !done.has(view)) {
        done.add(view);
        view();
      }
    }
  };
}
