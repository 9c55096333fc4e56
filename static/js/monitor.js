// The supervisors' live monitor (SPEC M1–M3). The server renders each table; this script keeps
// them current: /ws/monitor/ says what changed (coalesced, a few frames a second at most) and the
// page reads its live part again (?fragment=1), replacing the tables marked data-live. One read
// at a time and at most one a second (a burst must not become every supervisor reading the
// figures several times a second); changes heard meanwhile cause one more read after it. After a
// reconnect the page reads everything again, so what was missed while the socket was down is not
// lost. A chat's page reads (and says "Live") only once the server answers `watching`.
import { patch } from "./patch.js";

const live = document.getElementById("live");
const connection = document.getElementById("connection");
const chatId = live && live.dataset.chatId ? Number(live.dataset.chatId) : null;

const READ_EVERY_MS = 1000;
let reading = false;
let readAgain = false;
let lastRead = 0;
let waiting = null;

export async function refresh() {
  if (reading) { readAgain = true; return; }
  const early = lastRead + READ_EVERY_MS - Date.now();
  if (early > 0) {
    if (!waiting) waiting = setTimeout(() => { waiting = null; refresh(); }, early);
    return;
  }
  reading = true;
  lastRead = Date.now();
  try {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.redirected || response.status === 403) { window.location.reload(); return; }
    if (response.ok) replaceLiveParts(await response.text());
  } catch (error) {
    console.warn("monitor: reading the figures failed", error);
  } finally {
    reading = false;
    if (readAgain) { readAgain = false; setTimeout(refresh, 100); }
  }
}

function replaceLiveParts(html) {
  const fresh = document.createElement("template");
  fresh.innerHTML = html;
  for (const part of fresh.content.querySelectorAll("[data-live][id]")) {
    const old = document.getElementById(part.id);
    if (old) patch(old, part); // in place: a click on a chat's link as the table is read again still lands
  }
  tick();
  live.dataset.updatedAt = String(Date.now());
}

// "For how long" and "longest wait" count up between reads.
function formatSeconds(total) {
  const s = Math.max(0, Math.floor(total));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-since]")) {
    const since = Date.parse(el.dataset.since);
    if (!Number.isNaN(since)) el.textContent = formatSeconds((now - since) / 1000);
  }
}

function showConnection(state, text) {
  if (!connection) return;
  connection.dataset.state = state;
  connection.textContent = text;
}

let socket = null;
let retry = 0;
let pinger = null;

function connect() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${window.location.host}/ws/monitor/`);
  socket.addEventListener("open", () => {
    retry = 0;
    if (chatId) {
      // Live once the server has joined the chat's group ("watching"): reading before then
      // could miss a message sent in between.
      socket.send(JSON.stringify({ type: "watch", chat_id: chatId }));
    } else {
      showConnection("open", "Live");
      refresh(); // whatever changed before the socket opened (or while it was down)
    }
    clearInterval(pinger);
    pinger = setInterval(() => socket.readyState === WebSocket.OPEN && socket.send('{"type":"ping"}'), 20000);
  });
  socket.addEventListener("message", (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    if (event.type === "watching") {
      showConnection("open", "Live");
      refresh(); // the transcript as it is now; anything later arrives as a change
      return;
    }
    if (event.type !== "monitor.changed") return;
    if (chatId && !event.resync && !(event.chat_ids || []).includes(chatId)) return;
    refresh();
  });
  socket.addEventListener("close", (closing) => {
    clearInterval(pinger);
    if (closing.code === 4401 || closing.code === 4403) {
      showConnection("closed", "Not allowed: sign in as a supervisor");
      return;
    }
    retry = Math.min(retry + 1, 6);
    showConnection("closed", "Reconnecting…");
    setTimeout(connect, 500 * 2 ** (retry - 1));
  });
}

if (live) {
  tick();
  setInterval(tick, 1000);
  connect();
}
