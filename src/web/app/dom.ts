/// <reference lib="dom" />
// Owns building DOM nodes: every string goes in as text (textContent), never as HTML.

type Attrs = Record<string, string | boolean | number | undefined>;
type Child = Node | string | null | undefined | false;

/**
 * `h("p", { class: "x" }, "text", child)`: an element with attributes and children. Strings are
 * text nodes; there is no way to pass markup. Attributes named `on…` are refused (handlers are
 * attached with addEventListener by the caller), so no string becomes code.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k.startsWith("on")) throw new Error(`Cannot set ${k}: attach handlers in code`);
    el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

/** The element with `id`, typed; throws when the page lacks it. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`Cannot find #${id}`);
  return el as T;
}

/** Replaces an element's content with text. */
export function setText(el: Element, text: string): void {
  el.textContent = text;
}
