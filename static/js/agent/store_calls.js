// The calls' part of the store (SPEC B1–B3): the calls the agent is on, the texts beside each
// (a Transcript, as a chat's), which call is open. Its handlers join store.js's, so a call's events
// go through the same `store.apply(event)`. The REST answers (GET …/calls, …/calls/{id},
// …/messages) are the truth after every (re)connection; call.updated, call.banner, call.message,
// message.created and message.status keep it live in between.
import { Transcript } from "./transcript.js";

const CALL_RANK = { queued: 0, assigned: 1, ended: 2, abandoned: 2 };

export function isActive(call) {
  return Boolean(call) && call.status === "assigned";
}

export function newCallsState() {
  return {
    rows: new Map(), // id -> call row (REST shape, merged with events)
    texts: new Map(), // call id -> Transcript
    shown: new Set(), // calls whose texts the agent opened (banner or session)
    options: new Map(), // call id -> GET …/presets answer
    drafts: new Map(), // call id -> custom text not sent yet
    openId: null,
  };
}

/** Two views of one call: an older answer or event never brings an ended call back, and what
 *  the banner counted only grows. */
function merge(known, incoming) {
  const row = { ...known, ...incoming };
  if (known) {
    if ((CALL_RANK[incoming.status] ?? 0) < (CALL_RANK[known.status] ?? 0)) {
      row.status = known.status;
      row.ended_at = known.ended_at;
    }
    row.in_call_sms_open = Boolean(known.in_call_sms_open || incoming.in_call_sms_open);
    if (!incoming.sms_chat_id) row.sms_chat_id = known.sms_chat_id;
    if (!incoming.queue_name) row.queue_name = known.queue_name || "";
    const a = known.wait_time_sms || {};
    const b = incoming.wait_time_sms || {};
    row.wait_time_sms = {
      ...a,
      ...b,
      received: Boolean(a.received || b.received),
      message_count: Math.max(a.message_count || 0, b.message_count || 0),
      media_count: Math.max(a.media_count || 0, b.media_count || 0),
    };
    row.unread = known.unread || 0;
  }
  row.unread = row.unread || 0;
  return row;
}

/** callHandlers({state, me, late, touch, effect, leaveChat, isHidden}) → {type: handler}. */
export function callHandlers({ state, me, late, touch, effect, leaveChat, isHidden }) {
  const calls = state.calls;

  const textsVisible = (callId) => Boolean(calls.rows.get(callId) && (calls.shown.has(callId) || calls.rows.get(callId).in_call_sms_open));

  function addTexts(callId, messages) {
    if (!calls.texts.has(callId)) calls.texts.set(callId, new Transcript(late));
    calls.texts.get(callId).add(messages);
    touch("callTexts");
  }

  function open(callId) {
    const call = calls.rows.get(callId);
    if (!call) return;
    if (calls.openId !== callId) {
      leaveChat();
      calls.openId = callId;
      if (!calls.options.has(callId) && isActive(call)) effect("loadCallOptions", { callId });
    }
    if (textsVisible(callId)) {
      call.unread = 0;
      effect("loadCallTexts", { callId });
    }
    touch("call", "calls");
  }

  function remove(callId) {
    calls.rows.delete(callId);
    calls.texts.delete(callId);
    calls.shown.delete(callId);
    calls.options.delete(callId);
    calls.drafts.delete(callId);
    if (calls.openId === callId) calls.openId = null;
    touch("call", "calls");
  }

  function ended(call) {
    // The session ends with the call; the closing SMS (when on) is the last message.
    if (calls.shown.has(call.id) || call.in_call_sms_open) {
      calls.shown.add(call.id);
      effect("loadCallTexts", { callId: call.id });
    }
    if (calls.openId !== call.id) effect("toast", { text: `Call from ${call.caller_number} ended.` });
  }

  /** A call row from REST (`fresh`) or an event. */
  function upsert(incoming, { fresh = false } = {}) {
    const known = calls.rows.get(incoming.id);
    if (incoming.agent_id && incoming.agent_id !== me) {
      if (known) remove(incoming.id);
      return;
    }
    // A call that ended before this page knew it: shown when the list says so (today's ended
    // calls after a reload), never announced.
    if (!known && !isActive(incoming) && !fresh) return;
    const row = merge(known, incoming);
    calls.rows.set(row.id, row);
    touch("calls", "call");
    if (!known && !isActive(row)) return;
    if (!known) {
      if (!fresh) effect("refreshCall", { callId: row.id }); // the event lacks the queue's name and the banner counts
      effect("signal");
      if (!calls.openId && !state.openChatId) open(row.id);
      else effect("toast", { text: `Call from ${row.caller_number} connected.` });
      return;
    }
    if (row.sms_chat_id !== known.sms_chat_id && textsVisible(row.id)) effect("loadCallTexts", { callId: row.id });
    if (isActive(known) && !isActive(row)) ended(row);
  }

  function onMessage(callId, message) {
    const call = calls.rows.get(callId);
    if (!call || !message) return;
    const known = calls.texts.get(callId)?.has(message.id);
    addTexts(callId, [message]);
    if (known || message.author !== "consumer") return;
    if (!textsVisible(callId) || calls.openId !== callId || isHidden()) {
      call.unread = (call.unread || 0) + 1;
      effect("signal");
      touch("calls");
    }
    // The event does not carry the stored picture yet: fetch the texts to show it.
    if ((message.media || []).length && textsVisible(callId)) effect("loadCallTexts", { callId, soon: true });
  }

  function callsLoaded({ rows }) {
    const listed = new Set();
    for (const row of rows) {
      listed.add(row.id);
      upsert(row, { fresh: true });
    }
    // A call shown here but no longer listed ended while the socket was away.
    for (const call of calls.rows.values()) {
      if (isActive(call) && !listed.has(call.id)) effect("refreshCall", { callId: call.id });
    }
    if (calls.openId && textsVisible(calls.openId)) effect("loadCallTexts", { callId: calls.openId });
    if (calls.openId && isActive(calls.rows.get(calls.openId))) effect("loadCallOptions", { callId: calls.openId });
  }

  return {
    handlers: {
      "call.updated": ({ call }) => call && upsert(call),
      "call.banner": (event) => event.call && upsert({
        ...event.call,
        wait_time_sms: {
          received: true,
          banner: event.banner,
          message_count: event.message_count || 0,
          media_count: event.media_count || 0,
          messages_url: event.messages_url,
        },
      }),
      "call.message": ({ call_id: callId, message }) => onMessage(callId, message),
      "calls.loaded": callsLoaded,
      "call.loaded": ({ call }) => upsert(call, { fresh: true }),
      "call.gone": ({ callId }) => remove(callId),
      "call.opened": ({ callId }) => open(callId),
      "call.texts.shown": ({ callId }) => {
        calls.shown.add(callId);
        open(callId); // visible now: its texts are loaded and counted read
        effect("focusCallTexts");
      },
      "call.texts.loaded": ({ callId, messages }) => calls.rows.has(callId) && addTexts(callId, messages),
      "call.options.loaded": ({ callId, options }) => {
        calls.options.set(callId, options);
        touch("call");
      },
      "call.session.opened": ({ call }) => {
        calls.shown.add(call.id);
        upsert(call, { fresh: true });
      },
      "call.sent": ({ callId, message }) => {
        calls.shown.add(callId);
        addTexts(callId, [message]);
        touch("call");
      },
      "call.draft.changed": ({ callId, text }) => (text ? calls.drafts.set(callId, text) : calls.drafts.delete(callId)),
    },
    /** message.created about the SMS side of a call: true when it was one. */
    messageCreated(message) {
      for (const call of calls.rows.values()) {
        if (message.chat_id && call.sms_chat_id === message.chat_id) {
          onMessage(call.id, message);
          return true;
        }
      }
      return false;
    },
    /** message.status about a call's text: true when it was one. */
    messageStatus(event) {
      for (const transcript of calls.texts.values()) {
        if (!transcript.status(event)) continue;
        touch("callTexts");
        return true;
      }
      return false;
    },
    textsVisible,
  };
}
