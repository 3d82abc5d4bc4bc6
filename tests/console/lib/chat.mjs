// `palaver chat` (the line-based terminal client on the Rust SDK) as a participant, driven over its stdin
// and stdout.

import { spawn } from 'node:child_process';

import { PALAVER_BIN } from '../../js-sdk/lib/server.mjs';

export const WAIT_MS = 15_000;

export class RustChat {
  /** Starts `palaver chat` as `identity` in `conversation` (SID or unique name) on `server`. */
  constructor(server, identity, conversation) {
    this.lines = [];
    this.waiters = new Set();
    this.stderr = '';
    this.child = spawn(
      PALAVER_BIN,
      ['chat', '--identity', identity, '--conversation', conversation, '--url', `ws://127.0.0.1:${server.port}/v1/realtime`],
      { env: { ...process.env, PALAVER_TOKEN: server.token(identity), PALAVER_LOG: 'error' }, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let buffered = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk) => {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        this.lines.push(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        for (const waiter of this.waiters) waiter();
      }
    });
    this.child.stderr.on('data', (chunk) => (this.stderr += chunk));
  }

  /** Waits for a line matching `pattern` printed after line number `from`; resolves with it. */
  waitFor(pattern, { from = 0, timeout = WAIT_MS } = {}) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const line = this.lines.slice(from).find((l) => pattern.test(l));
        if (line !== undefined) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve(line);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`palaver chat printed no line matching ${pattern}; it printed:\n${this.lines.join('\n')}\n${this.stderr}`));
      }, timeout);
      this.waiters.add(check);
      check();
    });
  }

  say(line) {
    this.child.stdin.write(`${line}\n`);
  }

  async quit() {
    if (this.child.exitCode !== null) return this.child.exitCode;
    const exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
    this.say('/quit');
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }
}
