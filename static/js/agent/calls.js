// The agent's calls (SPEC B1–B3), drawn from the store (store_calls.js): a card per call in the
// sidebar and, in the middle column, the open call — the caller (masked like every number here),
// the queue, the call's state, the green "Wait Time SMS Received" banner that opens the texts and
// pictures the caller sent while waiting, the in-call SMS session (preset messages in the call's
// language, custom text up to the in-call limit when allowed) and the app links. The calls' REST
// requests are here too; their answers go into the store. Every text is a text node, never HTML.
import { api, ApiError } from "./api.js";
import { patchChildren } from "../patch.js";
import { $, h, formatTime, formatClock, since } from "./render.js";
import { charCount, countSegments } from "./segments.js";
import { isActive } from "./store_calls.js";
import { renderTranscript } from "./transcript.js";

const APP_LINK_LABEL = {
  "ios:download": "iOS · Download",
  "ios:launch": "iOS · Open app",
  "android:download": "Android · Download",
  "android:launch": "Android · Open app",
};
const MEDIA_RETRIES = 15;

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

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

/**
 * mountCalls({store, me, toast, errorText}) → {render(topics), effects, resync()}: `effects` are
 * the calls' answers to what the store asks for (loadCallTexts, refreshCall, loadCallOptions,
 * focusCallTexts).
 */
export function mountCalls({ store, me, toast, errorText }) {
  const { state } = store;
  const calls = state.calls;
  const input = $("call-input");
  const mediaChecks = new Map(); // call id -> pending-media refetches so far
  const loadTimers = new Map();
  let shownCallId = null;
  let sending = false;

  // -------------------------------------------------------------------------------------------
  // Requests

  function notFound(err) {
    return err instanceof ApiError && err.status === 404;
  }

  async function refreshCall(callId) {
    try {
      store.apply({ type: "call.loaded", call: await api.callDetail(callId) });
    } catch (err) {
      if (notFound(err)) store.apply({ type: "call.gone", callId });
    }
  }

  // Ended calls the agent closed stay closed across reloads of this tab (the list brings back
  // today's ended calls).
  const CLOSED_KEY = "tern.agent.closedCalls";
  const closedCalls = () => new Set(JSON.parse(sessionStorage.getItem(CLOSED_KEY) || "[]"));
  function closeCall(callId) {
    const closed = closedCalls();
    closed.add(callId);
    sessionStorage.setItem(CLOSED_KEY, JSON.stringify([...closed].slice(-200)));
    store.apply({ type: "call.gone", callId });
  }

  /** After every (re)connection: the calls the agent is on, today's ended ones, and what became
   * of the others. */
  async function resync() {
    try {
      const data = await api.calls();
      const closed = closedCalls();
      const rows = (data.calls || []).filter((call) => !(call.status === "ended" && closed.has(call.id)));
      store.apply({ type: "calls.loaded", rows });
    } catch (err) {
      if (!(err instanceof ApiError && err.code === "network")) toast(errorText(err), "error");
    }
  }

  async function loadTexts(callId) {
    try {
      const data = await api.callMessages(callId);
      store.apply({ type: "call.texts.loaded", callId, messages: data.messages || [] });
      const pending = calls.texts.get(callId)?.pendingMedia();
      const tries = mediaChecks.get(callId) || 0;
      if (pending && tries < MEDIA_RETRIES) {
        mediaChecks.set(callId, tries + 1);
        setTimeout(() => calls.rows.has(callId) && loadTexts(callId), 2000);
      } else if (!pending) {
        mediaChecks.delete(callId);
      }
    } catch (err) {
      if (notFound(err)) store.apply({ type: "call.gone", callId });
      else toast(errorText(err), "error");
    }
  }

  function loadTextsSoon(callId) {
    clearTimeout(loadTimers.get(callId));
    loadTimers.set(callId, setTimeout(() => loadTexts(callId), 300));
  }

  async function loadOptions(callId) {
    try {
      store.apply({ type: "call.options.loaded", callId, options: await api.callOptions(callId) });
    } catch (err) {
      if (!notFound(err)) toast(errorText(err), "error");
    }
  }

  /** Sends through `request`; the sent text joins the call's texts, a refusal is shown. */
  async function send(callId, request) {
    if (sending) return null;
    sending = true;
    const warning = $("call-warning");
    warning.textContent = "";
    warning.dataset.kind = "";
    renderCall();
    try {
      const message = await request();
      store.apply({ type: "call.sent", callId, message });
      return message;
    } catch (err) {
      if (calls.openId === callId) {
        warning.textContent = errorText(err);
        warning.dataset.kind = "error";
      } else {
        toast(errorText(err), "error");
      }
      return null;
    } finally {
      sending = false;
      if (calls.openId === callId) renderCall();
    }
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

  // -------------------------------------------------------------------------------------------
  // Rendering

  function renderList() {
    const rows = [...calls.rows.values()].sort((a, b) => new Date(a.assigned_at) - new Date(b.assigned_at) || a.id - b.id);
    $("calls-section").hidden = rows.length === 0;
    $("call-count").textContent = rows.length ? String(rows.length) : "";
    patchChildren(
      $("call-list"),
      rows.map((call) => {
        const active = call.id === calls.openId;
        const banner = call.wait_time_sms?.received;
        return h("li", { class: `call-card${active ? " active" : ""}${isActive(call) ? "" : " ended"}`, dataset: { callId: call.id, key: call.id } },
          h("button", {
            type: "button",
            class: "call-item",
            "aria-current": active ? "true" : null,
            "aria-label": `Call from ${call.caller_number}, ${call.queue_name || "no queue"}, ${stateText(call)}${call.unread ? `, ${call.unread} new texts` : ""}`,
            onclick: () => store.apply({ type: "call.opened", callId: call.id }),
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
            ? h("button", { type: "button", class: "wts-banner wts-banner-small", onclick: () => store.apply({ type: "call.texts.shown", callId: call.id }), title: bannerCounts(call) },
                h("span", { class: "wts-title" }, call.wait_time_sms.banner || "Wait Time SMS Received"))
            : null,
        );
      }),
    );
  }

  function renderOpen() {
    if (shownCallId === calls.openId) return;
    shownCallId = calls.openId;
    $("call-view").hidden = !calls.openId;
    if (!calls.openId) return;
    input.value = calls.drafts.get(calls.openId) || "";
    $("call-warning").textContent = "";
    $("call-transcript").replaceChildren();
  }

  function renderBanner(call) {
    const banner = $("call-banner");
    banner.hidden = !call.wait_time_sms?.received;
    banner.querySelector(".wts-title").textContent = call.wait_time_sms?.banner || "Wait Time SMS Received";
    $("call-banner-counts").textContent = bannerCounts(call);
    const visible = store.callTextsVisible(call.id);
    banner.setAttribute("aria-expanded", visible ? "true" : "false");
    banner.querySelector(".wts-open").textContent = visible ? "Shown below" : "View messages";
  }

  function renderAppLinks(call, opts) {
    const links = opts?.app_links || [];
    $("call-app-links").hidden = !isActive(call) || !links.length;
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
  }

  function renderCall() {
    const call = store.openCall();
    if (!call) return;
    const active = isActive(call);
    const opts = calls.options.get(call.id);
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
    renderBanner(call);

    const ended = $("call-ended");
    ended.hidden = active;
    if (!active) {
      const when = call.ended_at ? ` at ${formatTime(call.ended_at)}` : "";
      ended.textContent = call.in_call_sms_open || calls.shown.has(call.id)
        ? `The call ended${when}. The SMS session with the caller is closed.`
        : `The call ended${when}.`;
    }

    // The session: start it, or send in it.
    $("call-actions").hidden = !active;
    $("call-session-start").hidden = !active || call.in_call_sms_open;
    const refusal = opts ? opts.refusal : call.in_call_sms_available === false ? "In-call SMS is not available for this call." : "";
    $("call-open-session").disabled = Boolean(refusal) || !opts;
    $("call-session-note").textContent = refusal || (opts ? "Text the caller during the call." : "Loading…");
    renderAppLinks(call, opts);

    const visible = store.callTextsVisible(call.id);
    $("call-sms").hidden = !visible;
    const composer = $("call-composer");
    composer.hidden = !(active && call.in_call_sms_open && opts);
    if (!composer.hidden) renderComposer(call, opts);
    if (visible) renderTexts();
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
              onclick: () => send(call.id, () => api.sendCallPreset(call.id, p.id)),
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

  function renderTexts() {
    renderTranscript($("call-transcript"), calls.texts.get(calls.openId), { me, other: "Caller", empty: "No text messages yet." });
  }

  function limit() {
    return calls.options.get(calls.openId)?.custom_limit || 918;
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

  // -------------------------------------------------------------------------------------------
  // The page's controls

  $("call-composer").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const callId = calls.openId;
    const body = input.value;
    if (!callId || !body.trim() || charCount(body) > limit()) return updateCounter();
    const message = await send(callId, () => api.sendCallText(callId, body));
    if (message && calls.openId === callId) {
      input.value = "";
      store.apply({ type: "call.draft.changed", callId, text: "" });
      updateCounter();
      input.focus();
    }
  });

  input.addEventListener("input", () => {
    updateCounter();
    if (calls.openId) store.apply({ type: "call.draft.changed", callId: calls.openId, text: input.value });
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.isComposing) return;
    if (ev.key === "Enter" && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      $("call-composer").requestSubmit();
    }
  });

  $("call-open-session").addEventListener("click", async (ev) => {
    const callId = calls.openId;
    const button = ev.currentTarget;
    button.disabled = true;
    try {
      store.apply({ type: "call.session.opened", call: await api.openSmsSession(callId) });
      await loadTexts(callId);
      if (calls.openId === callId) (calls.options.get(callId)?.presets?.length ? $("call-presets").querySelector("button") : input)?.focus();
    } catch (err) {
      $("call-session-note").textContent = errorText(err);
      button.disabled = false;
    }
  });

  $("call-banner").addEventListener("click", () => calls.openId && store.apply({ type: "call.texts.shown", callId: calls.openId }));
  $("call-dismiss").addEventListener("click", () => calls.openId && closeCall(calls.openId));

  // The calls' clocks.
  setInterval(() => {
    for (const el of document.querySelectorAll("[data-call-tick]")) {
      const call = calls.rows.get(Number(el.dataset.callTick));
      if (call && isActive(call)) el.textContent = stateText(call);
    }
  }, 1000);

  return {
    render(topics) {
      if (topics.has("call")) renderOpen();
      if (topics.has("calls") || topics.has("call") || topics.has("open")) renderList();
      if (!calls.openId) return;
      if (topics.has("call")) renderCall();
      else if (topics.has("callTexts") && store.callTextsVisible(calls.openId)) renderTexts();
    },
    effects: {
      loadCallTexts: ({ callId, soon }) => (soon ? loadTextsSoon(callId) : loadTexts(callId)),
      refreshCall: ({ callId }) => refreshCall(callId),
      loadCallOptions: ({ callId }) => loadOptions(callId),
      focusCallTexts: () => $("call-transcript").focus({ preventScroll: true }),
    },
    resync,
  };
}
