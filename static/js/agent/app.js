// The agent adapter (/agent/): state loaded over REST, kept live by /ws/agent/ events, actions
// through the REST API. After every (re)connection the page reloads GET state and the open
// transcript; messages are keyed by id, so nothing is missed or shown twice. The agent's calls
// (wait-time SMS banner, in-call SMS, app links) live in calls.js and follow the same rules.
import { api, ApiError } from "./api.js";
import { AgentSocket } from "./socket.js";
import { countSegments, MAX_BODY_CHARS } from "./segments.js";
import { Notifier } from "./notify.js";
import { createCalls } from "./calls.js";
import {
  $, h, formatTime, formatDate, formatClock, formatDuration, syncTranscript, messageItem,
  STATUS_RANK, FINISH_LABEL, START_LABEL,
} from "./render.js";

const root = $("app");
const me = Number(root.dataset.agentId);
const myName = root.dataset.agentName;

const state = {
  agent: { id: me, name: myName, status: "" },
  statusPending: "", // a status the agent picked that the server has not confirmed yet
  statusVersion: 0,
  readMarks: new Map(), // chat id -> how many times this page marked it read
  listVersion: 0, // bumped whenever an event or an action adds or removes a chat or an offer
  unreadIds: new Map(), // chat id -> ids of consumer texts counted unread from websocket events
  chats: new Map(), // my assigned chats, by id
  versions: new Map(), // chat id -> the newest version heard of it (events, REST rows)
  waiting: new Map(), // chat id -> {queueId, queued, version, epoch}: chats of my queues, for the counts
  waitingEpoch: 0, // counts queue.chat events, to tell which came after a GET state was asked
  offers: new Map(), // manual-answer chats offered to me, by id
  queues: [],
  outboundNumbers: [],
  shortcuts: [],
  stats: null,
  openChatId: null,
  transcript: new Map(), // messages of the open chat, by id
  outboundIndex: new Map(), // outbound_id -> message id (open chat)
  lateStatus: new Map(), // outbound_id -> status event that arrived before its message
  drafts: new Map(), // chat id -> unsent text
  contact: null,
  ownActions: new Set(), // chat ids the agent just accepted or started (no chime for those)
};

const notifier = new Notifier(document.title);
let socket;
// The agent's calls (SPEC B1–B3): cards above the chats, the open call in the middle column.
const calls = createCalls({
  me,
  toast: (text, kind) => toast(text, kind),
  errorText: (err) => errorText(err),
  notifier,
  leaveChat: () => leaveChat(),
  chatOpen: () => state.openChatId !== null,
});

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

function rank(status) {
  return STATUS_RANK[status] ?? -1;
}

function since(iso) {
  return iso ? (Date.now() - new Date(iso).getTime()) / 1000 : 0;
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
      const statusVersion = state.statusVersion;
      const readMarks = new Map(state.readMarks);
      const listVersion = state.listVersion;
      const waitingEpoch = state.waitingEpoch;
      const data = await api.state();
      // Chats came or went while this answer travelled: it may be older; ask once more.
      if (listVersion !== state.listVersion && !resyncAgain) resyncAgain = { transcript: false };
      // A status change made while this answer was on its way wins over it.
      if (statusVersion !== state.statusVersion || state.statusPending) data.agent.status = state.agent.status;
      for (const chat of data.chats || []) mergeNewerLocal(chat, readMarks);
      applyState(data, { waitingEpoch });
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

/** A chat row from GET state may be older than what the websocket already brought (events
 *  that arrived while the answer travelled): keep the newer local knowledge. */
function mergeNewerLocal(chat, readMarksAtRequest) {
  const local = state.chats.get(chat.id);
  if (local && (local.version ?? -1) > (chat.version ?? -1)) {
    // An event newer than the answer changed the chat itself (still mine, or it would be gone).
    for (const field of ["status", "agent_id", "queue_id", "queue_name", "crm_needs_choice", "version"]) chat[field] = local[field];
  }
  const counted = chat.last_message_id || 0; // the newest message the answer knew of
  if (local && local.eventMessageId > counted) {
    chat.last_message = local.last_message;
    for (const field of ["last_consumer_message_at", "last_agent_message_at"]) {
      if (local[field] && (!chat[field] || new Date(local[field]) > new Date(chat[field]))) chat[field] = local[field];
    }
  }
  if (local?.eventMessageId) chat.eventMessageId = local.eventMessageId;
  // Unread: a chat marked read meanwhile keeps our count; otherwise the server's count plus
  // the consumer texts the websocket brought that it had not counted yet.
  const seen = state.unreadIds.get(chat.id);
  if ((readMarksAtRequest.get(chat.id) || 0) !== (state.readMarks.get(chat.id) || 0)) {
    chat.unread = local?.unread || 0;
  } else if (seen) {
    for (const id of seen) if (id <= counted) seen.delete(id);
    chat.unread = (chat.unread || 0) + seen.size;
  }
}

function applyState(data, { waitingEpoch }) {
  state.agent = { ...state.agent, ...data.agent };
  state.queues = data.queues || [];
  mergeWaiting(state.queues, waitingEpoch);
  for (const chat of [...(data.chats || []), ...(data.offers || [])]) newerVersion(chat);
  state.outboundNumbers = data.outbound_numbers || [];
  state.shortcuts = data.shortcuts || [];
  state.stats = data.stats;
  const fresh = new Map((data.chats || []).map((c) => [c.id, c]));
  const open = fresh.get(state.openChatId);
  if (open && open.unread && !document.hidden) {
    // The agent is reading this chat: whatever the server counted is read now.
    open.unread = 0;
    markReadSoon(open.id);
  }
  state.chats = fresh;
  state.offers = new Map((data.offers || []).filter((c) => !fresh.has(c.id)).map((c) => [c.id, c]));
  renderStatus();
  renderChatList();
  renderOffers();
  renderQueues();
  renderStats();
  if (state.openChatId && !state.chats.has(state.openChatId)) closeChat();
  else if (state.openChatId) renderChatHead();
}

// ---------------------------------------------------------------------------------------------
// Websocket events

// Event payloads carry Python's str(datetime) ("2026-03-01 10:00:00+00:00"); make them ISO 8601
// like the REST answers, which every browser parses.
const TIME_FIELDS = ["created_at", "queued_at", "assigned_at", "ends_at", "ended_at", "last_consumer_message_at", "last_agent_message_at"];
function isoTimes(obj) {
  if (!obj || typeof obj !== "object") return;
  for (const field of TIME_FIELDS) {
    if (typeof obj[field] === "string") obj[field] = obj[field].replace(/^(\d{4}-\d{2}-\d{2}) /, "$1T");
  }
}

function onEvent(event) {
  isoTimes(event.chat);
  isoTimes(event.message);
  isoTimes(event.call);
  switch (event.type) {
    case "call.updated":
    case "call.banner":
    case "call.message":
      calls.onEvent(event);
      break;
    case "chat.offered":
      onOffered(event.chat);
      break;
    case "chat.updated":
      onChatUpdated(event.chat, event);
      break;
    case "queue.chat":
      onQueueChat(event);
      break;
    case "queue.chats": // several queue.chat of one moment, merged by the server
      for (const chat of event.chats) onQueueChat(chat, { render: false });
      renderQueues();
      break;
    case "message.created":
      // The SMS side of a call is the calls' (its chat is never in the chat list).
      if (!calls.onEvent(event)) onMessageCreated(event.message);
      break;
    case "message.status":
      if (!calls.onEvent(event)) onMessageStatus(event);
      break;
    default:
      break;
  }
}

function onOffered(chat) {
  if (chat.status !== "queued" || state.chats.has(chat.id)) return;
  const heard = state.waiting.get(chat.id);
  if (heard && heard.version > chat.version && !heard.queued) return; // taken or ended meanwhile
  state.listVersion += 1;
  const isNew = !state.offers.has(chat.id);
  state.offers.set(chat.id, { ...state.offers.get(chat.id), ...chat, queue_name: queueName(chat.queue_id) });
  renderOffers();
  if (isNew) notifier.signal();
}

/** Whether `chat` (an event's or a REST row) is newer than what this page heard of it; if so,
 *  remember its version. Events of two requests can arrive in either order. */
function newerVersion(chat) {
  if (typeof chat.version !== "number") return true;
  if ((state.versions.get(chat.id) ?? -1) >= chat.version) return false;
  state.versions.set(chat.id, chat.version);
  return true;
}

function onChatUpdated(chat, event) {
  if (!newerVersion(chat)) return;
  const known = state.chats.get(chat.id);
  const mineNow = chat.agent_id === me && chat.status === "assigned";
  if (Boolean(known) !== mineNow || state.offers.has(chat.id)) state.listVersion += 1;
  if (chat.status !== "queued" && state.offers.delete(chat.id)) renderOffers();
  if (mineNow) {
    const merged = { unread: 0, last_message: "", queue_name: queueName(chat.queue_id), ...known, ...chat };
    state.chats.set(chat.id, merged);
    renderChatList();
    if (!known) {
      if (!state.ownActions.has(chat.id)) notifier.signal();
      // The full row (unread count, last message, waiting time), and the messages published
      // with the assignment, before this page joined the chat's group.
      resync({ transcript: false });
    }
    if (state.openChatId === chat.id) {
      renderChatHead();
      if (known && known.crm_needs_choice !== chat.crm_needs_choice) loadContact(chat.id);
    }
    return;
  }
  if (known) {
    state.chats.delete(chat.id);
    renderChatList();
    if (state.openChatId === chat.id) {
      closeChat();
      if (chat.status === "finished" && chat.finish_reason !== "agent_ended") {
        toast(`Chat with ${known.consumer_number} ended: ${FINISH_LABEL[chat.finish_reason] || chat.finish_reason}.`);
      } else if (chat.status === "dismissed") {
        toast(`Chat with ${known.consumer_number} was dismissed (inactive).`);
      }
    }
    refreshStats();
  }
}

// Waiting counts of my queues: GET state lists the chats waiting in each (with versions), and
// every queue.chat event moves one chat; an older event or answer never undoes a newer one.
const WAITING_KEPT = 2000;

function onQueueChat(event, { render = true } = {}) {
  const local = state.waiting.get(event.chat_id);
  if (local && local.version >= event.version) return;
  state.waitingEpoch += 1;
  state.waiting.delete(event.chat_id);
  state.waiting.set(event.chat_id, {
    queueId: event.queue_id, queued: event.status === "queued", version: event.version, epoch: state.waitingEpoch,
  });
  for (const [id, entry] of state.waiting) {
    if (state.waiting.size <= WAITING_KEPT) break;
    if (!entry.queued) state.waiting.delete(id);
  }
  // An offer someone else took, or that ended, is gone.
  if (event.status !== "queued" && state.offers.delete(event.chat_id)) {
    state.listVersion += 1;
    renderOffers();
  }
  if (render) renderQueues();
}

function mergeWaiting(queues, epochAtRequest) {
  const listed = new Set();
  for (const q of queues) {
    for (const [id, version] of q.waiting_chats || []) {
      listed.add(id);
      const local = state.waiting.get(id);
      if (!local || local.version < version) state.waiting.set(id, { queueId: q.id, queued: true, version, epoch: 0 });
    }
  }
  // Not waiting any more by the answer, and no event about it came after the question.
  for (const [id, entry] of state.waiting) {
    if (entry.queued && !listed.has(id) && entry.epoch <= epochAtRequest) entry.queued = false;
  }
}

function waitingIn(queueId) {
  let count = 0;
  for (const entry of state.waiting.values()) if (entry.queued && entry.queueId === queueId) count += 1;
  return count;
}

function onMessageCreated(message) {
  const chat = state.chats.get(message.chat_id);
  if (!chat) return;
  const isOpen = state.openChatId === message.chat_id;
  const fromConsumer = message.author === "consumer";
  chat.last_message = message.body || (message.media && message.media.length ? "Attachment" : "");
  chat.eventMessageId = Math.max(chat.eventMessageId || 0, message.id);
  if (fromConsumer) chat.last_consumer_message_at = message.created_at;
  else if (message.author === "agent") chat.last_agent_message_at = message.created_at;
  const countUnread = () => {
    const ids = state.unreadIds.get(chat.id) || new Set();
    state.unreadIds.set(chat.id, ids);
    if (!ids.has(message.id)) {
      ids.add(message.id);
      chat.unread = (chat.unread || 0) + 1;
    }
  };
  if (isOpen) {
    addMessages([message]);
    if (fromConsumer) {
      // The event does not carry the stored media yet: fetch the transcript to show them.
      transcriptRefreshSoon(message.chat_id);
      if (document.hidden) countUnread();
      else markReadSoon(message.chat_id);
    }
  } else if (fromConsumer) {
    countUnread();
  }
  if (fromConsumer) notifier.signal();
  renderChatList();
}

function onMessageStatus(event) {
  const id = state.outboundIndex.get(event.outbound_id);
  const message = id !== undefined ? state.transcript.get(id) : null;
  if (!message) {
    // Its message is not here yet (the status can overtake it) or is in a chat not open now.
    const earlier = state.lateStatus.get(event.outbound_id);
    if (!earlier || rank(event.status) > rank(earlier.status)) {
      state.lateStatus.delete(event.outbound_id);
      state.lateStatus.set(event.outbound_id, event);
      if (state.lateStatus.size > 500) state.lateStatus.delete(state.lateStatus.keys().next().value);
    }
    return;
  }
  if (rank(event.status) <= rank(message.status)) return;
  message.status = event.status;
  if (event.error_code) message.error_code = event.error_code;
  if (event.error_message) message.error_message = event.error_message;
  renderTranscript();
}

// ---------------------------------------------------------------------------------------------
// Status switch, connection, stats, queues

function renderStatus() {
  const shown = state.statusPending || state.agent.status;
  for (const input of document.querySelectorAll('#status-switch input[name="status"]')) {
    input.checked = input.value === shown;
  }
  root.dataset.status = state.agent.status; // what the server confirmed
}

$("status-switch").addEventListener("change", async (ev) => {
  const wanted = ev.target.value;
  state.statusVersion += 1;
  state.statusPending = wanted;
  try {
    const agent = await api.setStatus(wanted);
    if (state.statusPending === wanted) state.agent = { ...state.agent, ...agent };
  } catch (err) {
    toast(errorText(err), "error");
  } finally {
    if (state.statusPending === wanted) state.statusPending = "";
    renderStatus();
  }
});

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

function renderStats() {
  const s = state.stats;
  if (!s) return;
  $("stat-you-answered").textContent = String(s.you.answered);
  $("stat-team-answered").textContent = String(s.team.answered);
  $("stat-you-duration").textContent = formatDuration(s.you.average_duration_seconds);
  $("stat-team-duration").textContent = formatDuration(s.team.average_duration_seconds);
}

const refreshStats = debounce(async () => {
  try {
    state.stats = await api.stats();
    renderStats();
  } catch {
    /* the next refresh tries again */
  }
}, 500);

/** A queue's own name ("Billing"), as the chat rows carry it; the Queues list shows the path. */
function queueName(queueId) {
  const q = state.queues.find((x) => x.id === queueId);
  return q ? q.name.split(" › ").pop() : "";
}

function renderQueues() {
  const list = $("queues");
  list.replaceChildren(
    ...state.queues.map((q) => {
      const waiting = waitingIn(q.id);
      return h("li", { class: waiting ? "has-waiting" : "" },
        h("span", { class: "q-name" }, q.name),
        h("span", { class: "q-waiting", title: "Chats waiting" }, waiting ? `${waiting} waiting` : "none waiting"),
      );
    }),
  );
  if (!state.queues.length) list.append(h("li", { class: "empty" }, "You are not in any queue."));
}

// ---------------------------------------------------------------------------------------------
// Chat list and offers

function waitingLabel(chat) {
  const consumerAt = chat.last_consumer_message_at ? new Date(chat.last_consumer_message_at).getTime() : 0;
  const agentAt = chat.last_agent_message_at ? new Date(chat.last_agent_message_at).getTime() : 0;
  if (consumerAt && consumerAt > agentAt) return { text: `Waiting ${formatClock(since(chat.last_consumer_message_at))}`, waiting: true, seconds: since(chat.last_consumer_message_at) };
  return { text: `In chat ${formatClock(since(chat.assigned_at))}`, waiting: false, seconds: 0 };
}

function renderChatList() {
  const list = $("chat-list");
  const chats = [...state.chats.values()].sort((a, b) => new Date(a.assigned_at) - new Date(b.assigned_at) || a.id - b.id);
  const focusedId = document.activeElement?.closest?.("#chat-list [data-chat-id]")?.dataset.chatId;
  list.replaceChildren(
    ...chats.map((chat) => {
      const wait = waitingLabel(chat);
      const active = chat.id === state.openChatId;
      const unread = active && !document.hidden ? 0 : chat.unread || 0;
      return h("li", {},
        h("button", {
          type: "button",
          class: `chat-item${active ? " active" : ""}${unread ? " unread" : ""}`,
          dataset: { chatId: chat.id },
          "aria-current": active ? "true" : null,
          "aria-label": `${chat.consumer_number}, ${chat.queue_name || "no queue"}${unread ? `, ${unread} unread` : ""}`,
          onclick: () => openChat(chat.id),
        },
          h("span", { class: "ci-top" },
            h("span", { class: "ci-number" }, chat.consumer_number),
            unread ? h("span", { class: "badge", title: `${unread} unread` }, String(unread)) : null,
          ),
          h("span", { class: "ci-mid" },
            h("span", { class: "ci-queue" }, chat.queue_name || (chat.start_type === "outbound" ? "Outbound" : "—")),
            chat.chat_type === "outbound_sms" ? h("span", { class: "tag" }, "Outbound") : null,
            h("span", { class: `ci-wait${wait.waiting ? " waiting" : ""}${wait.seconds > 120 ? " late" : ""}`, dataset: { tick: "chat", chatId: chat.id } }, wait.text),
          ),
          h("span", { class: "ci-preview" }, chat.last_message || ""),
        ),
      );
    }),
  );
  $("chat-count").textContent = String(chats.length);
  $("no-chats").hidden = chats.length > 0;
  if (focusedId) list.querySelector(`[data-chat-id="${focusedId}"]`)?.focus();
}

$("chat-list").addEventListener("keydown", (ev) => {
  if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
  const items = [...$("chat-list").querySelectorAll(".chat-item")];
  const index = items.indexOf(document.activeElement);
  if (index < 0) return;
  ev.preventDefault();
  items[(index + (ev.key === "ArrowDown" ? 1 : -1) + items.length) % items.length].focus();
});

function renderOffers() {
  const offers = [...state.offers.values()].sort((a, b) => new Date(a.queued_at) - new Date(b.queued_at));
  $("offers-section").hidden = offers.length === 0;
  $("offer-count").textContent = offers.length ? String(offers.length) : "";
  $("offers").replaceChildren(
    ...offers.map((offer) =>
      h("li", { class: "offer", dataset: { offerId: offer.id } },
        h("div", { class: "offer-main" },
          h("span", { class: "ci-number" }, offer.consumer_number),
          h("span", { class: "offer-meta" },
            offer.queue_name || queueName(offer.queue_id) || "Queue",
            " · ",
            h("span", { dataset: { tick: "offer", since: offer.queued_at || offer.created_at } }, `waiting ${formatClock(since(offer.queued_at || offer.created_at))}`),
          ),
        ),
        h("button", { type: "button", class: "btn btn-primary btn-small", onclick: (ev) => acceptOffer(offer.id, ev.currentTarget) }, "Accept"),
      ),
    ),
  );
}

async function acceptOffer(chatId, button) {
  button.disabled = true;
  state.ownActions.add(chatId);
  try {
    const chat = await api.accept(chatId);
    state.offers.delete(chatId);
    state.chats.set(chat.id, { ...state.chats.get(chat.id), ...chat });
    state.listVersion += 1;
    renderOffers();
    renderChatList();
    openChat(chat.id);
  } catch (err) {
    if (err.code === "taken" || err.status === 404) state.offers.delete(chatId);
    renderOffers();
    toast(errorText(err), "error");
  }
}

// Live clocks in the list and the offers.
setInterval(() => {
  for (const el of document.querySelectorAll("[data-tick]")) {
    if (el.dataset.tick === "offer") {
      el.textContent = `waiting ${formatClock(since(el.dataset.since))}`;
    } else {
      const chat = state.chats.get(Number(el.dataset.chatId));
      if (!chat) continue;
      const wait = waitingLabel(chat);
      el.textContent = wait.text;
      el.classList.toggle("waiting", wait.waiting);
      el.classList.toggle("late", wait.seconds > 120);
    }
  }
}, 1000);

// ---------------------------------------------------------------------------------------------
// The open chat: header, transcript

async function openChat(chatId) {
  calls.hide();
  if (state.openChatId && state.openChatId !== chatId) state.drafts.set(state.openChatId, $("composer-input").value);
  const switching = state.openChatId !== chatId;
  state.openChatId = chatId;
  if (switching) {
    state.transcript = new Map();
    state.outboundIndex = new Map();
    $("transcript").replaceChildren();
    $("composer-input").value = state.drafts.get(chatId) || "";
    $("composer-warning").textContent = "";
    state.contact = null;
    mediaChecks = 0;
    $("crm-body").replaceChildren(h("p", { class: "empty" }, "Loading contact…"));
    closeShortcutMenu();
    updateCounter();
  }
  $("no-chat").hidden = true;
  $("chat-view").hidden = false;
  renderChatHead();
  renderChatList();
  $("composer-input").focus();
  await loadTranscript(chatId);
  markRead(chatId);
  loadContact(chatId);
}

function closeChat() {
  if (state.openChatId) state.drafts.delete(state.openChatId);
  state.openChatId = null;
  state.transcript = new Map();
  state.outboundIndex = new Map();
  state.contact = null;
  $("chat-view").hidden = true;
  $("no-chat").hidden = calls.isOpen();
  $("transcript").replaceChildren();
  $("crm-body").replaceChildren(h("p", { class: "empty" }, "Open a chat to see its contact and earlier chats."));
  renderChatList();
}

/** A call is being opened in the middle column: put the open chat away, keeping its draft. */
function leaveChat() {
  if (!state.openChatId) return;
  state.drafts.set(state.openChatId, $("composer-input").value);
  state.openChatId = null;
  state.transcript = new Map();
  state.outboundIndex = new Map();
  state.contact = null;
  closeShortcutMenu();
  $("chat-view").hidden = true;
  $("transcript").replaceChildren();
  $("crm-body").replaceChildren(h("p", { class: "empty" }, "Open a chat to see its contact and earlier chats."));
  renderChatList();
}

function renderChatHead() {
  const chat = state.chats.get(state.openChatId);
  if (!chat) return;
  $("chat-title").textContent = chat.consumer_number;
  const parts = [
    chat.queue_name || queueName(chat.queue_id) || null,
    START_LABEL[chat.start_type] || null,
    chat.assigned_at ? `since ${formatTime(chat.assigned_at)}` : null,
    chat.portal_number ? `on ${chat.portal_number}` : null,
  ].filter(Boolean);
  $("chat-meta").textContent = parts.join(" · ");
  updateOptinSuggestion();
}

async function loadTranscript(chatId) {
  try {
    const data = await api.messages(chatId);
    if (state.openChatId !== chatId) return;
    // Merged by id into what events brought meanwhile: a message is never shown twice, and a
    // status an event already moved forward is not taken back by this (possibly older) answer.
    addMessages(data.messages);
    schedulePendingMediaCheck();
  } catch (err) {
    if (err.status === 404) {
      state.chats.delete(chatId);
      closeChat();
    } else {
      toast(errorText(err), "error");
    }
  }
}

const transcriptRefreshSoon = debounce((chatId) => {
  if (state.openChatId === chatId) loadTranscript(chatId);
}, 300);

let mediaChecks = 0;
let mediaTimer = null;
function schedulePendingMediaCheck() {
  const pending = [...state.transcript.values()].some((m) => (m.media || []).some((x) => !x.url && !x.error));
  clearTimeout(mediaTimer);
  if (!pending) {
    mediaChecks = 0;
    return;
  }
  if (mediaChecks >= 15) return;
  mediaChecks += 1;
  const chatId = state.openChatId;
  mediaTimer = setTimeout(() => state.openChatId === chatId && loadTranscript(chatId), 2000);
}

function addMessages(messages) {
  for (const incoming of messages) {
    const existing = state.transcript.get(incoming.id);
    const message = { ...existing, ...incoming };
    // Statuses only move forward, whatever order the events and the fetch arrive in.
    if (existing && rank(existing.status) > rank(message.status)) {
      message.status = existing.status;
      message.error_code = existing.error_code;
      message.error_message = existing.error_message;
    }
    if (existing && existing.media && existing.media.length) {
      // An answer fetched before a picture was stored must not hide the stored one.
      const known = new Map(existing.media.map((item) => [item.id, item]));
      const fresh = incoming.media && incoming.media.length ? incoming.media : existing.media;
      message.media = fresh.map((item) => (known.get(item.id)?.url && !item.url ? known.get(item.id) : item));
    }
    if (message.outbound_id) {
      state.outboundIndex.set(message.outbound_id, message.id);
      const late = state.lateStatus.get(message.outbound_id);
      if (late) {
        state.lateStatus.delete(message.outbound_id);
        if (rank(late.status) > rank(message.status)) {
          message.status = late.status;
          message.error_code = late.error_code || message.error_code;
          message.error_message = late.error_message || message.error_message;
        }
      }
    }
    state.transcript.set(message.id, message);
  }
  renderTranscript();
}

function messageNode(m) {
  return messageItem(m, { me });
}

function renderTranscript() {
  syncTranscript($("transcript"), [...state.transcript.values()], { me, messageNode }).scroll();
}

const markReadSoon = debounce((chatId) => markRead(chatId), 300);

async function markRead(chatId) {
  const chat = state.chats.get(chatId);
  if (!chat || document.hidden) return;
  state.readMarks.set(chatId, (state.readMarks.get(chatId) || 0) + 1);
  state.unreadIds.delete(chatId);
  chat.unread = 0;
  renderChatList();
  try {
    await api.read(chatId);
  } catch {
    /* stays unread on the server; the next open marks it */
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.openChatId) markRead(state.openChatId);
});

// ---------------------------------------------------------------------------------------------
// Composer: counter, shortcuts, sending

const input = $("composer-input");

function autosize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight + 2, Math.round(window.innerHeight * 0.3))}px`;
}

function updateCounter() {
  autosize();
  const info = countSegments(input.value);
  $("char-count").textContent = info.chars.toLocaleString("en-US");
  $("segment-count").textContent = `${info.segments} segment${info.segments === 1 ? "" : "s"}`;
  $("encoding").textContent = info.encoding;
  const over = info.chars > MAX_BODY_CHARS;
  $("composer-counter").classList.toggle("over", over);
  $("composer-counter").classList.toggle("ucs2", info.encoding === "UCS-2");
  const warning = $("composer-warning");
  if (over) {
    warning.textContent = `Too long: ${(info.chars - MAX_BODY_CHARS).toLocaleString("en-US")} characters over the 1,600 limit. Shorten it to send.`;
    warning.dataset.kind = "limit";
  } else if (warning.dataset.kind === "limit") {
    warning.textContent = "";
    warning.dataset.kind = "";
  }
  $("send-button").disabled = over;
}

// The "/keyword" token being typed at the caret, if any.
function shortcutToken() {
  const caret = input.selectionStart;
  if (caret !== input.selectionEnd) return null;
  const before = input.value.slice(0, caret);
  const match = before.match(/(^|\s)\/([\w-]*)$/);
  if (!match) return null;
  return { start: caret - match[2].length - 1, end: caret, query: match[2].toLowerCase() };
}

let menu = { open: false, items: [], active: 0, token: null };

function shortcutsFor(chat) {
  const lang = chat?.language;
  const inLang = state.shortcuts.filter((s) => !lang || !s.language || s.language === lang);
  return inLang.length ? inLang : state.shortcuts;
}

function updateShortcutMenu() {
  const token = shortcutToken();
  if (!token) return closeShortcutMenu();
  const chat = state.chats.get(state.openChatId);
  const items = shortcutsFor(chat)
    .filter((s) => s.keyword.toLowerCase().startsWith(token.query) || (token.query.length > 1 && s.keyword.toLowerCase().includes(token.query)))
    .sort((a, b) => Number(b.keyword.toLowerCase().startsWith(token.query)) - Number(a.keyword.toLowerCase().startsWith(token.query)) || a.keyword.localeCompare(b.keyword))
    .slice(0, 8);
  if (!items.length) return closeShortcutMenu();
  const keepActive = menu.open && menu.items[menu.active] && items.indexOf(menu.items[menu.active]);
  menu = { open: true, items, active: keepActive > 0 ? keepActive : 0, token };
  renderShortcutMenu();
}

function renderShortcutMenu() {
  const el = $("shortcut-menu");
  el.replaceChildren(
    ...menu.items.map((s, i) =>
      h("div", {
        id: `shortcut-${i}`,
        role: "option",
        class: `shortcut${i === menu.active ? " active" : ""}`,
        "aria-selected": i === menu.active ? "true" : "false",
        onmousedown: (ev) => {
          ev.preventDefault();
          pickShortcut(i);
        },
      },
        h("span", { class: "sc-key" }, `/${s.keyword}`),
        s.category ? h("span", { class: "sc-cat" }, s.category) : null,
        h("span", { class: "sc-text" }, s.text),
      ),
    ),
  );
  el.hidden = false;
  input.setAttribute("aria-expanded", "true");
  input.setAttribute("aria-activedescendant", `shortcut-${menu.active}`);
  el.querySelector(".active")?.scrollIntoView({ block: "nearest" });
}

function closeShortcutMenu() {
  menu = { open: false, items: [], active: 0, token: null };
  $("shortcut-menu").hidden = true;
  $("shortcut-menu").replaceChildren();
  input.setAttribute("aria-expanded", "false");
  input.removeAttribute("aria-activedescendant");
}

function pickShortcut(index) {
  const shortcut = menu.items[index];
  const token = shortcutToken() || menu.token;
  if (!shortcut || !token) return closeShortcutMenu();
  const value = input.value;
  input.value = value.slice(0, token.start) + shortcut.text + value.slice(token.end);
  const caret = token.start + shortcut.text.length;
  input.setSelectionRange(caret, caret);
  closeShortcutMenu();
  updateCounter();
  input.focus();
}

input.addEventListener("input", () => {
  updateCounter();
  updateShortcutMenu();
  if (state.openChatId) state.drafts.set(state.openChatId, input.value);
});
input.addEventListener("click", updateShortcutMenu);
input.addEventListener("blur", () => setTimeout(closeShortcutMenu, 150));

input.addEventListener("keydown", (ev) => {
  if (ev.isComposing) return;
  if (menu.open) {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const step = ev.key === "ArrowDown" ? 1 : -1;
      menu.active = (menu.active + step + menu.items.length) % menu.items.length;
      renderShortcutMenu();
      return;
    }
    if (ev.key === "Enter" || ev.key === "Tab") {
      ev.preventDefault();
      pickShortcut(menu.active);
      return;
    }
    if (ev.key === "Escape") {
      ev.preventDefault();
      closeShortcutMenu();
      return;
    }
  }
  if (ev.key === "Enter" && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
});

let sending = false;
$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const chatId = state.openChatId;
  const body = input.value;
  if (!chatId || sending || !body.trim()) return;
  if (countSegments(body).chars > MAX_BODY_CHARS) return updateCounter();
  sending = true;
  $("send-button").disabled = true;
  $("composer-warning").textContent = "";
  try {
    const message = await api.send(chatId, body);
    if (state.openChatId === chatId) {
      input.value = "";
      state.drafts.delete(chatId);
      addMessages([message]);
    }
    const chat = state.chats.get(chatId);
    if (chat) {
      chat.last_message = message.body;
      chat.last_agent_message_at = message.created_at;
      renderChatList();
      updateOptinSuggestion();
    }
  } catch (err) {
    const warning = $("composer-warning");
    warning.textContent = errorText(err);
    warning.dataset.kind = "error";
  } finally {
    sending = false;
    updateCounter();
    input.focus();
  }
});

function optinShortcut(language) {
  const optins = state.shortcuts.filter((s) => s.is_opt_in);
  return optins.find((s) => s.language === language) || optins[0] || null;
}

function updateOptinSuggestion() {
  const chat = state.chats.get(state.openChatId);
  const optin = chat ? optinShortcut(chat.language) : null;
  const agentWrote = [...state.transcript.values()].some((m) => m.author === "agent") || chat?.last_agent_message_at;
  const show = Boolean(chat && optin && chat.start_type === "outbound" && !agentWrote);
  $("composer-suggestion").hidden = !show;
  if (show) $("composer-optin-keyword").textContent = `/${optin.keyword}`;
}

$("composer-optin-use").addEventListener("click", () => {
  const chat = state.chats.get(state.openChatId);
  const optin = optinShortcut(chat?.language);
  if (!optin) return;
  input.value = optin.text + (input.value ? `\n${input.value}` : "");
  updateCounter();
  input.focus();
});

// ---------------------------------------------------------------------------------------------
// CRM side panel

async function loadContact(chatId) {
  try {
    const data = await api.contact(chatId);
    if (state.openChatId !== chatId) return;
    state.contact = data;
    renderContact();
  } catch (err) {
    if (state.openChatId === chatId) $("crm-body").replaceChildren(h("p", { class: "form-error" }, errorText(err)));
  }
}

function renderContact() {
  const data = state.contact;
  const chatId = state.openChatId;
  const body = $("crm-body");
  const parts = [];
  if (data.needs_choice) {
    const form = h("form", { class: "crm-choice", id: "crm-choice" });
    form.append(
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
      try {
        state.contact = await api.chooseContact(chatId, payload);
        if (state.openChatId === chatId) renderContact();
        toast("Contact saved.");
      } catch (err) {
        form.querySelector(".form-error").textContent = errorText(err);
      }
    });
    parts.push(form);
  } else if (data.contact) {
    const c = data.contact;
    const chat = state.chats.get(chatId);
    const initial = (c.name || "").trim().slice(0, 1).toUpperCase();
    parts.push(
      h("div", { class: "contact-card" },
        h("span", { class: `avatar avatar-lg${initial ? "" : " avatar-anon"}`, "aria-hidden": "true" }, initial || "?"),
        h("div", { class: "contact-lines" },
          h("p", { class: "contact-name" }, c.name || "No name on file"),
          h("p", { class: "contact-sub" }, chat ? chat.consumer_number : c.label),
          h("p", { class: "contact-sub" }, c.email || "No email on file"),
        ),
      ),
    );
  } else {
    parts.push(h("p", { class: "empty" }, "No CRM contact yet."));
  }
  parts.push(h("h3", {}, "Earlier chats"));
  if (data.earlier_chats.length) {
    parts.push(
      h("ul", { class: "earlier" },
        ...data.earlier_chats.map((c) =>
          h("li", {},
            h("span", { class: "e-date" }, formatDate(c.created_at)),
            h("span", { class: "e-queue" }, c.queue || "—"),
            h("span", { class: "e-reason" }, FINISH_LABEL[c.finish_reason] || c.finish_reason || ""),
          ),
        ),
      ),
    );
  } else {
    parts.push(h("p", { class: "empty" }, "First conversation with this number."));
  }
  body.replaceChildren(...parts);
}

// ---------------------------------------------------------------------------------------------
// Dialogs: transfer, end, new outbound chat

for (const dialog of document.querySelectorAll("dialog")) {
  dialog.addEventListener("click", (ev) => {
    if (ev.target.closest("[data-close]")) dialog.close();
  });
}

$("transfer-button").addEventListener("click", async () => {
  const dialog = $("transfer-dialog");
  $("transfer-error").textContent = "";
  $("transfer-targets").replaceChildren(h("p", { class: "empty" }, "Loading…"));
  dialog.showModal();
  try {
    const targets = await api.transferTargets();
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
    dialog.querySelector('input[name="target"]')?.focus();
  } catch (err) {
    $("transfer-targets").replaceChildren();
    $("transfer-error").textContent = errorText(err);
  }
});

$("transfer-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const chatId = state.openChatId;
  const picked = $("transfer-form").querySelector('input[name="target"]:checked');
  if (!picked) {
    $("transfer-error").textContent = "Choose an agent or a queue.";
    return;
  }
  const [kind, id] = picked.value.split(":");
  const label = picked.closest("label").textContent;
  $("transfer-submit").disabled = true;
  try {
    await api.transfer(chatId, kind === "agent" ? { agent_id: Number(id) } : { queue_id: Number(id) });
    $("transfer-dialog").close();
    state.chats.delete(chatId);
    state.listVersion += 1;
    if (state.openChatId === chatId) closeChat();
    renderChatList();
    toast(`Chat transferred to ${label}.`);
  } catch (err) {
    $("transfer-error").textContent = errorText(err);
  } finally {
    $("transfer-submit").disabled = false;
  }
});

$("end-button").addEventListener("click", () => {
  $("end-error").textContent = "";
  $("end-dialog").showModal();
  $("end-confirm").focus();
});

$("end-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const chatId = state.openChatId;
  const chat = state.chats.get(chatId);
  $("end-confirm").disabled = true;
  try {
    await api.end(chatId);
    $("end-dialog").close();
    state.chats.delete(chatId);
    state.listVersion += 1;
    if (state.openChatId === chatId) closeChat();
    renderChatList();
    refreshStats();
    toast(`Chat with ${chat ? chat.consumer_number : "the consumer"} ended.`);
  } catch (err) {
    $("end-error").textContent = errorText(err);
  } finally {
    $("end-confirm").disabled = false;
  }
});

function openOutboundDialog() {
  const dialog = $("outbound-dialog");
  const select = $("outbound-from");
  select.replaceChildren(
    ...state.outboundNumbers.map((n) => h("option", { value: String(n.id) }, n.label ? `${n.number} — ${n.label}` : n.number)),
  );
  const optin = optinShortcut();
  $("optin-suggestion").hidden = !optin;
  if (optin) $("optin-keyword").textContent = `/${optin.keyword}`;
  const body = $("outbound-body");
  if (!body.value && optin) body.value = optin.text; // the opt-in message is suggested first (SPEC S9)
  updateOutboundCounter();
  $("outbound-error").textContent = state.outboundNumbers.length ? "" : "None of your queues has an outbound number.";
  $("outbound-submit").disabled = !state.outboundNumbers.length;
  dialog.showModal();
  $("outbound-number").focus();
}

function updateOutboundCounter() {
  const info = countSegments($("outbound-body").value);
  $("outbound-counter").textContent = `${info.chars.toLocaleString("en-US")} / 1,600 · ${info.segments} segment${info.segments === 1 ? "" : "s"} · ${info.encoding}`;
  $("outbound-counter").classList.toggle("over", info.chars > MAX_BODY_CHARS);
}

$("outbound-body").addEventListener("input", updateOutboundCounter);
$("optin-use").addEventListener("click", () => {
  const optin = optinShortcut();
  if (optin) $("outbound-body").value = optin.text;
  updateOutboundCounter();
  $("outbound-body").focus();
});
$("new-outbound").addEventListener("click", openOutboundDialog);
document.querySelector("[data-open-outbound]").addEventListener("click", openOutboundDialog);

$("outbound-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const number = $("outbound-number").value.trim().replace(/[\s().-]/g, "");
  const body = $("outbound-body").value;
  if (countSegments(body).chars > MAX_BODY_CHARS) {
    $("outbound-error").textContent = "The first message is over 1,600 characters.";
    return;
  }
  $("outbound-submit").disabled = true;
  $("outbound-error").textContent = "";
  try {
    const chat = await api.outbound(number, Number($("outbound-from").value), body);
    state.ownActions.add(chat.id);
    state.chats.set(chat.id, { ...state.chats.get(chat.id), ...chat });
    state.listVersion += 1;
    $("outbound-dialog").close();
    $("outbound-form").reset();
    renderChatList();
    openChat(chat.id);
  } catch (err) {
    $("outbound-error").textContent = errorText(err);
  } finally {
    $("outbound-submit").disabled = false;
  }
});

// ---------------------------------------------------------------------------------------------
// Mute toggle, start-up

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
  openChat(next);
});

socket = new AgentSocket({
  onEvent,
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
window.addEventListener("online", () => socket.kick());
setInterval(refreshStats, 60_000);

updateCounter();
resync({ transcript: false });
calls.resync();
socket.connect();

// A small handle for the browser tests and for debugging from the console.
window.tern = { state, socket, resync, calls: calls.state };
