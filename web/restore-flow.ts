import { api, ApiError } from './api.js';
import { byId, fmtUs } from './dom.js';
import type { EventRef, JobStatus } from './types.js';

/**
 * "Restore to just before this event": confirmation → POST /restores (beforeSeq, spawn) → progress from
 * GET /restores/{id} → the new instance's URL and a redis-cli line.
 */
export function openRestore(ev: EventRef): void {
  const dialog = byId('restore-dialog');
  const confirmBtn = byId<HTMLButtonElement>('restore-confirm');
  const closeBtn = byId<HTMLButtonElement>('restore-close');
  const progress = byId('restore-progress');
  const bar = byId<HTMLProgressElement>('restore-bar');
  const phase = byId('restore-phase');
  const result = byId('restore-result');
  const error = byId('restore-error');
  byId('restore-what').textContent = `${fmtUs(ev.tsUs)} UTC · seq ${ev.seq} (epoch ${ev.epoch}) · ${ev.what}`;
  byId('restore-node').textContent = ev.node;
  progress.hidden = true;
  result.hidden = true;
  error.textContent = '';
  confirmBtn.hidden = false;
  confirmBtn.disabled = false;
  closeBtn.textContent = 'Cancel';
  dialog.hidden = false;
  let stopped = false;
  const close = () => {
    stopped = true;
    dialog.hidden = true;
    byId<HTMLInputElement>('restore-password').value = '';
    confirmBtn.onclick = null;
    closeBtn.onclick = null;
  };
  closeBtn.onclick = close;
  byId('restore-password-show').onclick = () => {
    const pw = byId<HTMLInputElement>('restore-password');
    pw.type = pw.type === 'password' ? 'text' : 'password';
  };
  confirmBtn.onclick = async () => {
    confirmBtn.disabled = true;
    error.textContent = '';
    try {
      const { id } = await api<{ id: string }>('/restores', {
        method: 'POST',
        body: { node: ev.node, epoch: ev.epoch, beforeSeq: ev.seq, spawn: {} },
      });
      confirmBtn.hidden = true;
      closeBtn.textContent = 'Close';
      progress.hidden = false;
      phase.textContent = `job ${id}: queued`;
      for (;;) {
        if (stopped) return;
        const job = await api<JobStatus>(`/restores/${encodeURIComponent(id)}`);
        const total = job.progress.totalEvents;
        bar.max = Math.max(1, total);
        bar.value = job.state === 'done' ? bar.max : Math.min(job.progress.events, bar.max);
        phase.textContent = `job ${id}: ${job.state}, ${job.progress.phase}${total > 0 ? ` ${job.progress.events}/${total} events` : ''}`;
        if (job.state === 'failed') {
          error.textContent = `The restore failed: ${job.error?.message ?? 'no reason given'}`;
          return;
        }
        if (job.state === 'done') {
          const url = job.report?.url ?? '';
          byId('restore-url').textContent = url;
          byId('restore-cli').textContent = redisCliLine(url);
          // The instance's generated password comes in the first answer after the job is done, and never again.
          const pw = byId<HTMLInputElement>('restore-password');
          pw.value = job.password ?? '';
          byId('restore-password-row').hidden = job.password === undefined;
          byId('restore-warnings').textContent = (job.report?.warnings ?? []).join(' ');
          result.hidden = false;
          return;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    } catch (e) {
      error.textContent = e instanceof ApiError ? `${e.code}: ${e.message}` : String(e);
      confirmBtn.disabled = false;
    }
  };
}

/**
 * `redis-cli -h H -p P` for a redis:// URL. A password is never put on the command line (others can read argv):
 * `--askpass` makes redis-cli ask for it.
 */
export function redisCliLine(url: string): string {
  try {
    const u = new URL(url);
    const db = u.pathname.replace('/', '');
    return `redis-cli -h ${u.hostname} -p ${u.port || '6379'}${db ? ` -n ${db}` : ''}${u.password ? ' --askpass' : ''}${u.protocol === 'rediss:' ? ' --tls' : ''}`;
  } catch {
    return `redis-cli -u ${url}`;
  }
}
