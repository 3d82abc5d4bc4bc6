// The read horizon: what each horizon call resolves to (the server's unread count), how the local value follows
// (only through the pushed update), and what the other participants see.

import assert from 'node:assert/strict';
import { it } from 'node:test';

import { eventually } from '../lib/events.mjs';
import { forEachSdk, unique, useServer } from '../lib/harness.mjs';
import { restConversation, sharedConversation } from '../lib/scenarios.mjs';

const env = useServer();

const horizonIs = (conversation, index) =>
  eventually(() => conversation.lastReadMessageIndex === index, { what: `lastReadMessageIndex ${index}` });

const unreadIs = (conversation, count) =>
  eventually(async () => (await conversation.getUnreadMessagesCount()) === count, { what: `unread count ${count}` });

forEachSdk(env, (sdk) => {
  it('updateLastReadMessageIndex / advanceLastReadMessageIndex / setAllMessagesRead / setAllMessagesUnread', async () => {
    const identity = unique('reader');
    const made = await restConversation(sdk.rest, {
      identities: [identity],
      messages: Array.from({ length: 5 }, (_, i) => ['system', `m${i}`]),
    });
    const alice = await sdk.connect(identity);
    const conversation = await alice.joined(made.sid);

    // No horizon yet: no unread count either.
    assert.equal(conversation.lastReadMessageIndex, null);
    assert.equal(await conversation.getUnreadMessagesCount(), null);

    const mark = alice.log.mark();
    assert.equal(await conversation.updateLastReadMessageIndex(1), 3);
    await horizonIs(conversation, 1);
    const update = await alice.log.waitFor(
      'conversationUpdated',
      (u) => u.conversation === conversation && u.updateReasons.includes('lastReadMessageIndex'),
      { since: mark },
    );
    assert.equal(update.conversation.lastReadMessageIndex, 1);
    await unreadIs(conversation, 3);

    assert.equal(await conversation.advanceLastReadMessageIndex(3), 1);
    await horizonIs(conversation, 3);
    // Advancing never moves the horizon back (it re-sends the current one).
    assert.equal(await conversation.advanceLastReadMessageIndex(0), 1);
    assert.equal(conversation.lastReadMessageIndex, 3);
    // Updating sets it exactly, backwards too.
    assert.equal(await conversation.updateLastReadMessageIndex(0), 4);
    await horizonIs(conversation, 0);

    assert.equal(await conversation.setAllMessagesRead(), 0);
    await horizonIs(conversation, 4);
    await unreadIs(conversation, 0);
    const stored = await sdk.rest.get(`/v1/Users/${identity}/Conversations/${made.sid}`);
    assert.equal(stored.last_read_message_index, 4);
    assert.equal(stored.unread_messages_count, 0);


    // A new message counts as unread.
    await sdk.rest.postMessage(made.sid, 'system', 'm5');
    await unreadIs(conversation, 1);
  });

  it('setAllMessagesUnread clears the horizon and resolves to the number of messages now unread', async () => {
    const identity = unique('reader');
    const made = await restConversation(sdk.rest, {
      identities: [identity],
      messages: Array.from({ length: 5 }, (_, i) => ['system', `m${i}`]),
    });
    const alice = await sdk.connect(identity);
    const conversation = await alice.joined(made.sid);
    assert.equal(await conversation.updateLastReadMessageIndex(2), 2);
    await horizonIs(conversation, 2);

    // Every message is unread now, and the call says how many (the seed's Promise<number>); with no horizon
    // the stored count is unknown, so getUnreadMessagesCount answers null, as Twilio's does.
    assert.equal(await conversation.setAllMessagesUnread(), 5);
    await horizonIs(conversation, null);
    await unreadIs(conversation, null);
    const stored = await sdk.rest.get(`/v1/Users/${identity}/Conversations/${made.sid}`);
    assert.equal(stored.last_read_message_index, null);
    assert.equal(stored.unread_messages_count, null);
  });

  it('setAllMessagesRead on an empty conversation resolves to 0', async () => {
    const alice = await sdk.connect(unique('alice'));
    const [conversation] = await sharedConversation(alice);
    assert.equal(await conversation.setAllMessagesRead(), 0);
  });

  it("a participant's horizon reaches the others: participantUpdated[lastReadMessageIndex]", async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [mine, theirs] = await sharedConversation(alice, [bob]);
    for (const body of ['a', 'b', 'c']) await mine.sendMessage(body);
    await bob.log.waitForCount('messageAdded', 3, (m) => m.conversation.sid === mine.sid);
    assert.equal(await theirs.updateLastReadMessageIndex(2), 0);
    const update = await alice.log.waitFor(
      'participantUpdated',
      (u) =>
        u.participant.identity === bob.identity &&
        u.updateReasons.includes('lastReadMessageIndex') &&
        u.participant.lastReadMessageIndex === 2,
    );
    assert.equal(update.participant.conversation, mine);
    const stored = (await sdk.rest.listParticipants(mine.sid)).find((p) => p.identity === bob.identity);
    assert.equal(stored.last_read_message_index, 2);
  });
});
