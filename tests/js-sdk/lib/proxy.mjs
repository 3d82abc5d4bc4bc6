// A TCP proxy in front of the server that a test can cut (every open connection reset, new ones refused) and
// restore, to simulate a dropped network without touching the server or the SDK.

import net from 'node:net';

/**
 * Listens on 127.0.0.1:<free port> and forwards every connection to `targetPort`.
 * @returns {Promise<TcpProxy>}
 */
export async function startProxy(targetPort, targetHost = '127.0.0.1') {
  const proxy = new TcpProxy(targetPort, targetHost);
  await proxy.listen();
  return proxy;
}

export class TcpProxy {
  constructor(targetPort, targetHost) {
    this.targetPort = targetPort;
    this.targetHost = targetHost;
    this.pairs = new Set(); // open [client, upstream] socket pairs
    this.isCut = false;
    this.accepted = 0; // connections forwarded so far
    this.refused = 0; // connections reset while cut
    this.server = net.createServer((client) => this.accept(client));
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve();
      });
    });
  }

  accept(client) {
    if (this.isCut) {
      // The port stays bound (the SDK's URI names it) but nothing gets through: reset at once.
      this.refused += 1;
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    this.accepted += 1;
    const upstream = net.connect(this.targetPort, this.targetHost);
    const pair = [client, upstream];
    this.pairs.add(pair);
    for (const [from, to] of [pair, [upstream, client]]) {
      from.on('error', () => to.destroy());
      from.on('close', () => {
        this.pairs.delete(pair);
        to.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** How many connections are open through the proxy now. */
  get openConnections() {
    return this.pairs.size;
  }

  /** Resets every open connection (both sides) and refuses new ones until `restore()`. */
  cut() {
    this.isCut = true;
    for (const pair of this.pairs) {
      for (const socket of pair) if (!socket.destroyed) socket.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /** Lets connections through again. */
  restore() {
    this.isCut = false;
  }

  close() {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
