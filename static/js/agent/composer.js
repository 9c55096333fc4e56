// The open chat's composer: the character and segment counter, "/" shortcuts with a keyboard menu,
// the opt-in suggestion on an outbound chat, a draft per chat, and sending.
import { $, h } from "./render.js";
import { countSegments, MAX_BODY_CHARS } from "./segments.js";

/** The opt-in shortcut in `language`, else the first opt-in shortcut (SPEC S9). */
export function optinShortcut(shortcuts, language) {
  const optins = shortcuts.filter((s) => s.is_opt_in);
  return optins.find((s) => s.language === language) || optins[0] || null;
}

/** mountComposer({store, actions}) → render(topics). */
export function mountComposer({ store, actions }) {
  const { state } = store;
  const input = $("composer-input");
  let shownChatId = null;
  let sending = false;
  let menu = { open: false, items: [], active: 0, token: null };

  function saveDraft() {
    if (state.openChatId) store.apply({ type: "draft.changed", chatId: state.openChatId, text: input.value });
  }

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

  function updateOptinSuggestion() {
    const chat = store.openChat();
    const optin = chat ? optinShortcut(state.shortcuts, chat.language) : null;
    const agentWrote = state.transcript.byAgent() || chat?.last_agent_message_at;
    const show = Boolean(chat && optin && chat.start_type === "outbound" && !agentWrote);
    $("composer-suggestion").hidden = !show;
    if (show) $("composer-optin-keyword").textContent = `/${optin.keyword}`;
  }

  // --- "/" shortcuts -----------------------------------------------------------------------

  // The "/keyword" token being typed at the caret, if any.
  function shortcutToken() {
    const caret = input.selectionStart;
    if (caret !== input.selectionEnd) return null;
    const match = input.value.slice(0, caret).match(/(^|\s)\/([\w-]*)$/);
    if (!match) return null;
    return { start: caret - match[2].length - 1, end: caret, query: match[2].toLowerCase() };
  }

  function shortcutsFor(chat) {
    const lang = chat?.language;
    const inLang = state.shortcuts.filter((s) => !lang || !s.language || s.language === lang);
    return inLang.length ? inLang : state.shortcuts;
  }

  function updateShortcutMenu() {
    const token = shortcutToken();
    if (!token) return closeShortcutMenu();
    const starts = (s) => Number(s.keyword.toLowerCase().startsWith(token.query));
    const items = shortcutsFor(store.openChat())
      .filter((s) => starts(s) || (token.query.length > 1 && s.keyword.toLowerCase().includes(token.query)))
      .sort((a, b) => starts(b) - starts(a) || a.keyword.localeCompare(b.keyword))
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
    saveDraft();
    updateCounter();
    input.focus();
  }

  function menuKey(ev) {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      const step = ev.key === "ArrowDown" ? 1 : -1;
      menu.active = (menu.active + step + menu.items.length) % menu.items.length;
      renderShortcutMenu();
    } else if (ev.key === "Enter" || ev.key === "Tab") {
      pickShortcut(menu.active);
    } else if (ev.key === "Escape") {
      closeShortcutMenu();
    } else {
      return false;
    }
    ev.preventDefault();
    return true;
  }

  input.addEventListener("input", () => {
    updateCounter();
    updateShortcutMenu();
    saveDraft();
  });
  input.addEventListener("click", updateShortcutMenu);
  input.addEventListener("blur", () => setTimeout(closeShortcutMenu, 150));
  input.addEventListener("keydown", (ev) => {
    if (ev.isComposing) return;
    if (menu.open && menuKey(ev)) return;
    if (ev.key === "Enter" && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      $("composer").requestSubmit();
    }
  });

  // --- sending -----------------------------------------------------------------------------

  $("composer").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const chatId = state.openChatId;
    const body = input.value;
    if (!chatId || sending || !body.trim()) return;
    if (countSegments(body).chars > MAX_BODY_CHARS) return updateCounter();
    sending = true;
    $("send-button").disabled = true;
    $("composer-warning").textContent = "";
    const error = await actions.send(chatId, body);
    if (error) {
      $("composer-warning").textContent = error;
      $("composer-warning").dataset.kind = "error";
    } else if (state.openChatId === chatId) {
      input.value = "";
      store.apply({ type: "draft.changed", chatId, text: "" });
    }
    sending = false;
    updateCounter();
    input.focus();
  });

  $("composer-optin-use").addEventListener("click", () => {
    const optin = optinShortcut(state.shortcuts, store.openChat()?.language);
    if (!optin) return;
    input.value = optin.text + (input.value ? `\n${input.value}` : "");
    saveDraft();
    updateCounter();
    input.focus();
  });

  function renderOpen() {
    if (shownChatId === state.openChatId) return;
    shownChatId = state.openChatId;
    input.value = state.openChatId ? state.drafts.get(state.openChatId) || "" : "";
    $("composer-warning").textContent = "";
    $("composer-warning").dataset.kind = "";
    closeShortcutMenu();
    updateCounter();
    if (state.openChatId) input.focus();
  }

  updateCounter();
  return (topics) => {
    if (topics.has("open")) renderOpen();
    if (state.openChatId && ["open", "head", "transcript", "shortcuts"].some((t) => topics.has(t))) updateOptinSuggestion();
  };
}
