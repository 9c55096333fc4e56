// A short chime and a "(n)" title badge for a new offer, chat or consumer message while the tab
// is hidden; the mute toggle is remembered in this browser.

const MUTE_KEY = "tern.agent.muted";

export class Notifier {
  constructor(baseTitle) {
    this.baseTitle = baseTitle;
    this.count = 0;
    this.audio = null;
    this.muted = localStorage.getItem(MUTE_KEY) === "1";
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.clear();
    });
    // Browsers only let a page play sound after a gesture: prepare the audio on the first one.
    const unlock = () => {
      try {
        this.audio = this.audio || new (window.AudioContext || window.webkitAudioContext)();
        this.audio.resume();
      } catch {
        /* no audio */
      }
    };
    document.addEventListener("pointerdown", unlock, { once: true });
    document.addEventListener("keydown", unlock, { once: true });
  }

  setMuted(muted) {
    this.muted = muted;
    localStorage.setItem(MUTE_KEY, muted ? "1" : "0");
  }

  /** Something new arrived. Only signalled when the agent is looking elsewhere. */
  signal() {
    if (!document.hidden) return;
    this.count += 1;
    document.title = `(${this.count}) ${this.baseTitle}`;
    if (!this.muted) this.chime();
  }

  clear() {
    this.count = 0;
    document.title = this.baseTitle;
  }

  chime() {
    try {
      this.audio = this.audio || new (window.AudioContext || window.webkitAudioContext)();
      const ctx = this.audio;
      const now = ctx.currentTime;
      for (const [offset, freq] of [[0, 880], [0.14, 1175]]) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, now + offset);
        gain.gain.exponentialRampToValueAtTime(0.18, now + offset + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.22);
        osc.connect(gain).connect(ctx.destination);
        osc.start(now + offset);
        osc.stop(now + offset + 0.25);
      }
    } catch {
      /* no audio device: the title badge still shows */
    }
  }
}
