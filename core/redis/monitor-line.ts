/** One line of MONITOR output, decoded to bytes. */
export interface MonitorLine {
  /** Server time of the command in µs. */
  tsUs: number;
  /** Database the client had selected. */
  db: number;
  /** `ip:port`, `[ipv6]:port`, `lua`, or `unix:/path` exactly as printed. */
  client: string;
  /** Arguments, unescaped to their exact bytes; argv[0] is the command name as sent. */
  argv: Buffer[];
}
