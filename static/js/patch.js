// Redrawing in place, for the agent's lists (built with render.js's h()) and the monitor's
// server-drawn tables: the new content is built whole, then the elements already on screen are
// changed to match it instead of being replaced. A list redrawn under the pointer (a text
// arriving, a call connecting, the monitor's figures read again) then loses no click whose press
// and release straddle the redraw — the browser drops a click whose release lands on an element
// other than the one pressed — and the focused row keeps its focus. Rows are matched by their
// `data-key`; other children by position.

// The handlers listen() attached, per element: patching moves them onto the element it keeps.
const handlers = new WeakMap();

/** addEventListener, remembered so a patch can swap the handler for the new content's. */
export function listen(el, type, fn) {
  el.addEventListener(type, fn);
  if (!handlers.has(el)) handlers.set(el, {});
  handlers.get(el)[type] = fn;
}

/** Make `parent`'s children what `nodes` (fresh elements, rows with a `data-key`) describe,
 * keeping the element of every row still listed. */
export function patchChildren(parent, nodes) {
  const focused = document.activeElement;
  const old = new Map();
  for (const child of parent.children) if (child.dataset.key !== undefined) old.set(child.dataset.key, child);
  let cursor = parent.firstChild;
  for (const node of nodes) {
    const kept = old.get(node.dataset.key);
    let el = node;
    if (kept && kept.tagName === node.tagName) {
      old.delete(node.dataset.key);
      patch(kept, node);
      el = kept;
    }
    if (el === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(el, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
  if (focused !== document.activeElement && focused?.isConnected && parent.contains(focused)) focused.focus({ preventScroll: true });
}

/** Change `el` in place into what `next` (fresh content of the same tag) is: its attributes,
 * handlers, text and children. */
export function patch(el, next) {
  for (const name of el.getAttributeNames()) if (!next.hasAttribute(name)) el.removeAttribute(name);
  for (const name of next.getAttributeNames()) {
    if (el.getAttribute(name) !== next.getAttribute(name)) el.setAttribute(name, next.getAttribute(name));
  }
  for (const [type, fn] of Object.entries(handlers.get(el) || {})) el.removeEventListener(type, fn);
  for (const [type, fn] of Object.entries(handlers.get(next) || {})) el.addEventListener(type, fn);
  handlers.set(el, handlers.get(next) || {});
  if ([...next.children].some((child) => child.dataset.key !== undefined)) {
    patchChildren(el, [...next.children]);
    return;
  }
  const mine = [...el.childNodes];
  const theirs = [...next.childNodes];
  theirs.forEach((child, i) => {
    const have = mine[i];
    if (!have) el.append(child);
    else if (have.nodeName !== child.nodeName) el.replaceChild(child, have);
    else if (child.nodeType === Node.ELEMENT_NODE) patch(have, child);
    else if (have.data !== child.data) have.data = child.data;
  });
  for (const extra of mine.slice(theirs.length)) extra.remove();
}
