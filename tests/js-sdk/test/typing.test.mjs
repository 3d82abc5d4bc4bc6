// Typing indicators between two clients, both ways. `typingIndicatorTimeoutOverride: 1000` makes the sender
// throttle to one indicator a second and the receiver end it 2 s (override + 1 s) after the last one.

import assert from 'node:assert/strict';
import { it } from 'node:test';

import { forEachSdk, unique, useServer } from '../lib/harness.mjs';
import { sharedConversation } from '../lib/scenarios.mjs';

const env = useServer();
const OVERRIDE_MS = 1000;
const RECEIVER_TIMEOUT_MS = OVERRIDE_MS + 1000;

forEachSdk(env, (sdk) => {
  const connect = (name) => sdk.connect(unique(name), { options: { typingIndicatorTimeoutOverride: OVERRIDE_MS } });

  /** `typist` types in `view`; `watcher` sees typingStarted then typingEnded. Returns both log entries. */
  async function typingSeen(typist, view, watcher, watchersView) {
    const mark = watcher.log.mark();
    const fromTypist = (p) => p.identity === typist.identity && p.conversation.sid === view.sid;
    assert.equal(await view.typing(), undefined);
    const [started] = await watcher.log.waitForCount('typingStarted', 1, fromTypist, { since: mark });
    assert.equal(started.payload.conversation, watchersView);
    assert.equal(started.payload.isTyping, true);
    const [ended] = await watcher.log.waitForCount('typingEnded', 1, fromTypist, { since: mark });
    assert.equal(ended.payload, started.payload, 'the same Participant object');
    assert.equal(ended.payload.isTyping, false);
    return [started, ended];
  }

  it('typing both ways: typingStarted, then typingEnded after the timeout, only on the other client', async () => {
    const alice = await connect('alice');
    const bob = await connect('bob');
    const [mine, theirs] = await sharedConversation(alice, [bob]);

    const [started, ended] = await typingSeen(alice, mine, bob, theirs);
    const lasted = ended.at - started.at;
    assert.ok(lasted >= RECEIVER_TIMEOUT_MS - 300 && lasted < RECEIVER_TIMEOUT_MS + 3000, `indicator lasted ${lasted} ms`);

    await typingSeen(bob, theirs, alice, mine);

    // Nobody is told about their own typing.
    assert.equal(alice.log.all('typingStarted', (p) => p.identity === alice.identity).length, 0);
    assert.equal(bob.log.all('typingStarted', (p) => p.identity === bob.identity).length, 0);
  });

  it('a message from the typist ends its indicator at once', async () => {
    const alice = await connect('alice');
    const bob = await connect('bob');
    const [mine] = await sharedConversation(alice, [bob]);
    const fromAlice = (p) => p.identity === alice.identity;
    await mine.typing();
    const [started] = await bob.log.waitForCount('typingStarted', 1, fromAlice);
    await mine.sendMessage('done typing');
    const [ended] = await bob.log.waitForCount('typingEnded', 1, fromAlice);
    const [message] = await bob.log.waitForCount('messageAdded', 1, (m) => m.conversation.sid === mine.sid);
    assert.ok(ended.at - started.at < RECEIVER_TIMEOUT_MS - 500, `ended ${ended.at - started.at} ms after it started`);
    assert.ok(Math.abs(message.at - ended.at) < 500, 'ended when the message arrived');
  });

  it('repeated typing() within the timeout sends one indicator', async () => {
    const alice = await connect('alice');
    const bob = await connect('bob');
    const [mine] = await sharedConversation(alice, [bob]);
    const fromAlice = (p) => p.identity === alice.identity;
    await mine.typing();
    await mine.typing();
    await mine.typing();
    await bob.log.waitForCount('typingEnded', 1, fromAlice);
    assert.equal(bob.log.all('typingStarted', fromAlice).length, 1);
  });
});
