// Tiny DOM helpers. User text always goes in as text, never as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);

/**
 * h('button', {class: 'x', 'aria-label': 'Close', onclick: fn}, 'text', child)
 * Attributes set to null/undefined/false are left out; true gives "".
 * `html` sets innerHTML: only for the app's own static markup (icons).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'html') el.innerHTML = value;
    else if (key === 'style' && typeof value === 'object') Object.assign(el.style, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A stable hue for a name, for avatar colours. */
export function hueFor(text) {
  let hash = 0;
  for (const ch of String(text ?? '')) hash = (hash * 31 + ch.codePointAt(0)) | 0;
  return Math.abs(hash) % 360;
}

export function setPressed(button, pressed) {
  button.setAttribute('aria-pressed', pressed ? 'true' : 'false');
}
