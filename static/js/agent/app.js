// The agent adapter (/agent/): the store (store.js) holds the state and applies every event; the
// views (sidebar.js, conversation.js, composer.js, dialogs.js, calls.js) draw from it; this module
// wires them: the websocket's events into the store, the page's actions through the REST API
// (/apps/api/v1/agent/…) and their answers into the store, and the store's effects (a chime, a
// resync, a read mark…) back into actions. After every (re)connection the page reloads GET state
// and the open transcript; messages are keyed by id, so nothing is missed or shown twice.
import { api, ApiError } from "./api.js";
import { AgentSocket } from "./socket.js";
import { Notifier } from "./notify.js";
import { mountCalls } from "./calls.js";
import { createStore } from "./store.js";
import { mountSidebar } from "./sidebar.js";
import { mountConversation, showContactError } from "./conversation.js";
import { mountComposer } from "./composer.js";
import { mountDialogs } from "./dialogs.js";
import { $, h, FINISH_LABEL } from "./render.js";

const root = $("app");
const me = Number(root.dataset.agentId);
const store = createStore({ me, name: root.dataset.agentName });
const { state } = store;
const notifier = new Notifier(document.title);

// ---------------------------------------------------------------------------------------------
// Small utilities

function toast(text, kind = "info") {
  const el = h("div", { class: `toast toast-${kind}` }, text);
  $("toasts").append(el);
  setTimeout(() => el.classList.add("toast-out"), 3800);
  setTimeout(() => el.remove(), 4300);
}

function errorText(err) {
  return err instanceof ApiError ? err.message : "Something went wrong. Try again.";
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** Runs `request`; null when it worked, else the sentence to show. */
async function refusal(request) {
  try {
    await request();
    return null;
  } catch (err) {
    return errorText(err);
  }
}

// ---------------------------------------------------------------------------------------------
// Loading state (first load and after every reconnect)

let resyncRunning = null;
let resyncAgain = null; // asked for while one ran: run once more after it, {transcript}

async function resync({ transcript = true } = {}) {
  if (resyncRunning) {
    resyncAgain = { transcript: Boolean(resyncAgain?.transcript || transcript) };
    return resyncRunning;
  }
  resyncRunning = (async () => {
    try {
      const asked = store.snapshot();
      const data = await api.state();
      // Chats came or went while this answer travelled: it may be older; ask once more.
      if (asked.listVersion !== state.listVersion && !resyncAgain) resyncAgain = { transcript: false };
      store.apply({ type: "state.loaded", data, asked });
      if (transcript && state.openChatId) await loadTranscript(state.openChatId);
    } catch (err) {
      if (!(err instanceof ApiError && err.code === "network")) toast(errorText(err), "error");
    } finally {
      resyncRunning = null;
    }
    if (resyncAgain) {
      const again = resyncAgain;
      resyncAgain = null;
      await resync(again);
    }
  })();
  return resyncRunning;
}

const refreshStats = debounce(async () => {
  try {
    store.apply({ type: "stats.loaded", stats: await api.stats() });
  } catch {
    /* the next refresh tries again */
  }
}, 500);

// ---------------------------------------------------------------------------------------------
// The open chat

let mediaChecks = 0;
let mediaTimer = null;
function schedulePendingMediaCheck() {
  clearTimeout(mediaTimer);
  if (!state.transcript.pendingMedia()) {
    mediaChecks = 0;
    return;
  }
  if (mediaChecks >= 15) return;
  mediaChecks += 1;
  const chatId = state.openChatId;
  mediaTimer = setTimeout(() => state.openChatId === chatId && loadTranscript(chatId), 2000);
}

async function loadTranscript(chatId) {
  try {
    const data = await api.messages(chatId);
    // Merged by id into what events brought meanwhile: a message is never shown twice, and a
    // status an event already moved forward is not taken back by this (possibly older) answer.
    store.apply({ type: "transcript.loaded", chatId, messages: data.messages });
    if (state.openChatId === chatId) schedulePendingMediaCheck();
  } catch (err) {
    if (err.status === 404) store.apply({ type: "chat.gone", chatId });
    else toast(errorText(err), "error");
  }
}

const transcriptRefreshSoon = debounce((chatId) => {
  if (state.openChatId === chatId) loadTranscript(chatId);
}, 300);

async function markRead(chatId) {
  if (!state.chats.has(chatId) || document.hidden) return;
  store.apply({ type: "chat.read", chatId });
  try {
    await api.read(chatId);
  } catch {
    /* stays unread on the server; the next open marks it */
  }
}
const markReadSoon = debounce(markRead, 300);

async function loadContact(chatId) {
  try {
    store.apply({ type: "contact.loaded", chatId, contact: await api.contact(chatId) });
  } catch (err) {
    if (state.openChatId === chatId) showContactError(errorText(err));
  }
}

// ---------------------------------------------------------------------------------------------
// What the agent does (the views call these)

const actions = {
  async openChat(chatId) {
    if (state.openChatId !== chatId) mediaChecks = 0;
    store.apply({ type: "chat.opened", chatId });
    $("composer-input").focus();
    await loadTranscript(chatId);
    markRead(chatId);
    loadContact(chatId);
  },

  async setStatus(status) {
    store.apply({ type: "status.asked", status });
    let agent = null;
    try {
      agent = await api.setStatus(status);
    } catch (err) {
      toast(errorText(err), "error");
    }
    store.apply({ type: "status.answered", status, agent });
  },

  async acceptOffer(chatId, button) {
    button.disabled = true;
    store.apply({ type: "chat.claiming", chatId });
    try {
      const chat = await api.accept(chatId);
      store.apply({ type: "chat.taken", chat });
      actions.openChat(chat.id);
    } catch (err) {
      if (err.code === "taken" || err.status === 404) store.apply({ type: "offer.gone", chatId });
      else button.disabled = false;
      toast(errorText(err), "error");
    }
  },

  send: (chatId, body) =>
    refusal(async () => store.apply({ type: "message.sent", chatId, message: await api.send(chatId, body) })),

  chooseContact: (chatId, choice) =>
    refusal(async () => {
      store.apply({ type: "contact.loaded", chatId, contact: await api.chooseContact(chatId, choice) });
      toast("Contact saved.");
    }),

  async transferTargets() {
    try {
      return { targets: await api.transferTargets() };
    } catch (err) {
      return { error: errorText(err) };
    }
  },

  transfer: (chatId, target, label) =>
    refusal(async () => {
      await api.transfer(chatId, target);
      store.apply({ type: "chat.gone", chatId });
      toast(`Chat transferred to ${label}.`);
    }),

  end: (chatId) =>
    refusal(async () => {
      const chat = state.chats.get(chatId);
      await api.end(chatId);
      store.apply({ type: "chat.gone", chatId });
      refreshStats();
      toast(`Chat with ${chat ? chat.consumer_number : "the consumer"} ended.`);
    }),

  doNotContact: (chatId) =>
    refusal(async () => {
      const chat = state.chats.get(chatId);
      await api.doNotContact(chatId);
      store.apply({ type: "chat.gone", chatId });
      refreshStats();
      toast(`${chat ? chat.consumer_number : "The consumer"} will not be texted from this number any more.`);
    }),

  async outbound(number, portalNumberId, body) {
    try {
      const chat = await api.outbound(number, portalNumberId, body);
      store.apply({ type: "chat.taken", chat });
      return { chat };
    } catch (err) {
      return { error: errorText(err) };
    }
  },
};

// ---------------------------------------------------------------------------------------------
// The views, and what the store asks the page to do

// The agent's calls (SPEC B1–B3): cards above the chats, the open call in the middle column.
const calls = mountCalls({ store, me, toast, errorText });
const views = [
  mountSidebar({ store, actions }),
  mountConversation({ store, actions, me }),
  mountComposer({ store, actions }),
  calls.render,
];
mountDialogs({ store, actions });

const EFFECTS = {
  ...calls.effects,
  signal: () => notifier.signal(),
  toast: ({ text }) => toast(text),
  resync: ({ transcript }) => resync({ transcript }),
  markRead: ({ chatId, soon }) => (soon ? markReadSoon(chatId) : markRead(chatId)),
  refreshTranscript: ({ chatId }) => transcriptRefreshSoon(chatId),
  loadContact: ({ chatId }) => loadContact(chatId),
  refreshStats: () => refreshStats(),
  chatEnded: ({ chat, reason }) => toast(`Chat with ${chat.consumer_number} ended: ${FINISH_LABEL[reason] || reason}.`),
  chatDismissed: ({ chat }) => toast(`Chat with ${chat.consumer_number} was dismissed (inactive).`),
};

store.subscribe(({ topics, effects }) => {
  for (const render of views) render(topics);
  for (const effect of effects) EFFECTS[effect.type]?.(effect);
});

// ---------------------------------------------------------------------------------------------
// The websocket

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  paused: "Disconnected",
  refused: "Signed out",
};

function setConnection(status) {
  const el = $("connection");
  el.dataset.state = status;
  el.textContent = CONNECTION_TEXT[status] || status;
}

const socket = new AgentSocket({
  onEvent: (event) => store.apply(event),
  onResync: () => {
    resync();
    calls.resync();
  },
  onStatus: setConnection,
  onRefused: (code) => {
    setConnection("refused");
    if (code === 4401) {
      window.location.assign(`/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`);
      return;
    }
    // No longer an agent: the reloaded page says so (once; never a reload loop).
    const last = Number(sessionStorage.getItem("tern.agent.refusedAt") || 0);
    if (Date.now() - last > 30_000) {
      sessionStorage.setItem("tern.agent.refusedAt", String(Date.now()));
      window.location.reload();
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Mute toggle, keyboard, start-up

function renderMute() {
  const button = $("mute");
  button.setAttribute("aria-pressed", notifier.muted ? "true" : "false");
  button.querySelector(".mute-label").textContent = notifier.muted ? "Sound off" : "Sound on";
  button.title = notifier.muted
    ? "Muted: no sound for new chats and messages (the tab title still counts them)"
    : "A sound for new chats and messages while this tab is hidden";
}
$("mute").addEventListener("click", () => {
  notifier.setMuted(!notifier.muted);
  renderMute();
});
renderMute();

// Alt+↑ / Alt+↓ move between chats from anywhere.
document.addEventListener("keydown", (ev) => {
  if (!ev.altKey || (ev.key !== "ArrowDown" && ev.key !== "ArrowUp")) return;
  const ids = [...$("chat-list").querySelectorAll(".chat-item")].map((b) => Number(b.dataset.chatId));
  if (!ids.length) return;
  ev.preventDefault();
  const index = ids.indexOf(state.openChatId);
  const next = ids[(index + (ev.key === "ArrowDown" ? 1 : -1) + ids.length) % ids.length] ?? ids[0];
  actions.openChat(next);
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.openChatId) markRead(state.openChatId);
});
window.addEventListener("online", () => socket.kick());
setInterval(refreshStats, 60_000);

resync({ transcript: false });
calls.resync();
socket.connect();

// A small handle for the browser tests and for debugging from the console.
window.tern = { state, store, socket, resync };
