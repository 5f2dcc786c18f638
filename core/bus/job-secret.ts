import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, ErrorCode, FlashbackError } from '../errors.js';

/**
 * Secrets in restore jobs (a target's password, a restored instance's generated password) cross NATS and rest in
 * its job KV only sealed: AES-256-GCM under a key that the API and the restorers hold and NATS never sees
 * (`--job-key-file`, env FLASHBACK_JOB_KEY_FILE; `flashback up` makes one). The job id and the secret's purpose are
 * the associated data, so a sealed value copied into another job, or into another field, does not open.
 */

/** A job key: 32 bytes. */
export type JobKey = Buffer;

/** What a sealed value is for; part of what the tag authenticates. */
export type SecretPurpose = 'target' | 'instance-password';

const PREFIX = 'v1';

/** A new random job key as 64 hex digits (what a key file holds). */
export function newJobKeyText(): string {
  return randomBytes(32).toString('hex');
}

/** Parses a key file's text: 64 hex digits (surrounding white space ignored). */
export function parseJobKey(text: string, where = 'the job key'): JobKey {
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex))
    throw new ConfigError(
      `${where} is not 64 hex digits (32 bytes); make one with: openssl rand -hex 32 > job-key && chmod 600 job-key`,
    );
  return Buffer.from(hex, 'hex');
}

/** Reads a job key file (ConfigError naming the file, never its content). */
export function readJobKeyFile(file: string): JobKey {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(`cannot read the job key file ${file}: ${(cause as Error).message}`, { cause });
  }
  return parseJobKey(text, `job key file ${file}`);
}

/**
 * The job key from options or the environment: `key` as given, else the file `keyFile`, else
 * FLASHBACK_JOB_KEY_FILE; undefined when none is configured.
 */
export function loadJobKey(
  o: { key?: JobKey; keyFile?: string } = {},
  env: NodeJS.ProcessEnv = process.env,
): JobKey | undefined {
  if (o.key) return parseJobKey(o.key.toString('hex'));
  const file = o.keyFile ?? env.FLASHBACK_JOB_KEY_FILE;
  return file ? readJobKeyFile(file) : undefined;
}

/** The key in `file`, made (mode 600, its dir 700) when there is none yet: `flashback up` keeps one per data dir. */
export async function ensureJobKeyFile(file: string): Promise<JobKey> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (text !== undefined) return parseJobKey(text, `job key file ${file}`);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const made = newJobKeyText();
  await writeFile(file, made + '\n', { mode: 0o600, flag: 'wx' });
  await chmod(file, 0o600);
  return parseJobKey(made);
}

function aad(jobId: string, purpose: SecretPurpose): Buffer {
  return Buffer.from(`flashback-job:${jobId}:${purpose}`);
}

/** Seals `secret` for job `jobId`: `v1.<iv>.<ciphertext>.<tag>`, base64url parts. */
export function seal(key: JobKey, jobId: string, purpose: SecretPurpose, secret: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad(jobId, purpose));
  const body = Buffer.concat([c.update(secret, 'utf8'), c.final()]);
  return [PREFIX, iv, body, c.getAuthTag()].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
}

/**
 * Opens what {@link seal} made for the same job and purpose.
 * @throws FlashbackError CONFIG when the value does not open (another key, another job, altered): the message
 *   names the job and the way out, never the value.
 */
export function unseal(key: JobKey, jobId: string, purpose: SecretPurpose, sealed: string): string {
  const parts = sealed.split('.');
  try {
    if (parts.length !== 4 || parts[0] !== PREFIX) throw new Error('not a sealed value');
    const [iv, body, tag] = parts.slice(1).map((p) => Buffer.from(p, 'base64url'));
    const d = createDecipheriv('aes-256-gcm', key, iv!);
    d.setAAD(aad(jobId, purpose));
    d.setAuthTag(tag!);
    return Buffer.concat([d.update(body!), d.final()]).toString('utf8');
  } catch (cause) {
    throw new FlashbackError(
      ErrorCode.Config,
      `the sealed ${purpose === 'target' ? 'target URL' : 'instance password'} of restore job ${jobId} does not open with this job key: the API and the restorers must share one --job-key-file (FLASHBACK_JOB_KEY_FILE)`,
      { cause },
    );
  }
}
