import net from 'node:net';

/**
 * A TCP port that was free on `host` a moment ago, picked by the OS.
 * Another process may take it before the server binds it: launchers retry
 * with a new port when the server reports "address already in use".
 * @param host interface to probe; @default '127.0.0.1'
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
