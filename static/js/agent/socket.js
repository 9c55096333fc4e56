// /ws/agent/: a websocket that reconnects by itself (backoff up to 15 s), pings every 20 s to
// keep the agent's presence, and hands each event to `onEvent`. Events carry a per-connection
// `seq`; a gap, a `stream.gap` frame (the server found pushes dropped before they reached this
// socket) or any new connection calls `onResync` so the page reloads what it may have missed
// (GET state and the open transcript).

const PING_MS = 20_000;
const MAX_BACKOFF_MS = 15_000;

export class AgentSocket {
  constructor({ onEvent, onResync, onStatus, onRefused }) {
    this.onEvent = onEvent;
    this.onResync = onResync;
    this.onStatus = onStatus;
    this.onRefused = onRefused;
    this.ws = null;
    this.seq = 0;
    this.attempt = 0;
    this.pingTimer = null;
    this.retryTimer = null;
    this.paused = false;
  }

  url() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${window.location.host}/ws/agent/`;
  }

  connect() {
    if (this.paused) return;
    clearTimeout(this.retryTimer);
    this.onStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.addEventListener("message", (msg) => {
      let event;
      try {
        event = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (event.type === "pong") return;
      if (event.type === "stream.gap") {
        // The server saw that the channel layer dropped pushes meant for this page.
        this.onResync("gap");
        return;
      }
      if (typeof event.seq === "number") {
        const gap = this.seq && event.seq !== this.seq + 1;
        this.seq = event.seq;
        if (event.type === "hello") {
          this.attempt = 0;
          this.onStatus("live");
          this.onResync("connected");
          return;
        }
        if (gap) this.onResync("gap");
      }
      this.onEvent(event);
    });
    ws.addEventListener("open", () => {
      this.seq = 0;
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_MS);
    });
    ws.addEventListener("close", (ev) => {
      clearInterval(this.pingTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      if (ev.code === 4401 || ev.code === 4403) {
        this.onRefused(ev.code);
        return;
      }
      if (this.paused) {
        this.onStatus("paused");
        return;
      }
      this.attempt += 1;
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.attempt - 1, 5)) * (0.75 + Math.random() / 2);
      this.onStatus("reconnecting");
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
  }

  send(data) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(data));
  }

  /** Drop the connection and stay away until resume() (used by the reconnect test). */
  pause() {
    this.paused = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close();
  }

  resume() {
    this.paused = false;
    this.attempt = Math.max(this.attempt, 1);
    this.connect();
  }

  /** Reconnect now (after the browser comes back online). */
  kick() {
    if (!this.ws && !this.paused) {
      this.attempt = Math.max(this.attempt, 1);
      this.connect();
    }
  }
}
