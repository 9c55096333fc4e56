// The adapter's state, and the one place it changes: `store.apply(event)`. An event is either one
// the websocket brought (chat.offered, chat.updated, queue.chat(s), message.created,
// message.status) or one the page made (state.loaded after GET state, chat.opened, message.sent,
// …). Each apply tells the subscribers what changed (`topics`: the parts of the page to render)
// and what the page should do about it (`effects`: a chime, a resync, a read mark, …); the store
// itself never touches the DOM or the network.
//
// The rules that keep the page right whatever order things arrive in live here:
// - a chat's `version` (the server counts it): an older event or REST row never undoes a newer one;
// - GET state is merged with what the websocket brought while the answer travelled;
// - waiting counts per queue from the chats' versions, not from counting events;
// - a transcript merges by message id, statuses only forward (transcript.js).
import { LateStatuses, Transcript } from "./transcript.js";
import { callHandlers, newCallsState } from "./store_calls.js";

const WAITING_KEPT = 2000;
// A chat's fields that are the agent's own (counted for this page), not the chat's shape.
const PER_AGENT = new Set(["unread", "last_message", "last_message_id", "eventMessageId"]);
const MESSAGE_TIMES = ["last_consumer_message_at", "last_agent_message_at"];

function later(a, b) {
  if (!a) return b;
  if (!b) return a;
  return new Date(a) > new Date(b) ? a : b;
}

export function createStore({ me, name, isHidden = () => document.hidden }) {
  const late = new LateStatuses();
  const state = {
    agent: { id: me, name, status: "" },
    statusPending: "", // a status the agent picked that the server has not confirmed yet
    statusVersion: 0,
    readMarks: new Map(), // chat id -> how many times this page marked it read
    listVersion: 0, // bumped whenever an event or an action adds or removes a chat or an offer
    unreadIds: new Map(), // chat id -> ids of consumer texts counted unread from websocket events
    chats: new Map(), // my assigned chats, by id
    versions: new Map(), // chat id -> the newest version heard of it (events, REST rows)
    waiting: new Map(), // chat id -> {queueId, queued, version, epoch}: chats of my queues
    waitingEpoch: 0, // counts queue.chat events, to tell which came after a GET state was asked
    offers: new Map(), // manual-answer chats offered to me, by id
    queues: [],
    outboundNumbers: [],
    shortcuts: [],
    stats: null,
    openChatId: null,
    transcript: new Transcript(late), // the open chat's messages
    drafts: new Map(), // chat id -> unsent text
    contact: null, // the open chat's CRM panel (GET …/contact)
    ownActions: new Set(), // chat ids the agent just accepted or started (no chime for those)
    calls: newCallsState(), // the calls the agent is on (store_calls.js)
  };
  const listeners = [];
  let changes = null;

  const touch = (...topics) => topics.forEach((t) => changes.topics.add(t));
  const effect = (type, more = {}) => changes.effects.push({ type, ...more });

  // ------------------------------------------------------------------------------------------
  // Helpers of the rules

  /** Whether `chat` (an event's or a REST row) is newer than what this page heard of it; if so,
   *  remember its version. Events of two requests can arrive in either order. */
  function newerVersion(chat) {
    if (typeof chat.version !== "number") return true;
    if ((state.versions.get(chat.id) ?? -1) >= chat.version) return false;
    state.versions.set(chat.id, chat.version);
    return true;
  }

  function queueName(queueId) {
    const q = state.queues.find((x) => x.id === queueId);
    return q ? q.name.split(" › ").pop() : "";
  }

  function closeOpen({ keepDraft = false } = {}) {
    if (state.openChatId && !keepDraft) state.drafts.delete(state.openChatId);
    state.openChatId = null;
    state.transcript = new Transcript(late);
    state.contact = null;
    touch("open", "chats");
  }

  function countUnread(chat, message) {
    const ids = state.unreadIds.get(chat.id) || new Set();
    state.unreadIds.set(chat.id, ids);
    if (!ids.has(message.id)) {
      ids.add(message.id);
      chat.unread = (chat.unread || 0) + 1;
    }
  }

  /** A chat row from GET state may be older than what the websocket already brought (events
   *  that arrived while the answer travelled): keep the newer local knowledge. */
  function mergeNewerLocal(chat, readMarksAtRequest) {
    const local = state.chats.get(chat.id);
    if (local && (local.version ?? -1) > (chat.version ?? -1)) {
      // An event newer than the answer changed the chat itself (still mine, or it would be gone).
      for (const [field, value] of Object.entries(local)) {
        if (!PER_AGENT.has(field) && !MESSAGE_TIMES.includes(field)) chat[field] = value;
      }
    }
    const counted = chat.last_message_id || 0; // the newest message the answer knew of
    if (local && local.eventMessageId > counted) {
      chat.last_message = local.last_message;
      for (const field of MESSAGE_TIMES) chat[field] = later(chat[field], local[field]);
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

  function dropOffer(chatId) {
    if (!state.offers.delete(chatId)) return;
    state.listVersion += 1;
    touch("offers");
  }

  // ------------------------------------------------------------------------------------------
  // The websocket's events

  function chatOffered({ chat }) {
    if (chat.status !== "queued" || state.chats.has(chat.id)) return;
    const heard = state.waiting.get(chat.id);
    if (heard && heard.version > chat.version && !heard.queued) return; // taken or ended meanwhile
    state.listVersion += 1;
    const isNew = !state.offers.has(chat.id);
    state.offers.set(chat.id, { ...state.offers.get(chat.id), ...chat });
    touch("offers");
    if (isNew) effect("signal");
  }

  function chatUpdated({ chat }) {
    if (!newerVersion(chat)) return;
    const known = state.chats.get(chat.id);
    const mineNow = chat.agent_id === me && chat.status === "assigned";
    if (Boolean(known) !== mineNow || state.offers.has(chat.id)) state.listVersion += 1;
    if (chat.status !== "queued" && state.offers.delete(chat.id)) touch("offers");
    if (mineNow) {
      state.chats.set(chat.id, { unread: 0, last_message: "", ...known, ...chat });
      touch("chats");
      if (!known) {
        if (!state.ownActions.has(chat.id)) effect("signal");
        // The full row (unread count, last message), and the messages published with the
        // assignment, before this page joined the chat's group.
        effect("resync", { transcript: false });
      }
      if (state.openChatId === chat.id) {
        touch("head");
        if (known && known.crm_needs_choice !== chat.crm_needs_choice) effect("loadContact", { chatId: chat.id });
      }
      return;
    }
    if (!known) return;
    state.chats.delete(chat.id);
    touch("chats");
    if (state.openChatId === chat.id) {
      closeOpen();
      if (chat.status === "finished" && chat.finish_reason !== "agent_ended") effect("chatEnded", { chat: known, reason: chat.finish_reason });
      else if (chat.status === "dismissed") effect("chatDismissed", { chat: known });
    }
    effect("refreshStats");
  }

  function queueChat(event) {
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
    if (event.status !== "queued") dropOffer(event.chat_id);
    touch("queues");
  }

  function messageCreated({ message }) {
    if (callPart.messageCreated(message)) return; // the SMS side of a call (never in the chat list)
    const chat = state.chats.get(message.chat_id);
    if (!chat) return;
    const fromConsumer = message.author === "consumer";
    chat.last_message = message.body || (message.media?.length ? "Attachment" : "");
    chat.eventMessageId = Math.max(chat.eventMessageId || 0, message.id);
    if (fromConsumer) chat.last_consumer_message_at = message.created_at;
    else if (message.author === "agent") chat.last_agent_message_at = message.created_at;
    if (state.openChatId === message.chat_id) {
      state.transcript.add([message]);
      touch("transcript");
      if (fromConsumer) {
        // The event does not carry the stored media yet: fetch the transcript to show them.
        effect("refreshTranscript", { chatId: chat.id });
        if (isHidden()) countUnread(chat, message);
        else effect("markRead", { chatId: chat.id, soon: true });
      }
    } else if (fromConsumer) {
      countUnread(chat, message);
    }
    if (fromConsumer) effect("signal");
    touch("chats");
  }

  function messageStatus(event) {
    if (state.transcript.status(event)) touch("transcript");
    else if (!callPart.messageStatus(event)) late.keep(event); // its message is not here yet, or is in a chat not open now
  }

  // ------------------------------------------------------------------------------------------
  // What the page did or was answered

  /** GET state's answer; `asked` is snapshot() taken when it was asked. */
  function stateLoaded({ data, asked }) {
    // A status change made while this answer was on its way wins over it.
    if (asked.statusVersion !== state.statusVersion || state.statusPending) data.agent.status = state.agent.status;
    for (const chat of data.chats || []) mergeNewerLocal(chat, asked.readMarks);
    state.agent = { ...state.agent, ...data.agent };
    state.queues = data.queues || [];
    mergeWaiting(state.queues, asked.waitingEpoch);
    for (const chat of [...(data.chats || []), ...(data.offers || [])]) newerVersion(chat);
    state.outboundNumbers = data.outbound_numbers || [];
    state.shortcuts = data.shortcuts || [];
    state.stats = data.stats;
    const fresh = new Map((data.chats || []).map((c) => [c.id, c]));
    const open = fresh.get(state.openChatId);
    if (open && open.unread && !isHidden()) {
      // The agent is reading this chat: whatever the server counted is read now.
      open.unread = 0;
      effect("markRead", { chatId: open.id, soon: true });
    }
    state.chats = fresh;
    state.offers = new Map((data.offers || []).filter((c) => !fresh.has(c.id)).map((c) => [c.id, c]));
    touch("status", "chats", "offers", "queues", "stats", "shortcuts");
    if (state.openChatId && !state.chats.has(state.openChatId)) closeOpen();
    else if (state.openChatId) touch("head");
  }

  function chatOpened({ chatId }) {
    if (state.calls.openId !== null) {
      state.calls.openId = null; // the chat takes the middle column
      touch("call", "calls");
    }
    if (state.openChatId !== chatId) {
      state.openChatId = chatId;
      state.transcript = new Transcript(late);
      state.contact = null;
    }
    touch("open", "head", "chats");
  }

  function chatTaken({ chat }) {
    state.ownActions.add(chat.id);
    state.offers.delete(chat.id);
    state.chats.set(chat.id, { ...state.chats.get(chat.id), ...chat });
    state.listVersion += 1;
    touch("chats", "offers");
  }

  function chatGone({ chatId }) {
    state.chats.delete(chatId);
    state.listVersion += 1;
    if (state.openChatId === chatId) closeOpen();
    touch("chats");
  }

  function messageSent({ chatId, message }) {
    if (state.openChatId === chatId) {
      state.transcript.add([message]);
      touch("transcript");
    }
    const chat = state.chats.get(chatId);
    if (!chat) return;
    chat.last_message = message.body;
    chat.last_agent_message_at = message.created_at;
    touch("chats", "head");
  }

  function chatRead({ chatId }) {
    const chat = state.chats.get(chatId);
    if (!chat) return;
    state.readMarks.set(chatId, (state.readMarks.get(chatId) || 0) + 1);
    state.unreadIds.delete(chatId);
    chat.unread = 0;
    touch("chats");
  }

  function statusAnswered({ status, agent }) {
    if (state.statusPending !== status) return; // another pick came after this one
    if (agent) state.agent = { ...state.agent, ...agent };
    state.statusPending = "";
    touch("status");
  }

  const callPart = callHandlers({
    state, me, late, touch, effect, isHidden,
    leaveChat: () => state.openChatId && closeOpen({ keepDraft: true }), // a call takes the middle column
  });

  const HANDLERS = {
    ...callPart.handlers,
    "chat.offered": chatOffered,
    "chat.updated": chatUpdated,
    "queue.chat": queueChat,
    "queue.chats": (event) => event.chats.forEach(queueChat), // several of one moment, merged by the server
    "message.created": messageCreated,
    "message.status": messageStatus,
    "state.loaded": stateLoaded,
    "transcript.loaded": ({ chatId, messages }) => {
      if (state.openChatId !== chatId) return;
      state.transcript.add(messages);
      touch("transcript", "head");
    },
    "chat.opened": chatOpened,
    "chat.closed": () => closeOpen(),
    "chat.claiming": ({ chatId }) => state.ownActions.add(chatId),
    "chat.taken": chatTaken,
    "chat.gone": chatGone,
    "offer.gone": ({ chatId }) => dropOffer(chatId),
    "message.sent": messageSent,
    "chat.read": chatRead,
    "draft.changed": ({ chatId, text }) => (text ? state.drafts.set(chatId, text) : state.drafts.delete(chatId)),
    "status.asked": ({ status }) => {
      state.statusVersion += 1;
      state.statusPending = status;
      touch("status");
    },
    "status.answered": statusAnswered,
    "stats.loaded": ({ stats }) => {
      state.stats = stats;
      touch("stats");
    },
    "contact.loaded": ({ chatId, contact }) => {
      if (state.openChatId !== chatId) return;
      state.contact = contact;
      touch("contact");
    },
  };

  function apply(event) {
    const handler = HANDLERS[event.type];
    if (!handler) return;
    const outer = changes === null;
    if (outer) changes = { topics: new Set(), effects: [] };
    try {
      handler(event);
    } finally {
      if (outer) {
        const done = changes;
        changes = null;
        if (done.topics.size || done.effects.length) for (const fn of listeners) fn(done);
      }
    }
  }

  return {
    state,
    late,
    apply,
    subscribe: (fn) => listeners.push(fn),
    /** What GET state's answer is compared with when it arrives (stateLoaded's `asked`). */
    snapshot: () => ({
      statusVersion: state.statusVersion,
      readMarks: new Map(state.readMarks),
      listVersion: state.listVersion,
      waitingEpoch: state.waitingEpoch,
    }),
    queueName,
    waitingIn: (queueId) => {
      let count = 0;
      for (const entry of state.waiting.values()) if (entry.queued && entry.queueId === queueId) count += 1;
      return count;
    },
    openChat: () => state.chats.get(state.openChatId) || null,
    openCall: () => state.calls.rows.get(state.calls.openId) || null,
    callTextsVisible: callPart.textsVisible,
  };
}
