import type { ArgumentsCamelCase, Argv } from 'yargs';
import { EVENT_STREAM, BASELINE_BUCKET, connectNats, natsJetStreamManager } from '../../core/bus/nats.js';
import { INSTANCES_BUCKET, JOBS_BUCKET, RESTORE_STREAM } from '../../core/bus/restore-jobs.js';
import { parseDuration } from '../duration.js';
import { natsAuthFrom, natsAuthOptions, natsOption } from '../options.js';
import { prepareNats } from '../stack-secrets.js';

export const command = 'nats-setup';
export const describe =
  'create the event stream, baseline bucket and restore-job queue, with JetStream replicas (run once, as the NATS admin)';

export function builder(y: Argv) {
  return y
    .option('nats', natsOption)
    .options(natsAuthOptions)
    .option('replicas', {
      type: 'number',
      default: 1,
      describe:
        'JetStream replicas of each (3 on a 3-server cluster: one server may be down); changes an existing stream',
    })
    .option('retention', { type: 'string', default: '7d', describe: 'how long the event stream keeps events' });
}

type Args = ArgumentsCamelCase<Awaited<ReturnType<typeof builder>['argv']>>;

export async function handler(args: Args): Promise<void> {
  const auth = natsAuthFrom(args);
  await prepareNats(args.nats, auth ?? {}, parseDuration(args.retention, '--retention'), args.replicas);
  // What exists now, as the server says: a bucket made earlier keeps its own replicas.
  const nc = await connectNats({ url: args.nats, name: 'flashback nats-setup', auth });
  try {
    const jsm = await natsJetStreamManager(nc);
    for (const name of [
      EVENT_STREAM,
      `OBJ_${BASELINE_BUCKET}`,
      RESTORE_STREAM,
      `KV_${JOBS_BUCKET}`,
      `KV_${INSTANCES_BUCKET}`,
    ]) {
      const info = await jsm.streams.info(name);
      const where = info.cluster?.leader ? `, leader ${info.cluster.leader}` : '';
      process.stdout.write(`${name}: ${info.config.num_replicas} replica(s)${where}\n`);
    }
  } finally {
    await nc.close();
  }
}
