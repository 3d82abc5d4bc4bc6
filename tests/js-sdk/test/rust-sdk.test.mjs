// A Rust SDK client (`palaver chat`, a line-based terminal client built on the palaver-client crate, driven
// over its stdin and stdout) and two JS SDK clients in one conversation, seeing each other live.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { it } from 'node:test';

import { EVENT_TIMEOUT_MS } from '../lib/events.mjs';
import { forEachSdk, unique, useServer } from '../lib/harness.mjs';
import { PALAVER_BIN } from '../lib/server.mjs';

const env = useServer();

/** `palaver chat` as `identity` in `conversation` (a unique name), on the server's own realtime API. */
class RustChat {
  constructor(server, identity, conversation) {
    this.lines = [];
    this.waiters = new Set();
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
    this.stderr = '';
    this.child.stderr.on('data', (chunk) => (this.stderr += chunk));
  }

  /** Waits for an output line matching `pattern`; resolves with it. */
  waitFor(pattern, timeout = EVENT_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const line = this.lines.find((l) => pattern.test(l));
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

forEachSdk(env, (sdk) => {
  it('a Rust SDK client and two JS clients see each other live: joins, typing and messages all ways', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const name = unique('mixed');
    const conversation = await alice.client.createConversation({ friendlyName: 'Mixed', uniqueName: name });
    await conversation.join();
    await alice.joined(conversation.sid);
    await conversation.add(bob.identity);
    const bobsView = await bob.joined(conversation.sid);

    const carolIdentity = unique('carol');
    const carol = new RustChat(sdk.server, carolIdentity, name);
    try {
      // Carol finds the conversation by its unique name and joins it; the JS clients are told.
      await carol.waitFor(new RegExp(`^\\* in ${name} \\(${conversation.sid}\\)`));
      for (const client of [alice, bob]) {
        const joined = await client.log.waitFor('participantJoined', (p) => p.identity === carolIdentity);
        assert.equal(joined.conversation.sid, conversation.sid);
      }

      // Rust → JS: a line typed in the terminal is a typing indicator, then a message.
      carol.say('hello from rust');
      for (const client of [alice, bob]) {
        const typing = await client.log.waitFor('typingStarted', (p) => p.identity === carolIdentity);
        assert.equal(typing.conversation.sid, conversation.sid);
        const message = await client.log.waitFor('messageAdded', (m) => m.author === carolIdentity);
        assert.equal(message.body, 'hello from rust');
        assert.equal(message.conversation.sid, conversation.sid);
      }

      // JS → Rust (and the other JS client), from both JS clients, in order.
      const first = await conversation.sendMessage('hi carol, from alice');
      await carol.waitFor(new RegExp(`^\\[${first}\\] ${alice.identity}: hi carol, from alice$`));
      const second = await bobsView.sendMessage('and from bob');
      await carol.waitFor(new RegExp(`^\\[${second}\\] ${bob.identity}: and from bob$`));
      assert.ok(second > first);
      await alice.log.waitFor('messageAdded', (m) => m.index === second && m.body === 'and from bob');

      // JS typing reaches the Rust client (and the other JS client, whose SDK looks the conversation up on
      // the way: waited for, so that no request is left in flight when the test shuts the clients down).
      await conversation.typing();
      await carol.waitFor(new RegExp(`^\\* ${alice.identity} is typing`));
      await bob.log.waitFor('typingStarted', (p) => p.identity === alice.identity);
    } finally {
      assert.equal(await carol.quit(), 0, `palaver chat exits cleanly: ${carol.stderr}`);
    }
  });
});
