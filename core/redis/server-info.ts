/** A server's kind and release as INFO server names them. */
export interface ServerIdentity {
  /** `redis` or `valkey`. */
  server: string;
  /** `8.0.2` (Valkey: `valkey_version`, not the `redis_version` it keeps for clients). */
  version: string;
}

/** A field of an INFO section's text (`name:value` lines). */
export function infoField(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*?)\\r?$`, 'm').exec(info)?.[1];
}

/**
 * The server INFO server describes: Valkey names itself in `server_name` (and keeps `redis_version` at 7.2.4 for
 * clients), Redis has no `server_name` before 8.
 */
export function serverInInfo(info: string): ServerIdentity {
  const valkey = infoField(info, 'valkey_version');
  const server = (infoField(info, 'server_name') ?? (valkey !== undefined ? 'valkey' : 'redis')).toLowerCase();
  return { server, version: (server === 'valkey' ? valkey : undefined) ?? infoField(info, 'redis_version') ?? '' };
}
