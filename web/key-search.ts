import { api, ApiError, query } from './api.js';
import { byId, fmtUs, h } from './dom.js';
import { eventRow } from './event-table.js';
import type { HistoryEvent, KeyValue } from './types.js';

/** Shows one key's history (newest first), each event with "value after" (a scratch restore of that key). */
export async function searchKey(key: string, node: string): Promise<void> {
  const body = byId('key-history').querySelector('tbody')!;
  byId('key-value').replaceChildren();
  const { events } = await api<{ events: HistoryEvent[] }>(
    `/events${query({ node: node || undefined, key, limit: 200 })}`,
  );
  body.replaceChildren(
    ...events.map((e) =>
      eventRow(e, [
        ' ',
        h('button', { type: 'button', class: 'value', onclick: () => void valueAfter(e, key) }, 'value after'),
      ]),
    ),
  );
  if (events.length === 0) body.replaceChildren(h('tr', {}, h('td', { colspan: 8 }, `no event touched "${key}"`)));
}

async function valueAfter(e: HistoryEvent, key: string): Promise<void> {
  const out = byId('key-value');
  const title = `"${key}" right after seq ${e.seq} (${fmtUs(e.tsUs)} UTC, ${e.command})`;
  out.replaceChildren(h('h3', {}, title), h('p', {}, 'restoring the key into a scratch instance…'));
  try {
    const { id } = await api<{ id: string }>('/timeline/values', {
      method: 'POST',
      body: { node: e.node, epoch: e.epoch, seq: e.seq, key, db: e.db },
    });
    for (;;) {
      const s = await api<{
        state: string;
        progress: { phase: string };
        value?: KeyValue;
        error?: { message: string };
      }>(`/timeline/values/${encodeURIComponent(id)}`);
      if (s.state === 'failed') throw new Error(s.error?.message ?? 'the restore failed');
      if (s.state === 'done' && s.value) {
        out.replaceChildren(h('h3', {}, title), renderValue(s.value));
        return;
      }
      out.replaceChildren(h('h3', {}, title), h('p', {}, `${s.state}: ${s.progress.phase}…`));
      await new Promise((r) => setTimeout(r, 400));
    }
  } catch (err) {
    out.replaceChildren(
      h('h3', {}, title),
      h('p', { class: 'error' }, err instanceof ApiError ? `${err.code}: ${err.message}` : String(err)),
    );
  }
}

function renderValue(v: KeyValue): HTMLElement {
  if (v.type === 'none') return h('p', { class: 'value-none' }, 'the key did not exist then');
  const ttl = v.ttlMs >= 0 ? `, expires in ${v.ttlMs} ms from the restore's clock` : '';
  const head = h(
    'p',
    {},
    `${v.type}, ${v.size} ${v.type === 'string' ? 'bytes' : 'items'}${ttl}${v.truncated ? ' (shown in part)' : ''}`,
  );
  if (v.value !== undefined) return h('div', { class: 'value' }, head, h('pre', {}, v.value));
  return h(
    'div',
    { class: 'value' },
    head,
    h(
      'table',
      { class: 'events' },
      h('tbody', {}, ...(v.items ?? []).map((row) => h('tr', {}, ...row.map((c) => h('td', {}, c))))),
    ),
  );
}
