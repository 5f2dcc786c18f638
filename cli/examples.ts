/**
 * Examples shown by `flashback <command> --help`, per command: [command line, what it does]. Kept beside the command
 * list (cli/main.ts) rather than in each command module so the wording stays one voice; test/cli-ops.test.ts checks
 * every command has some.
 */
export const EXAMPLES: Record<string, [string, string][]> = {
  up: [
    ['$0 up --demo --fast', 'the whole stack on this machine, and the seed demo on a scratch Redis'],
    ['$0 up --redis redis://127.0.0.1:6379', 'capture your own Redis; prints the API URL and token'],
    ['$0 up --data-dir /var/lib/flashback --api-port 7480', 'keep the stack (NATS, ClickHouse, token) elsewhere'],
  ],
  demo: [['$0 demo --redis redis://127.0.0.1:6390 --node demo', 'the seed scenario against a running stack']],
  agent: [
    [
      '$0 agent --redis redis://10.0.0.5:6379 --nats nats://10.0.0.2:4222 --node-id cache-1',
      'capture one Redis master as a replica of it',
    ],
    ['$0 agent --redis redis://10.0.0.5:6379 --source monitor', 'for a server that refuses PSYNC (managed Redis)'],
  ],
  'anchor-keeper': [
    ['$0 anchor-keeper --redis redis://10.0.0.5:6379', "keep time in the node's stream while its agent is away"],
  ],
  sink: [
    [
      '$0 sink --nats nats://10.0.0.2:4222 --clickhouse http://10.0.0.3:8123 --health-port 9102',
      'move events from JetStream into ClickHouse',
    ],
  ],
  'nats-setup': [
    [
      '$0 nats-setup --nats nats://10.0.0.2:4222,nats://10.0.0.3:4222,nats://10.0.0.4:4222 --nats-user flashback-admin --replicas 3',
      'once, before the services start: R3 stream, buckets and job queue on a 3-server cluster',
    ],
  ],
  sql: [
    [
      '$0 sql "SELECT time, client, command, args FROM flashback.events WHERE key = \'userprofile\' ORDER BY seq DESC LIMIT 20"',
      'who changed a key, newest first',
    ],
    [
      '$0 sql "SELECT command, count() AS n FROM flashback.events WHERE time > now() - 600 GROUP BY command ORDER BY n DESC" --format json',
      'what ran in the last 10 minutes, as JSON',
    ],
  ],
  restore: [
    ['$0 restore --node 127.0.0.1:6379 --to -5m --spawn', 'the node as it was 5 minutes ago, in a new instance'],
    ["$0 restore --node 127.0.0.1:6379 --to '2026-08-03 20:28:10' --spawn", 'at a local time'],
    [
      '$0 restore --node 127.0.0.1:6379 --before-seq 48213 --target redis://127.0.0.1:6390',
      'just before one bad event, into an existing empty Redis',
    ],
    [
      "$0 restore --node 127.0.0.1:6379 --to '10 minutes ago' --keys 'user:*' --rdb users.rdb",
      'some keys only, as an RDB file',
    ],
  ],
  windows: [
    ['$0 windows', 'restorable windows of every node'],
    ['$0 windows --node 127.0.0.1:6379 --json', 'one node, as JSON'],
  ],
  api: [
    [
      'FLASHBACK_API_TOKENS=$(cat /etc/flashback/token) $0 api --host 0.0.0.0 --port 7480',
      'serve the HTTP API (the token comes from the environment, never argv)',
    ],
  ],
  restorer: [['$0 restorer --instances-dir /var/lib/flashback/instances', 'run restore jobs from the work queue']],
  history: [
    ['$0 history --key userprofile', 'the events that touched a key, newest first'],
    ['$0 history --node 127.0.0.1:6379 --key userprofile --since -1h --limit 20', 'within the last hour'],
  ],
  instances: [
    ['$0 instances', 'the instances restores spawned'],
    ['$0 instances stop 4f1c2a', 'stop one'],
  ],
};
