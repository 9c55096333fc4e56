// The agent's calls (SPEC B1–B3): a card per call in the sidebar and, in the middle column, the
// open call — the caller (masked like every number here), the queue, the call's state, the green
// "Wait Time SMS Received" banner that opens the texts and pictures the caller sent while
// waiting, the in-call SMS session (preset messages in the call's language, custom text up to the
// in-call limit when allowed) and the app links.
//
// Same rules as the chats (store.js): the REST answers (GET …/calls, …/calls/{id}, …/messages) are
// the truth after every (re)connection; the websocket's call.updated, call.banner, call.message,
// message.created and message.status keep it live in between. A call's texts are a Transcript
// (transcript.js), the same one the chats keep, so events and fetches may arrive in any order.
// Every text is a text node, never HTML.
import { api, ApiError } from "./api.js";
import { $, h, formatTime, formatClock, since } from "./render.js";
import { charCount, countSegments } from "./segments.js";
import { LateStatuses, Transcript, renderTranscript as drawTranscript } from "./transcript.js";

const CALL_RANK = { queued: 0, assigned: 1, ended: 2, abandoned: 2 };
const APP_LINK_LABEL = {
  "ios:download": "iOS · Download",
  "ios:launch": "iOS · Open app",
  "android:download": "Android · Download",
  "android:launch": "Android · Open app",
};
const MEDIA_RETRIES = 15;

function isActive(call) {
  return call && call.status === "assigned";
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * createCalls({me, late, toast, errorText, notifier, leaveChat, chatOpen}) → the calls part of the
 * page. `late` keeps the statuses that overtook their message (shared with the chats);
 * `leaveChat()` hides the open chat (keeping its draft) when a call is opened; `chatOpen()` says
 * whether a chat fills the middle column.
 */
export function createCalls({ me, late = new LateStatuses(), toast, errorText, notifier, leaveChat, chatOpen }) {
  const calls = new Map(); // id -> call row (REST shape, merged with events)
  const texts = new Map(); // call id -> Transcript
  const textsShown = new Set(); // calls whose texts the agent opened (banner or session)
  const options = new Map(); // call id -> GET …/presets answer
  const drafts = new Map(); // call id -> custom text not sent yet
  const mediaChecks = new Map(); // call id -> pending-media refetches so far
  let openCallId = null;
  let sending = false;

  const input = $("call-input");

  // -------------------------------------------------------------------------------------------
  // The rows

  function merge(known, incoming) {
    const row = { ...known, ...incoming };
    if (known) {
      if ((CALL_RANK[incoming.status] ?? 0) < (CALL_RANK[known.status] ?? 0)) {
        // An older answer (or event) must not bring an ended call back.
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

  /** A call row from REST or an event. Returns the merged row (or null when it is not ours). */
  function upsert(incoming, { fresh = false } = {}) {
    const known = calls.get(incoming.id);
    if (incoming.agent_id && incoming.agent_id !== me) {
      if (known) remove(incoming.id);
      return null;
    }
    if (!known && !isActive(incoming)) return null; // a call that ended before this page knew it
    const row = merge(known, incoming);
    calls.set(row.id, row);
    if (!known) {
      if (!fresh) refreshCall(row.id); // the event lacks the queue's name and the banner counts
      notifier.signal();
      if (!openCallId && !chatOpen()) openCall(row.id);
      else toast(`Call from ${row.caller_number} connected.`);
    } else {
      if (row.sms_chat_id !== known.sms_chat_id && textsVisible(row.id)) loadTexts(row.id);
      if (isActive(known) && !isActive(row)) onEnded(row);
    }
    render();
    return row;
  }

  function onEnded(call) {
    // The session ends with the call; the closing SMS (when on) is the last message.
    if (textsShown.has(call.id) || call.in_call_sms_open) {
      textsShown.add(call.id);
      loadTexts(call.id);
    }
    if (openCallId !== call.id) toast(`Call from ${call.caller_number} ended.`);
  }

  function remove(callId) {
    calls.delete(callId);
    texts.delete(callId);
    textsShown.delete(callId);
    options.delete(callId);
    drafts.delete(callId);
    if (openCallId === callId) closeCall();
    render();
  }

  async function refreshCall(callId) {
    try {
      upsert(await api.callDetail(callId), { fresh: true });
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) remove(callId);
    }
  }

  /** After every (re)connection: the calls the agent is on, and what became of the others. */
  async function resync() {
    try {
      const data = await api.calls();
      const listed = new Set();
      for (const row of data.calls || []) {
        listed.add(row.id);
        upsert(row, { fresh: true });
      }
      // A call shown here but no longer listed ended while the socket was away.
      await Promise.all([...calls.values()].filter((c) => isActive(c) && !listed.has(c.id)).map((c) => refreshCall(c.id)));
      if (openCallId && textsVisible(openCallId)) await loadTexts(openCallId);
      if (openCallId && isActive(calls.get(openCallId))) loadOptions(openCallId);
    } catch (err) {
      if (!(err instanceof ApiError && err.code === "network")) toast(errorText(err), "error");
    }
  }

  // -------------------------------------------------------------------------------------------
  // Events

  function onEvent(event) {
    switch (event.type) {
      case "call.updated":
        if (event.call) upsert(event.call);
        return true;
      case "call.banner":
        if (event.call) {
          upsert({
            ...event.call,
            wait_time_sms: {
              received: true,
              banner: event.banner,
              message_count: event.message_count || 0,
              media_count: event.media_count || 0,
              messages_url: event.messages_url,
            },
          });
        }
        return true;
      case "call.message":
        onMessage(event.call_id, event.message);
        return true;
      case "message.created": {
        const call = callOfChat(event.message?.chat_id);
        if (call) onMessage(call.id, event.message);
        return Boolean(call);
      }
      case "message.status":
        return onStatus(event);
      default:
        return false;
    }
  }

  function callOfChat(chatId) {
    if (!chatId) return null;
    for (const call of calls.values()) if (call.sms_chat_id === chatId) return call;
    return null;
  }

  function onMessage(callId, message) {
    const call = calls.get(callId);
    if (!call || !message) return;
    const known = texts.get(callId)?.has(message.id);
    addTexts(callId, [message]);
    if (known || message.author !== "consumer") return;
    if (!textsVisible(callId) || openCallId !== callId || document.hidden) {
      call.unread = (call.unread || 0) + 1;
      notifier.signal();
      renderList();
    }
    // The event does not carry the stored picture yet: fetch the texts to show it.
    if ((message.media || []).length && textsVisible(callId)) loadTextsSoon(callId);
  }

  /** A message.status: true when it is about a text of one of the calls (the chats' otherwise,
   *  or kept by `late` until its message arrives). */
  function onStatus(event) {
    for (const [callId, transcript] of texts) {
      if (!transcript.status(event)) continue;
      if (openCallId === callId) renderTranscript();
      return true;
    }
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // Texts

  function textsVisible(callId) {
    const call = calls.get(callId);
    return Boolean(call && (textsShown.has(callId) || call.in_call_sms_open));
  }

  function addTexts(callId, messages) {
    if (!texts.has(callId)) texts.set(callId, new Transcript(late));
    texts.get(callId).add(messages);
    if (openCallId === callId) renderTranscript();
  }

  async function loadTexts(callId) {
    try {
      const data = await api.callMessages(callId);
      addTexts(callId, data.messages || []);
      const pending = texts.get(callId).pendingMedia();
      const tries = mediaChecks.get(callId) || 0;
      if (pending && tries < MEDIA_RETRIES) {
        mediaChecks.set(callId, tries + 1);
        setTimeout(() => calls.has(callId) && loadTexts(callId), 2000);
      } else if (!pending) {
        mediaChecks.delete(callId);
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) remove(callId);
      else toast(errorText(err), "error");
    }
  }

  const loadTimers = new Map();
  function loadTextsSoon(callId) {
    clearTimeout(loadTimers.get(callId));
    loadTimers.set(callId, setTimeout(() => loadTexts(callId), 300));
  }

  async function loadOptions(callId) {
    try {
      options.set(callId, await api.callOptions(callId));
      if (openCallId === callId) renderCall();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) toast(errorText(err), "error");
    }
  }

  // -------------------------------------------------------------------------------------------
  // Opening and closing the call view

  function openCall(callId) {
    const call = calls.get(callId);
    if (!call) return;
    if (openCallId !== callId) {
      if (openCallId) drafts.set(openCallId, input.value);
      leaveChat();
      openCallId = callId;
      input.value = drafts.get(callId) || "";
      $("call-warning").textContent = "";
      $("call-transcript").replaceChildren();
      if (!options.has(callId) && isActive(call)) loadOptions(callId);
    }
    $("no-chat").hidden = true;
    $("call-view").hidden = false;
    if (textsVisible(callId)) {
      call.unread = 0;
      loadTexts(callId);
    }
    render();
  }

  /** Hide the call view (a chat is being opened, or the call was closed). */
  function hide() {
    if (openCallId) drafts.set(openCallId, input.value);
    openCallId = null;
    $("call-view").hidden = true;
    renderList();
  }

  function closeCall() {
    hide();
    if (!chatOpen()) $("no-chat").hidden = false;
  }

  function showTexts(callId) {
    textsShown.add(callId);
    openCall(callId);
    const call = calls.get(callId);
    if (call) call.unread = 0;
    loadTexts(callId);
    render();
    $("call-transcript").focus({ preventScroll: true });
  }

  // -------------------------------------------------------------------------------------------
  // Rendering

  function stateText(call) {
    if (call.status === "assigned") return `On call ${formatClock(since(call.assigned_at))}`;
    if (call.status === "abandoned") return "Abandoned";
    return call.ended_at ? `Ended ${formatTime(call.ended_at)}` : "Call ended";
  }

  function bannerCounts(call) {
    const w = call.wait_time_sms || {};
    const parts = [plural(w.message_count || 0, "message")];
    if (w.media_count) parts.push(`${w.media_count} with ${w.media_count === 1 ? "a picture" : "pictures"}`);
    return parts.join(" · ");
  }

  function render() {
    renderList();
    if (openCallId) renderCall();
  }

  function renderList() {
    const list = $("call-list");
    const rows = [...calls.values()].sort((a, b) => new Date(a.assigned_at) - new Date(b.assigned_at) || a.id - b.id);
    $("calls-section").hidden = rows.length === 0;
    $("call-count").textContent = rows.length ? String(rows.length) : "";
    list.replaceChildren(
      ...rows.map((call) => {
        const active = call.id === openCallId;
        const banner = call.wait_time_sms?.received;
        return h("li", { class: `call-card${active ? " active" : ""}${isActive(call) ? "" : " ended"}`, dataset: { callId: call.id } },
          h("button", {
            type: "button",
            class: "call-item",
            "aria-current": active ? "true" : null,
            "aria-label": `Call from ${call.caller_number}, ${call.queue_name || "no queue"}, ${stateText(call)}${call.unread ? `, ${call.unread} new texts` : ""}`,
            onclick: () => openCall(call.id),
          },
            h("span", { class: "ci-top" },
              h("span", { class: "ci-number" }, call.caller_number),
              call.unread ? h("span", { class: "badge", title: `${call.unread} new texts` }, String(call.unread)) : null,
            ),
            h("span", { class: "ci-mid" },
              h("span", { class: "ci-queue" }, call.queue_name || "—"),
              h("span", { class: `call-status call-st-${call.status}`, dataset: { callTick: call.id } }, stateText(call)),
            ),
          ),
          banner
            ? h("button", { type: "button", class: "wts-banner wts-banner-small", onclick: () => showTexts(call.id), title: bannerCounts(call) },
                h("span", { class: "wts-title" }, call.wait_time_sms.banner || "Wait Time SMS Received"))
            : null,
        );
      }),
    );
  }

  function renderCall() {
    const call = calls.get(openCallId);
    if (!call) return;
    const active = isActive(call);
    const opts = options.get(call.id);
    $("call-title").textContent = call.caller_number;
    $("call-meta").textContent = [
      call.queue_name || null,
      "Phone call",
      call.assigned_at ? `since ${formatTime(call.assigned_at)}` : null,
      call.in_call_sms_open ? (active ? "SMS session open" : "SMS session closed") : null,
    ].filter(Boolean).join(" · ");
    const stateEl = $("call-state");
    stateEl.textContent = stateText(call);
    stateEl.dataset.state = call.status;
    stateEl.dataset.callTick = String(call.id);
    $("call-dismiss").hidden = active;

    const banner = $("call-banner");
    banner.hidden = !call.wait_time_sms?.received;
    banner.querySelector(".wts-title").textContent = call.wait_time_sms?.banner || "Wait Time SMS Received";
    $("call-banner-counts").textContent = bannerCounts(call);
    banner.setAttribute("aria-expanded", textsVisible(call.id) ? "true" : "false");
    banner.querySelector(".wts-open").textContent = textsVisible(call.id) ? "Shown below" : "View messages";

    const ended = $("call-ended");
    ended.hidden = active;
    if (!active) {
      const when = call.ended_at ? ` at ${formatTime(call.ended_at)}` : "";
      ended.textContent = call.in_call_sms_open || textsShown.has(call.id)
        ? `The call ended${when}. The SMS session with the caller is closed.`
        : `The call ended${when}.`;
    }

    // The session: start it, or send in it.
    $("call-actions").hidden = !active;
    const start = $("call-session-start");
    start.hidden = !active || call.in_call_sms_open;
    const refusal = opts ? opts.refusal : call.in_call_sms_available === false ? "In-call SMS is not available for this call." : "";
    $("call-open-session").disabled = Boolean(refusal) || !opts;
    $("call-session-note").textContent = refusal || (opts ? "Text the caller during the call." : "Loading…");

    const links = opts?.app_links || [];
    $("call-app-links").hidden = !active || !links.length;
    $("call-app-link-buttons").replaceChildren(
      ...links.map((l) =>
        h("button", {
          type: "button",
          class: "btn btn-small",
          dataset: { platform: l.platform, link: l.link },
          "aria-label": `Send the ${l.platform === "ios" ? "iOS" : "Android"} ${l.link === "download" ? "download" : "open-the-app"} link`,
          onclick: (ev) => sendAppLink(call.id, l.platform, l.link, ev.currentTarget),
        }, APP_LINK_LABEL[`${l.platform}:${l.link}`] || `${l.platform} ${l.link}`),
      ),
    );

    const visible = textsVisible(call.id);
    $("call-sms").hidden = !visible;
    const composer = $("call-composer");
    composer.hidden = !(active && call.in_call_sms_open && opts);
    if (!composer.hidden) renderComposer(call, opts);
    if (visible) renderTranscript();
  }

  function renderComposer(call, opts) {
    $("call-presets-title").textContent = `Preset messages · ${opts.language_name || opts.language || call.language}`;
    const presets = opts.presets || [];
    $("call-presets").replaceChildren(
      ...(presets.length
        ? presets.map((p) =>
            h("button", {
              type: "button",
              class: "preset",
              dataset: { presetId: p.id },
              title: p.long ? `${p.text}\n\nOver 160 characters: sent as several SMS.` : p.text,
              disabled: sending,
              onclick: () => sendPreset(call.id, p),
            },
              h("span", { class: "preset-label" }, p.label),
              h("span", { class: "preset-text" }, p.text),
            ),
          )
        : [h("p", { class: "presets-note" }, `No preset messages in ${opts.language_name || "this language"}.`)]),
    );
    const custom = Boolean(opts.custom_allowed);
    $("call-custom").hidden = !custom;
    $("call-custom-off").hidden = custom;
    $("call-counter").hidden = !custom;
    $("call-send").hidden = !custom;
    if (custom) updateCounter();
  }

  function renderTranscript() {
    drawTranscript($("call-transcript"), texts.get(openCallId), { me, other: "Caller", empty: "No text messages yet." });
  }

  // -------------------------------------------------------------------------------------------
  // Actions

  function limit() {
    return options.get(openCallId)?.custom_limit || 918;
  }

  function updateCounter() {
    const info = countSegments(input.value);
    const chars = charCount(input.value);
    const max = limit();
    const over = chars > max;
    const counter = $("call-counter");
    counter.textContent = `${chars.toLocaleString("en-US")} / ${max.toLocaleString("en-US")} · ${plural(info.segments, "segment")} · ${info.encoding}`;
    counter.classList.toggle("over", over);
    const warning = $("call-warning");
    if (over) {
      warning.textContent = `Too long: ${(chars - max).toLocaleString("en-US")} ${chars - max === 1 ? "character" : "characters"} over the ${max.toLocaleString("en-US")} limit. Shorten it to send.`;
      warning.dataset.kind = "limit";
    } else if (warning.dataset.kind === "limit") {
      warning.textContent = "";
      warning.dataset.kind = "";
    }
    $("call-send").disabled = over || sending || !input.value.trim();
  }

  async function send(callId, action) {
    if (sending) return;
    sending = true;
    const warning = $("call-warning");
    warning.textContent = "";
    warning.dataset.kind = "";
    renderCall();
    try {
      const message = await action();
      textsShown.add(callId);
      addTexts(callId, [message]);
      return message;
    } catch (err) {
      if (openCallId === callId) {
        warning.textContent = errorText(err);
        warning.dataset.kind = "error";
      } else {
        toast(errorText(err), "error");
      }
      return null;
    } finally {
      sending = false;
      if (openCallId === callId) renderCall();
    }
  }

  function sendPreset(callId, preset) {
    return send(callId, () => api.sendCallPreset(callId, preset.id));
  }

  async function sendAppLink(callId, platform, link, button) {
    button.disabled = true;
    try {
      const message = await send(callId, () => api.sendAppLink(callId, platform, link));
      if (message) toast(`${platform === "ios" ? "iOS" : "Android"} ${link === "download" ? "download" : "open-the-app"} link sent.`);
    } finally {
      button.disabled = false;
    }
  }

  $("call-composer").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const callId = openCallId;
    const body = input.value;
    if (!callId || !body.trim() || charCount(body) > limit()) return updateCounter();
    const message = await send(callId, () => api.sendCallText(callId, body));
    if (message && openCallId === callId) {
      input.value = "";
      drafts.delete(callId);
      updateCounter();
      input.focus();
    }
  });

  input.addEventListener("input", () => {
    updateCounter();
    if (openCallId) drafts.set(openCallId, input.value);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.isComposing) return;
    if (ev.key === "Enter" && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      $("call-composer").requestSubmit();
    }
  });

  $("call-open-session").addEventListener("click", async (ev) => {
    const callId = openCallId;
    const button = ev.currentTarget;
    button.disabled = true;
    try {
      const row = await api.openSmsSession(callId);
      textsShown.add(callId);
      upsert(row, { fresh: true });
      await loadTexts(callId);
      if (openCallId === callId) (options.get(callId)?.presets?.length ? $("call-presets").querySelector("button") : input)?.focus();
    } catch (err) {
      $("call-session-note").textContent = errorText(err);
      button.disabled = false;
    }
  });

  $("call-banner").addEventListener("click", () => openCallId && showTexts(openCallId));
  $("call-dismiss").addEventListener("click", () => openCallId && remove(openCallId));

  // The calls' clocks.
  setInterval(() => {
    for (const el of document.querySelectorAll("[data-call-tick]")) {
      const call = calls.get(Number(el.dataset.callTick));
      if (call && isActive(call)) el.textContent = stateText(call);
    }
  }, 1000);

  return {
    onEvent,
    resync,
    hide,
    isOpen: () => openCallId !== null,
    state: { calls, texts, options },
  };
}
