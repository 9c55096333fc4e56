// A conversation's messages, as the chats and the calls show them (and, read-only, the monitor).
// One rule set for every place a transcript is kept: messages are keyed by id, so a REST answer
// and the websocket's events may arrive in any order and nothing is shown twice; a delivery
// status only moves forward; a stored picture is never hidden by an older answer; a status that
// overtook its message is kept until the message arrives.
import { h, formatTime, renderMedia, statusNode, STATUS_RANK } from "./render.js";

const LATE_KEPT = 500;

export function rank(status) {
  return STATUS_RANK[status] ?? -1;
}

/** Statuses that came before their message (the status webhook can overtake the message's own
 *  event), by outbound id; shared by every transcript of the page. */
export class LateStatuses {
  constructor() {
    this.byOutbound = new Map();
  }

  keep(event) {
    const earlier = this.byOutbound.get(event.outbound_id);
    if (earlier && rank(event.status) <= rank(earlier.status)) return;
    this.byOutbound.delete(event.outbound_id);
    this.byOutbound.set(event.outbound_id, event);
    if (this.byOutbound.size > LATE_KEPT) this.byOutbound.delete(this.byOutbound.keys().next().value);
  }

  take(outboundId) {
    const late = this.byOutbound.get(outboundId);
    this.byOutbound.delete(outboundId);
    return late;
  }
}

function moveStatus(message, source) {
  if (!source || rank(source.status) <= rank(message.status)) return false;
  message.status = source.status;
  message.error_code = source.error_code || message.error_code;
  message.error_message = source.error_message || message.error_message;
  return true;
}

export class Transcript {
  constructor(late = new LateStatuses()) {
    this.messages = new Map(); // id -> message
    this.outbound = new Map(); // outbound_id -> message id
    this.late = late;
  }

  /** Merge messages (a REST answer or events) by id. */
  add(messages) {
    for (const incoming of messages) {
      const existing = this.messages.get(incoming.id);
      const message = { ...existing, ...incoming };
      if (existing && rank(existing.status) > rank(message.status)) {
        message.status = existing.status;
        message.error_code = existing.error_code;
        message.error_message = existing.error_message;
      }
      if (existing?.media?.length) {
        // An answer fetched before a picture was stored must not hide the stored one.
        const known = new Map(existing.media.map((item) => [item.id, item]));
        const fresh = incoming.media?.length ? incoming.media : existing.media;
        message.media = fresh.map((item) => (known.get(item.id)?.url && !item.url ? known.get(item.id) : item));
      }
      if (message.outbound_id) {
        this.outbound.set(message.outbound_id, message.id);
        moveStatus(message, this.late.take(message.outbound_id));
      }
      this.messages.set(message.id, message);
    }
  }

  /** A message.status event: true when it belongs here (moved forward or already newer). */
  status(event) {
    const id = this.outbound.get(event.outbound_id);
    const message = id !== undefined ? this.messages.get(id) : null;
    if (!message) return false;
    moveStatus(message, event);
    return true;
  }

  has(id) {
    return this.messages.has(id);
  }

  list() {
    return [...this.messages.values()];
  }

  /** Some picture or video is still being stored: worth fetching again shortly. */
  pendingMedia() {
    return this.list().some((m) => (m.media || []).some((x) => !x.url && !x.error));
  }

  byAgent() {
    return this.list().some((m) => m.author === "agent");
  }
}

export function byTimeThenId(a, b) {
  return new Date(a.created_at) - new Date(b.created_at) || a.id - b.id;
}

/**
 * One transcript entry: the text (always as text), its media, who wrote it, when, and an outbound
 * message's delivery status. `other` names the person texting ("Consumer", "Caller").
 */
export function messageItem(m, { me, other = "Consumer" }) {
  const author = m.author === "agent" ? (m.agent_id === me ? "You" : m.agent_name || "Agent") : m.author === "system" ? "System" : other;
  const media = (m.media || []).map((item) => renderMedia(item, `the ${other.toLowerCase()}`));
  return h("li", { class: `msg msg-${m.author}`, dataset: { id: m.id, status: m.status || "" } },
    h("div", { class: "bubble" },
      m.body ? h("p", { class: "body" }, m.body) : null,
      media.length ? h("div", { class: "media" }, media) : null,
    ),
    h("div", { class: "meta" },
      h("span", { class: "author" }, author),
      h("time", { datetime: m.created_at, title: new Date(m.created_at).toLocaleString() }, formatTime(m.created_at)),
      m.outbound_id || m.status ? statusNode(m) : null,
    ),
  );
}

/**
 * Brings a transcript list (an <ol>) up to date with `transcript` without redrawing what did not
 * change: a message is redrawn only when its status, body or media changed, moved when out of
 * place, removed when gone. Scrolls to the end when the reader was already near it or just sent a
 * message of their own (`me`, the agent's id). `empty` is shown when there is nothing.
 */
export function renderTranscript(list, transcript, { me, other = "Consumer", empty = "" }) {
  const messages = transcript ? transcript.list() : [];
  const nearBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 60;
  const existing = new Map([...list.children].map((li) => [li.dataset.id, li]));
  let previous = null;
  let addedOwn = false;
  for (const m of messages.sort(byTimeThenId)) {
    const key = String(m.id);
    const signature = JSON.stringify([m.status, m.error_code, m.error_message, m.body, (m.media || []).map((x) => [x.id, x.url, x.error])]);
    let node = existing.get(key);
    if (!node || node.dataset.signature !== signature) {
      const fresh = messageItem(m, { me, other });
      fresh.dataset.signature = signature;
      if (node) node.replaceWith(fresh);
      else if (m.author === "agent" && m.agent_id === me) addedOwn = true;
      node = fresh;
    }
    existing.delete(key);
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (expected !== node) list.insertBefore(node, expected);
    previous = node;
  }
  for (const [key, stale] of existing) if (!(key === "empty" && !messages.length)) stale.remove();
  if (!messages.length && empty && !list.children.length) list.append(h("li", { class: "empty", dataset: { id: "empty" } }, empty));
  if (nearBottom || addedOwn) list.scrollTop = list.scrollHeight;
}
