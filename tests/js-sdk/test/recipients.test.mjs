// Non-chat recipients from the SDK: getMessageRecipients (per conversation and per message) and detailed
// delivery receipts for a message that went to an email participant.

import assert from 'node:assert/strict';
import { it } from 'node:test';

import { forEachSdk, unique, useServer } from '../lib/harness.mjs';
import { sharedConversation } from '../lib/scenarios.mjs';

const env = useServer();

forEachSdk(env, (sdk) => {
  it('getMessageRecipients and detailed receipts name the email participant a message went to', async () => {
    const alice = await sdk.connect(unique('alice'));
    const [conversation] = await sharedConversation(alice);
    const address = `${unique('carol')}@example.com`;
    await conversation.addNonChatParticipant('support@example.com', address, { vip: true }, {
      email: { name: 'Carol', level: 'cc' },
    });
    const index = await conversation.sendMessage('to everyone, email too');
    const page = await conversation.getMessages(1);
    const [message] = page.items;
    assert.equal(message.index, index);

    const all = await conversation.getMessageRecipients();
    const recipients = all.items.filter((r) => r.messageSid === message.sid);
    assert.equal(recipients.length, 1, JSON.stringify(all.items));
    assert.equal(recipients[0].type, 'email');
    assert.equal(recipients[0].address, address);
    assert.equal(recipients[0].name, 'Carol');
    assert.equal(recipients[0].level, 'cc');

    const own = await message.getMessageRecipients();
    assert.deepEqual(
      own.map((r) => [r.type, r.address]),
      [['email', address]],
    );

    const receipts = await message.getDetailedDeliveryReceipts();
    assert.equal(receipts.length, 1);
    assert.equal(receipts[0].messageSid, message.sid);
    assert.equal(receipts[0].conversationSid, conversation.sid);
    assert.ok(receipts[0].sid.startsWith('DY'), receipts[0].sid);
    // No mail relay is configured in the test server, so the email waits, queued.
    assert.equal(receipts[0].status, 'queued');
  });
});
