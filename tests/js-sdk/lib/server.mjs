// A real `palaver serve` process on a free port with its own data directory, as the tests' server.
//
// One server per test file: `startServer()` creates an API key in a fresh data directory (the key signs the
// access tokens the SDK presents), starts the binary on 127.0.0.1:0 and waits for its `listening on http://…`
// line. `stop()` sends SIGTERM and removes the data directory.

import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { Rest } from './rest.mjs';
import { mintToken } from './token.mjs';

const execFileAsync = promisify(execFile);

/** The repository root (tests/js-sdk/lib → ../../..). */
export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The server binary: `PALAVER_BIN`, else the debug build. */
export const PALAVER_BIN = process.env.PALAVER_BIN || join(REPO, 'target', 'debug', 'palaver');

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

/** Every server still running, so that a crashing test process does not leave one behind. */
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts a server. `env` adds environment variables for `palaver serve`.
 * @returns {Promise<PalaverServer>}
 */
export async function startServer({ env = {} } = {}) {
  const server = new PalaverServer(env);
  try {
    await server.start();
  } catch (error) {
    await server.stop().catch(() => {});
    throw error;
  }
  return server;
}

export class PalaverServer {
  constructor(extraEnv = {}) {
    this.extraEnv = extraEnv;
    this.accountSid = 'AC' + randomBytes(16).toString('hex');
    this.authToken = randomBytes(16).toString('hex');
    this.dataDir = null;
    this.keySid = null;
    this.keySecret = null;
    this.url = null; // http://127.0.0.1:PORT
    this.port = null;
    this.child = null;
    this.exited = null; // a promise of the exit code once started
    this.output = []; // the last lines of stdout and stderr, for error messages
  }

  /** Environment for every `palaver` command on this server's data directory. */
  env() {
    return {
      ...process.env,
      PALAVER_ACCOUNT_SID: this.accountSid,
      PALAVER_AUTH_TOKEN: this.authToken,
      PALAVER_ENFORCE_TIMER_MINIMUMS: 'false',
      PALAVER_LOG: process.env.PALAVER_TEST_SERVER_LOG || 'warn',
      // The suites set up faster than any client should write (60 conversations at once, say).
      PALAVER_CONVERSATION_RATE: '0',
      PALAVER_SERVICE_RATE: '0',
      PALAVER_CONNECTION_RATE: '0',
      ...this.extraEnv,
    };
  }

  async start() {
    this.dataDir = await mkdtemp(join(tmpdir(), 'palaver-js-sdk-'));
    await this.createKey();
    await this.spawnServe();
  }

  /** `palaver keys create` before the server starts; keeps the SID and secret that sign access tokens. */
  async createKey() {
    const { stdout } = await execFileAsync(
      PALAVER_BIN,
      ['keys', 'create', '--name', 'js-sdk-tests', '--data-dir', this.dataDir],
      { env: this.env(), timeout: 30_000 },
    );
    const sid = /sid:\s*(SK[0-9a-f]{32})/.exec(stdout);
    const secret = /secret:\s*(\S+)/.exec(stdout);
    if (!sid || !secret) throw new Error(`unexpected output of palaver keys create:\n${stdout}`);
    this.keySid = sid[1];
    this.keySecret = secret[1];
  }

  spawnServe() {
    const child = spawn(PALAVER_BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', this.dataDir], {
      env: this.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    running.add(child);
    this.exited = new Promise((resolveExit) => {
      child.on('exit', (code, signal) => {
        running.delete(child);
        resolveExit(code ?? signal);
      });
    });
    const keep = (line) => {
      this.output.push(line);
      if (this.output.length > 200) this.output.shift();
    };
    return new Promise((resolveReady, rejectReady) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        rejectReady(new Error(`palaver did not start within ${READY_TIMEOUT_MS} ms:\n${this.output.join('\n')}`));
      }, READY_TIMEOUT_MS);
      child.on('error', (error) => {
        clearTimeout(timer);
        rejectReady(new Error(`cannot run ${PALAVER_BIN}: ${error.message} (set PALAVER_BIN or build it)`));
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        rejectReady(new Error(`palaver exited (${code ?? signal}) before listening:\n${this.output.join('\n')}`));
      });
      lines(child.stdout, (line) => {
        keep(line);
        const match = /listening on (http:\/\/\S+)/.exec(line);
        if (match && !this.url) {
          this.url = match[1].replace(/\/$/, '');
          this.port = Number(new URL(this.url).port);
          clearTimeout(timer);
          resolveReady();
        }
      });
      lines(child.stderr, (line) => {
        keep(line);
        if (process.env.PALAVER_TEST_SERVER_LOG) process.stderr.write(`[palaver] ${line}\n`);
      });
    });
  }

  /** The REST client authenticated as the account (Basic auth with the account SID and auth token). */
  get rest() {
    this._rest ??= new Rest(this.url, this.accountSid, this.authToken);
    return this._rest;
  }

  /** An access token for `identity`, signed with this server's API key; see `mintToken` for the options. */
  token(identity, options = {}) {
    return mintToken({
      accountSid: this.accountSid,
      keySid: this.keySid,
      keySecret: this.keySecret,
      identity,
      ...options,
    });
  }

  /** Stops the server (SIGTERM, then SIGKILL after a grace period) and removes its data directory. */
  async stop() {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      let timer;
      const grace = new Promise((resolve) => {
        timer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS);
      });
      const result = await Promise.race([this.exited, grace]);
      clearTimeout(timer);
      if (result === 'timeout') {
        child.kill('SIGKILL');
        await this.exited;
      }
    }
    this.child = null;
    if (this.dataDir && !process.env.PALAVER_KEEP_DATA) {
      await rm(this.dataDir, { recursive: true, force: true });
    }
    return this.exited ? this.exited : null;
  }
}

function lines(stream, onLine) {
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      onLine(buffered.slice(0, newline).replace(/\r$/, ''));
      buffered = buffered.slice(newline + 1);
    }
  });
  stream.on('end', () => {
    if (buffered) onLine(buffered);
  });
}
