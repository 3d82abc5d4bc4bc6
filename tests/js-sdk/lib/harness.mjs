// What a test file uses: one server for the file, one describe block per SDK version, SDK clients that are
// connected with bounded waits, record their events, and are always shut down after each test.
//
//   const env = useServer();                       // before/after hooks: env.server, env.rest
//   forEachSdk(env, (sdk) => {                     // describe('SDK 2.6.0') and describe('SDK 3.0.1')
//     it('…', async () => {
//       const alice = await sdk.connect('alice');  // initialized, or fails within INIT_TIMEOUT_MS
//       const conversation = await alice.client.createConversation({ friendlyName: 'x' });
//       await alice.log.waitFor('conversationAdded', (c) => c.sid === conversation.sid);
//     });
//   });

import { after, afterEach, before, describe } from 'node:test';
import { randomBytes } from 'node:crypto';
import http from 'node:http';

import { EventLog, withTimeout } from './events.mjs';
import { startProxy } from './proxy.mjs';
import { SDK_VERSIONS, loadSdk } from './sdk.mjs';
import { startServer } from './server.mjs';

/** How long a client may take to initialise before the test fails (ms). */
export const INIT_TIMEOUT_MS = Number(process.env.PALAVER_INIT_TIMEOUT_MS || 15_000);
const SHUTDOWN_TIMEOUT_MS = 5_000;

/** Every event the Client emits (the conversation, participant and message events are re-emitted by it). */
export const CLIENT_EVENTS = [
  'connectionStateChanged',
  'connectionError',
  'initialized',
  'initFailed',
  'stateChanged',
  'tokenAboutToExpire',
  'tokenExpired',
  'conversationAdded',
  'conversationJoined',
  'conversationLeft',
  'conversationRemoved',
  'conversationUpdated',
  'participantJoined',
  'participantLeft',
  'participantUpdated',
  'messageAdded',
  'messageRemoved',
  'messageUpdated',
  'typingStarted',
  'typingEnded',
  'userSubscribed',
  'userUpdated',
];

/** A name no other test uses: `prefix-<hex>`. */
export function unique(prefix = 'x') {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/**
 * Starts one server for the enclosing file (or suite) in a `before` hook and stops it in `after`.
 * The returned object gets `server` (a `PalaverServer`), `rest` and `wsconnect` (the HTTP status of a
 * WebSocket upgrade on `/v3/wsconnect`: 101 when the endpoint is served) once the hook ran.
 */
export function useServer(options = {}) {
  const env = { server: null, rest: null, wsconnect: null };
  before(async () => {
    env.server = await startServer(options);
    env.rest = env.server.rest;
    env.wsconnect = await probeUpgrade(env.server.port, '/v3/wsconnect');
  });
  after(async () => {
    await env.server?.stop();
  });
  return env;
}

/** Declares `body(sdk)` once per SDK version under test, each in its own `describe`. */
export function forEachSdk(env, body) {
  for (const version of SDK_VERSIONS) {
    describe(`SDK ${version}`, () => {
      const sdk = new SdkUnderTest(env, version);
      before(async () => {
        await sdk.load();
      });
      afterEach(async () => {
        await sdk.shutdownAll();
      });
      after(async () => {
        await sdk.shutdownAll();
      });
      body(sdk);
    });
  }
}

/** One SDK version against the file's server: makes clients and shuts them down. */
export class SdkUnderTest {
  constructor(env, version) {
    this.env = env;
    this.version = version;
    this.module = null;
    this.clients = new Set();
  }

  async load() {
    this.module = await loadSdk(this.version);
  }

  get Client() {
    return this.module.Client;
  }

  get server() {
    return this.env.server;
  }

  get rest() {
    return this.env.rest;
  }

  /** Client options pointing every SDK endpoint at `port` (the server's, or a proxy's). */
  clientOptions(port = this.server.port, extra = {}) {
    const base = `http://127.0.0.1:${port}`;
    return {
      twilsock: { uri: `ws://127.0.0.1:${port}/v3/wsconnect` },
      apiUri: base,
      cdsUri: base,
      logLevel: process.env.PALAVER_SDK_LOG || 'silent',
      ...extra,
    };
  }

  /**
   * A new SDK client for `identity`, not yet waited for. Options: `token` (else a fresh one; `ttl` sets its
   * lifetime), `port` (to go through a proxy), `options` (more client options).
   */
  create(identity, { token, ttl, port, options } = {}) {
    this.requireEndpoint();
    const jwt = token ?? this.server.token(identity, ttl === undefined ? {} : { ttl });
    const client = new this.Client(jwt, this.clientOptions(port, options));
    const testClient = new TestClient(this, identity, client, jwt);
    this.clients.add(testClient);
    return testClient;
  }

  /** `create(...)`, then waits until the client is initialised (rejects with the reason otherwise). */
  async connect(identity, options = {}) {
    const testClient = this.create(identity, options);
    await testClient.ready();
    return testClient;
  }

  /** Fails at once, with the reason, when the server does not even accept a WebSocket on `/v3/wsconnect`. */
  requireEndpoint() {
    if (this.env.wsconnect !== 101) {
      throw new Error(
        `the server does not serve the twilsock endpoint: a WebSocket upgrade on /v3/wsconnect answered ` +
          `${this.env.wsconnect} (expected 101)`,
      );
    }
  }

  /** A TCP proxy to the server, closed with the other clients after the test. */
  async proxy() {
    const proxy = await startProxy(this.server.port);
    this.clients.add({ shutdown: () => proxy.close() });
    return proxy;
  }

  async shutdownAll() {
    const clients = [...this.clients];
    this.clients.clear();
    await Promise.all(clients.map((c) => c.shutdown()));
  }
}

/** An SDK `Client` with the log of everything it emitted. */
export class TestClient {
  constructor(sdk, identity, client, token) {
    this.sdk = sdk;
    this.identity = identity;
    this.client = client;
    this.token = token;
    this.log = new EventLog().watch(client, CLIENT_EVENTS);
    this.initialized = false;
    this.closed = false;
  }

  /** Waits for `initialized`; rejects on `initFailed` or after INIT_TIMEOUT_MS, with what the client said. */
  async ready(timeout = INIT_TIMEOUT_MS) {
    try {
      const outcome = await this.log.waitForFirst(['initialized', 'initFailed'], { timeout });
      if (outcome.name === 'initFailed') {
        throw new Error(`initFailed: ${JSON.stringify(outcome.payload?.error ?? outcome.payload)}`);
      }
      this.initialized = true;
      // The client goes on fetching its conversations in the background after `initialized`. When a test ends
      // (and shuts it down) before that fetch does, the SDK leaves the failed fetch unhandled, which the test
      // runner would blame on whichever test runs then; shutdown() waits for it instead.
      this.startup = this.client._conversationsPromise;
      this.startup?.catch(() => {});
    } catch (error) {
      const states = this.log.payloads('connectionStateChanged');
      const errors = this.log.payloads('connectionError').map((e) => e?.message ?? JSON.stringify(e));
      const detail = `connection states [${states.join(', ')}]; connection errors [${errors.join(' | ')}]`;
      throw new Error(`client '${this.identity}' did not initialise: ${error.message}; ${detail}`, { cause: error });
    }
    return this;
  }

  /**
   * Shuts the client down so that no reconnect timer keeps Node alive. `Client.shutdown()` waits for the
   * client's readiness, which never comes when init failed or hangs; then the transport is closed directly.
   */
  async shutdown() {
    if (this.closed) return;
    this.closed = true;
    this.log.detach();
    if (this.initialized) {
      const startup = Promise.resolve(this.startup).catch(() => {});
      await withTimeout(startup, SHUTDOWN_TIMEOUT_MS, 'start-up').catch(() => {});
      await withTimeout(this.client.shutdown(), SHUTDOWN_TIMEOUT_MS, 'Client.shutdown()').catch(() => {});
    }
    const transport = this.client._services?.twilsockClient;
    if (transport) {
      await withTimeout(transport.disconnect(), SHUTDOWN_TIMEOUT_MS, 'twilsock disconnect').catch(() => {});
    }
  }

  /** The conversation with `sid` once this client has joined it (from its `conversationJoined`). */
  joined(sid, options) {
    return this.log.waitFor('conversationJoined', (c) => c.sid === sid, options);
  }
}

/** The HTTP status a WebSocket upgrade request on `path` gets (101 when a WebSocket endpoint is there). */
export function probeUpgrade(port, path) {
  return new Promise((resolve) => {
    const request = http.request({
      host: '127.0.0.1',
      port,
      path,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      },
      timeout: 5000,
    });
    request.on('upgrade', (response, socket) => {
      socket.destroy();
      resolve(response.statusCode);
    });
    request.on('response', (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', (error) => resolve(`error: ${error.message}`));
    request.end();
  });
}
