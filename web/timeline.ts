/** The timeline page (GET /): writes/s per node, windows, holes, baselines, dangerous events, restore-before. */
import './style.css';
import { api, forgetToken, query, whenTokenRefused } from './api.js';
import { TimelineChart } from './chart.js';
import { byId, fmtSpan, fmtUs, h } from './dom.js';
import { searchKey } from './key-search.js';
import { eventRow, restoreButton } from './event-table.js';
import { askToken, ensureToken } from './token-prompt.js';
import { MARK_WORDS, type HistoryEvent, type Mark, type NodeInfo, type Rates, type Spans } from './types.js';

interface Range {
  fromUs: number;
  toUs: number;
}

/** What the page shows now; tests read it as `window.flashbackTimeline`. */
const state: { range?: Range; node: string; rates?: Rates; marks: Mark[]; spans: Spans[]; nodes: NodeInfo[] } = {
  node: '',
  marks: [],
  spans: [],
  nodes: [],
};
(window as unknown as { flashbackTimeline: typeof state }).flashbackTimeline = state;

const status = (text: string) => (byId('status').textContent = text);

const chart = new TimelineChart(byId('chart'), {
  zoom: (fromUs, toUs) => void show({ fromUs, toUs: Math.max(toUs, fromUs + 1_000) }),
  hover: (fromUs, toUs) => hoverAt(fromUs, toUs),
});

let loadSeq = 0;
/** Loads and draws a range; the URL's hash keeps it (never the token). */
async function show(range: Range): Promise<void> {
  const mine = ++loadSeq;
  state.range = range;
  history.replaceState(
    null,
    '',
    `#${new URLSearchParams({ from: String(range.fromUs), to: String(range.toUs), node: state.node })}`,
  );
  byId<HTMLInputElement>('from').value = fmtUs(range.fromUs);
  byId<HTMLInputElement>('to').value = fmtUs(range.toUs);
  status('loading…');
  const q = { from: range.fromUs, to: range.toUs, node: state.node || undefined };
  const nodes = state.node ? [state.node] : state.nodes.map((n) => n.node);
  const started = performance.now();
  // The chart is drawn as soon as the rates are in; the marks (a scan of the range's events) follow.
  const marksLoaded = api<{ marks: Mark[] }>(`/timeline/marks${query(q)}`);
  const [rates, spans] = await Promise.all([
    api<Rates>(`/timeline/rates${query({ ...q, buckets: Math.floor(chart.width() / 2) })}`),
    Promise.all(nodes.map((n) => api<Spans>(`/timeline/nodes/${encodeURIComponent(n)}/spans`))),
  ]);
  if (mine !== loadSeq) return;
  Object.assign(state, { rates, marks: [], spans });
  chart.show({ rates, marks: [], spans });
  const chartMs = Math.round(performance.now() - started);
  status(`${fmtSpan(rates.bucketUs)} buckets · ${chartMs} ms · looking for dangerous events…`);
  showTotals(rates);
  byId('marks')
    .querySelector('tbody')!
    .replaceChildren(h('tr', {}, h('td', { colspan: 6 }, 'looking…')));
  const { marks } = await marksLoaded;
  if (mine !== loadSeq) return;
  state.marks = marks;
  chart.show({ rates, marks, spans });
  status(
    `${fmtSpan(rates.bucketUs)} buckets · chart ${chartMs} ms, marks ${Math.round(performance.now() - started)} ms`,
  );
  showMarks(marks, range);
}

function showTotals(rates: Rates): void {
  const el = byId('totals');
  el.replaceChildren(
    ...rates.nodes.map((s) => {
      const total = s.counts.reduce((a, b) => a + b, 0);
      const peak = Math.max(0, ...s.counts) * (1e6 / rates.bucketUs);
      return h(
        'span',
        { class: 'total', 'data-node': s.node, 'data-writes': total },
        h('b', {}, s.node),
        ` ${total.toLocaleString('en')} writes in range · peak ${+peak.toFixed(1)}/s`,
      );
    }),
  );
  if (rates.nodes.length === 0) el.replaceChildren(h('span', { class: 'total' }, 'no writes in this range'));
}

function showMarks(marks: Mark[], range: Range): void {
  byId('marks-note').textContent =
    range.toUs - range.fromUs > 3_600e6 ? '(type changes are looked for in ranges up to 1 h: zoom in to see them)' : '';
  const body = byId('marks').querySelector('tbody')!;
  body.replaceChildren(
    ...marks.map((m) =>
      h(
        'tr',
        { class: `mark ${m.kind}`, 'data-kind': m.kind, 'data-seq': m.seq, 'data-ts': m.tsUs },
        h('td', {}, fmtUs(m.tsUs)),
        h('td', {}, m.node),
        h('td', {}, m.command ? `${m.command} · ${MARK_WORDS[m.kind] ?? m.kind}` : (MARK_WORDS[m.kind] ?? m.kind)),
        h('td', {}, m.client),
        h('td', { class: 'args' }, m.summary),
        h('td', {}, restoreButton(m, `${m.command} by ${m.client}: ${m.summary}`)),
      ),
    ),
  );
  if (marks.length === 0) body.replaceChildren(h('tr', {}, h('td', { colspan: 6 }, 'none in this range')));
}

let hoverTimer: ReturnType<typeof setTimeout> | undefined;
let hovered = '';
function hoverAt(fromUs: number, toUs: number): void {
  const k = `${fromUs}-${toUs}-${state.node}`;
  if (k === hovered) return;
  hovered = k;
  clearTimeout(hoverTimer);
  hoverTimer = setTimeout(async () => {
    const { events } = await api<{ events: HistoryEvent[] }>(
      `/events${query({ node: state.node || undefined, since: fromUs, until: toUs - 1, limit: 50 })}`,
    );
    if (hovered !== k) return;
    byId('cursor-note').textContent =
      `${fmtUs(fromUs)} + ${fmtSpan(toUs - fromUs)}: ${events.length === 50 ? 'the last 50' : events.length} events`;
    byId('cursor-events')
      .querySelector('tbody')!
      .replaceChildren(...events.filter((e) => e.kind !== 'heartbeat').map((e) => eventRow(e)));
  }, 250);
}

function parseTime(text: string): number {
  const t = text.trim().replace(' ', 'T');
  const ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(t) ? t : `${t}Z`);
  if (Number.isNaN(ms)) throw new Error(`"${text}" is not a time; use YYYY-MM-DD HH:MM:SS[.ffffff] (UTC)`);
  const frac = /\.(\d+)/.exec(t)?.[1] ?? '';
  return Math.floor(ms / 1000) * 1e6 + Number(frac.slice(0, 6).padEnd(6, '0'));
}

/** The whole stored history of the shown nodes (with a margin), or the last hour when nothing is stored. */
async function allHistory(): Promise<Range> {
  const names = state.node ? [state.node] : state.nodes.map((n) => n.node);
  const spans = await Promise.all(names.map((n) => api<Spans>(`/timeline/nodes/${encodeURIComponent(n)}/spans`)));
  const starts = spans.flatMap((s) => [...s.windows.map((w) => w.fromTsUs), ...s.baselines.map((b) => b.tsUs)]);
  const ends = state.nodes.filter((n) => names.includes(n.node)).map((n) => n.lastTsUs);
  const to = ends.length > 0 ? Math.max(...ends) : Date.now() * 1000;
  const from = starts.length > 0 ? Math.min(...starts) : to - 3_600e6;
  const pad = Math.max(1e6, Math.round((to - from) * 0.03));
  return { fromUs: from - pad, toUs: to + pad };
}

async function loadNodes(): Promise<void> {
  state.nodes = (await api<{ nodes: NodeInfo[] }>('/nodes')).nodes;
  const select = byId<HTMLSelectElement>('node');
  select.replaceChildren(
    h('option', { value: '' }, 'every node'),
    ...state.nodes.map((n) => h('option', { value: n.node }, n.node)),
  );
  select.value = state.nodes.some((n) => n.node === state.node) ? state.node : '';
  state.node = select.value;
}

function wire(): void {
  byId<HTMLSelectElement>('node').addEventListener('change', (e) => {
    state.node = (e.target as HTMLSelectElement).value;
    if (state.range) void show(state.range);
  });
  for (const b of document.querySelectorAll<HTMLButtonElement>('[data-span]'))
    b.addEventListener('click', () => {
      const span = Number(b.dataset.span);
      const end = state.range?.toUs ?? Date.now() * 1000;
      void show({ fromUs: end - span, toUs: end });
    });
  byId('all').addEventListener('click', async () => void show(await allHistory()));
  byId('zoom-out').addEventListener('click', () => {
    if (!state.range) return;
    const span = state.range.toUs - state.range.fromUs;
    void show({ fromUs: Math.max(0, state.range.fromUs - span), toUs: state.range.toUs + span });
  });
  byId('range-form').addEventListener('submit', (e) => {
    e.preventDefault();
    try {
      void show({
        fromUs: parseTime(byId<HTMLInputElement>('from').value),
        toUs: parseTime(byId<HTMLInputElement>('to').value),
      });
    } catch (err) {
      status((err as Error).message);
    }
  });
  byId('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void searchKey(byId<HTMLInputElement>('key-input').value, state.node);
  });
  byId('signout').hidden = false;
  byId('signout').addEventListener('click', () => {
    forgetToken();
    location.reload();
  });
  // A token that stops working (rotated on the server) is asked for again; the page then reloads its data.
  let asking = false;
  whenTokenRefused(async (e) => {
    if (asking) return;
    asking = true;
    forgetToken();
    await askToken(`The API refused the token (${e.status}); give a valid one.`);
    asking = false;
    if (state.range) void show(state.range);
  });
}

window.addEventListener('unhandledrejection', (e) =>
  status(`error: ${(e.reason as Error)?.message ?? String(e.reason)}`),
);

await ensureToken();
byId('app').hidden = false;
wire();
const hash = new URLSearchParams(location.hash.slice(1));
state.node = hash.get('node') ?? '';
await loadNodes();
const from = Number(hash.get('from'));
const to = Number(hash.get('to'));
await show(from > 0 && to > from ? { fromUs: from, toUs: to } : await allHistory());
