/**
 * A password in a URL on the command line (`--redis redis://:pw@host`, `--clickhouse http://u:pw@host`) shows in `ps`
 * to every user of the host. Once started, the process renames itself with those passwords as `***` (Node writes
 * the title over the argv area Linux shows as /proc/<pid>/cmdline). The instant before is still visible: the
 * environment (FLASHBACK_REDIS, FLASHBACK_*_PASSWORD_FILE) is the way that never shows (docs/security.md).
 */
export function hideArgvSecrets(argv: readonly string[] = process.argv): boolean {
  const hidden = argv.map((a) => a.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]+@/gi, '$1***@'));
  if (hidden.every((a, i) => a === argv[i])) return false;
  process.title = ['flashback', ...hidden.slice(2)].join(' ');
  return true;
}
