import { fmtUs, h } from './dom.js';
import { openRestore } from './restore-flow.js';
import type { HistoryEvent } from './types.js';

/** The "restore before" button of an event. */
export function restoreButton(ref: { node: string; epoch: number; seq: number; tsUs: number }, what: string) {
  return h(
    'button',
    { type: 'button', class: 'restore', onclick: () => openRestore({ ...ref, what }) },
    'restore before',
  );
}

/** A row of an event table. */
export function eventRow(e: HistoryEvent, extra: (Node | string)[] = []): HTMLTableRowElement {
  return h(
    'tr',
    { 'data-seq': e.seq },
    h('td', {}, fmtUs(e.tsUs)),
    h('td', {}, e.node),
    h('td', {}, String(e.db)),
    h('td', {}, e.client),
    h('td', {}, e.kind === 'command' ? e.command : `${e.command} (${e.kind})`),
    h('td', { class: 'args' }, e.keys.slice(0, 5).join(' ') + (e.keys.length > 5 ? ` … (${e.keys.length})` : '')),
    h(
      'td',
      { class: 'args' },
      e.args
        .slice(0, 8)
        .map((a) => (a.length > 40 ? `${a.slice(0, 39)}…` : a))
        .join(' '),
    ),
    h('td', {}, restoreButton(e, `${e.command} by ${e.client}`), ...extra),
  );
}
