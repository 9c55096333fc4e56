// Small DOM helpers. Every piece of data becomes a text node or an attribute value — never
// HTML — so a consumer's text or a media name can't inject markup.
import { listen } from "../patch.js";

/** h("li", {class: "x", dataset: {id: 1}, onclick: fn}, "text", childNode, [more]) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") listen(el, key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

export const $ = (id) => document.getElementById(id);

export function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

export function formatDate(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
}

/** Seconds since an ISO time (0 when there is none). */
export function since(iso) {
  return iso ? (Date.now() - new Date(iso).getTime()) / 1000 : 0;
}

/** 75 → "1:15", 3725 → "1:02:05" */
export function formatClock(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(seconds / 3600);
  const mm = Math.floor((seconds % 3600) / 60);
  const ss = String(seconds % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** 75 → "1m 15s", 0 → "—" */
export function formatDuration(seconds) {
  seconds = Math.round(seconds || 0);
  if (!seconds) return "—";
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  if (m >= 60) return `${Math.floor(m / 60)}h ${m % 60}m`;
  return m ? `${m}m ${String(s).padStart(2, "0")}s` : `${s}s`;
}

export const STATUS_RANK = {
  pending: 0, held: 1, queued: 2, sending: 3, sent: 4,
  delivered: 5, undelivered: 5, failed: 5, suppressed: 5, refused: 5, expired: 5,
};

export const STATUS_LABEL = {
  pending: "Pending",
  held: "Held (quiet hours)",
  queued: "Pending",
  sending: "Sending",
  sent: "Sent",
  delivered: "Delivered",
  undelivered: "Undelivered",
  failed: "Failed",
  suppressed: "Not sent (opted out)",
  refused: "Refused",
  expired: "Expired",
};

export const BAD_STATUSES = new Set(["undelivered", "failed", "suppressed", "refused", "expired"]);

export const FINISH_LABEL = {
  agent_ended: "Ended by agent",
  end_user_exit: "Consumer sent EXIT",
  end_user_stopped: "Consumer sent STOP",
  expired_selecting: "Expired in menu",
  expired_unanswered: "Expired unanswered",
  timeout_end_user_no_message: "Consumer did not answer",
  timeout_outbound_inactive: "Outbound inactive",
  failed: "Failed",
};

export const START_LABEL = { manual_answer: "Manual answer", auto_answer: "Auto answer", outbound: "Outbound" };

/** A message's delivery status, with the provider's code and reason when it went wrong. */
export function statusNode(m) {
  const status = m.status || "pending";
  const bad = BAD_STATUSES.has(status);
  let text = STATUS_LABEL[status] || status;
  if (bad && (m.error_code || m.error_message)) {
    text += ` — ${[m.error_code, m.error_message].filter(Boolean).join(": ")}`;
  }
  return h("span", { class: `msg-status status-${status}${bad ? " bad" : ""}` }, text);
}

/** A picture inline, a video with controls, another file as a link; or why it is not there. */
export function renderMedia(item, sender = "the consumer") {
  const kind = item.kind || (item.content_type || "").split("/")[0] || "file";
  const what = kind === "image" ? "Image" : kind === "video" ? "Video" : "Attachment";
  if (item.url && kind === "image") {
    return h("a", { class: "media-item", href: item.url, target: "_blank", rel: "noopener", title: `Open ${what.toLowerCase()} (${item.content_type})` },
      h("img", { src: item.url, alt: `${what} sent by ${sender}`, loading: "lazy" }));
  }
  if (item.url && kind === "video") {
    return h("video", { class: "media-item", src: item.url, controls: true, preload: "metadata" });
  }
  if (item.url) return h("a", { class: "media-file", href: item.url, target: "_blank", rel: "noopener" }, `${what} (${item.content_type})`);
  if (item.error) return h("span", { class: "media-error" }, `${what} not available: ${item.error}`);
  return h("span", { class: "media-pending" }, `${what} loading…`);
}
