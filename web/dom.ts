/** Tiny DOM helpers: elements built from data with textContent only (no HTML from data, ever). */

type Attrs = Record<string, string | number | boolean | undefined | ((e: Event) => void)>;

/** `h('button', { class: 'x', onclick: f }, 'text', child)`. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** The element with this id (the page's skeleton has them all). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

/** µs since 1970 → `2026-08-03 20:28:10.123456` (UTC). */
export function fmtUs(us: number): string {
  const d = new Date(Math.floor(us / 1000));
  const frac = String(Math.round(us % 1_000_000)).padStart(6, '0');
  return `${d.toISOString().slice(0, 19).replace('T', ' ')}.${frac}`;
}

/** A duration in µs as people say it: `250 ms`, `10 s`, `5 min`, `1 h`, `1 d`. */
export function fmtSpan(us: number): string {
  if (us < 1e6) return `${us / 1e3} ms`;
  if (us < 60e6) return `${us / 1e6} s`;
  if (us < 3_600e6) return `${us / 60e6} min`;
  if (us < 86_400e6) return `${us / 3_600e6} h`;
  return `${us / 86_400e6} d`;
}
