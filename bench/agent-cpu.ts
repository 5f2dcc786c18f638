/**
 * The agent's CPU per event under a saturating pipelined load, alone with its source and NATS (no ClickHouse): the
 * agent runs in this process, so `node --cpu-prof --import tsx bench/agent-cpu.ts` profiles exactly it.
 * `--attribution` adds MONITOR; `-n`/`-P` set redis-benchmark's size and pipeline. Prints µs of agent CPU per event.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startAgent } from '../agent/agent.js';
import { silentLogger } from '../core/log.js';
import { startNatsServer } from '../core/servers/nats-server.js';
import { startRedisServer } from '../core/servers/redis-server.js';

const { values } = parseArgs({
  options: {
    attribution: { type: 'boolean', default: false },
    n: { type: 'string', default: '400000' },
    P: { type: 'string', default: '16' },
  },
});
const redis = await startRedisServer({ args: ['--save', '', '--appendonly', 'no'] });
const nats = await startNatsServer();
const agent = await startAgent({
  redisUrl: redis.url,
  nodeId: 'cpu',
  natsUrl: nats.url,
  logger: silentLogger,
  source: 'replication',
  attribution: values.attribution ? 'monitor' : 'off',
});
/** CPU ms a process has used (/proc/<pid>/stat utime + stime, at 100 ticks/s). */
const cpuMsOf = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * 10;
};
const natsBefore = cpuMsOf(nats.pid);
const redisBefore = cpuMsOf(redis.pid);
const before = process.cpuUsage();
const t0 = performance.now();
const port = new URL(redis.url).port;
// Asynchronous: a synchronous child would block the agent's event loop for the whole run.
await new Promise<void>((resolve, reject) =>
  execFile(
    'redis-benchmark',
    ['-p', port, '-t', 'set', '-n', values.n!, '-P', values.P!, '-c', '50', '-r', '100000', '-q'],
    (err) => (err ? reject(err) : resolve()),
  ),
);
const benchMs = performance.now() - t0;
await agent.flush();
const cpu = process.cpuUsage(before);
const events = Number(values.n);
const redisCpuMs = cpuMsOf(redis.pid) - redisBefore;
console.log(
  JSON.stringify({
    benchMs: Math.round(benchMs),
    kopsPerSec: Math.round(events / benchMs),
    agentCpuMs: Math.round((cpu.user + cpu.system) / 1000),
    usPerEvent: +((cpu.user + cpu.system) / events).toFixed(2),
    natsCpuMs: cpuMsOf(nats.pid) - natsBefore,
    redisCpuMs,
    // The baseline of the same run: the source's own CPU per SET (absolute figures move with the machine's load).
    agentPerSourceCpu: +((cpu.user + cpu.system) / 1000 / redisCpuMs).toFixed(2),
    // Replication mode's time resolution without attribution: the anchors' spacing under this load.
    anchorsPerSecond: Math.round((agent.stats().anchorsSent ?? 0) / (benchMs / 1000)),
  }),
);
await agent.close();
await nats.stop();
await redis.stop();
