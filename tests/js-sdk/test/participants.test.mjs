// Participants: add (raw REST-shaped answer), non-chat participants, removal by identity and by object, and the
// roster events the other clients get.

import assert from 'node:assert/strict';
import { it } from 'node:test';

import { eventually } from '../lib/events.mjs';
import { forEachSdk, unique, useServer } from '../lib/harness.mjs';
import { attributesOf, sharedConversation } from '../lib/scenarios.mjs';

const env = useServer();

forEachSdk(env, (sdk) => {
  it('add(identity, attributes) resolves to the raw snake_case participant; both sides see the join', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [conversation] = await sharedConversation(alice);
    const attributes = { role: 'guest', level: 3 };
    const added = await conversation.add(bob.identity, attributes);

    // The raw answer, not a Participant object.
    assert.equal(Object.getPrototypeOf(added), Object.prototype);
    assert.match(added.sid, /^MB[0-9a-f]{32}$/);
    assert.equal(added.identity, bob.identity);
    assert.equal(added.conversation_sid, conversation.sid);
    assert.deepEqual(attributesOf(added.attributes), attributes);
    assert.ok('date_created' in added, 'snake_case field names');
    assert.equal(added.dateCreated, undefined);

    // Bob is told he joined; Alice sees him arrive with his attributes.
    const bobsView = await bob.joined(conversation.sid);
    assert.equal(bobsView.status, 'joined');
    const joined = await alice.log.waitFor('participantJoined', (p) => p.identity === bob.identity);
    assert.equal(joined.sid, added.sid);
    assert.equal(joined.type, 'chat');
    assert.deepEqual(joined.attributes, attributes);
    assert.equal(joined.conversation.sid, conversation.sid);
    const byIdentity = await conversation.getParticipantByIdentity(bob.identity);
    assert.equal(byIdentity, joined);
    assert.equal(await conversation.getParticipantBySid(added.sid), joined);
    // And the server's roster has both.
    const stored = await sdk.rest.listParticipants(conversation.sid);
    assert.deepEqual(stored.map((p) => p.identity).sort(), [alice.identity, bob.identity].sort());
  });

  it('addNonChatParticipant adds an SMS participant (raw answer with its messaging binding)', async () => {
    const alice = await sdk.connect(unique('alice'));
    const [conversation] = await sharedConversation(alice);
    const proxyAddress = '+15550001111';
    const address = `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, '0')}`;
    const added = await conversation.addNonChatParticipant(proxyAddress, address, { source: 'sms' });
    assert.match(added.sid, /^MB[0-9a-f]{32}$/);
    assert.equal(added.identity, null);
    assert.equal(added.messaging_binding.address, address);
    assert.equal(added.messaging_binding.proxy_address, proxyAddress);
    assert.equal(added.messaging_binding.type, 'sms');
    assert.deepEqual(attributesOf(added.attributes), { source: 'sms' });

    const joined = await alice.log.waitFor('participantJoined', (p) => p.sid === added.sid);
    assert.equal(joined.type, 'sms');
    assert.equal(joined.identity, null);
    assert.deepEqual(joined.attributes, { source: 'sms' });
    const stored = await sdk.rest.get(`/v1/Conversations/${conversation.sid}/Participants/${added.sid}`);
    assert.equal(stored.messaging_binding.address, address);
  });

  it('removeParticipant by identity and by Participant object: participantLeft, and the removed user leaves', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const carol = await sdk.connect(unique('carol'));
    const [conversation, bobsView] = await sharedConversation(alice, [bob, carol]);

    // By identity (the client API gets the identity in the path).
    assert.equal(await conversation.removeParticipant(bob.identity), undefined);
    const bobLeft = await alice.log.waitFor('participantLeft', (p) => p.identity === bob.identity);
    assert.equal(bobLeft.conversation.sid, conversation.sid);
    assert.equal(await bob.log.waitFor('conversationLeft', (c) => c.sid === conversation.sid), bobsView);
    assert.equal(bobsView.status, 'notParticipating');
    // Carol, still in, sees it too.
    await carol.log.waitFor('participantLeft', (p) => p.identity === bob.identity);

    // By object (the SID goes in the path).
    const carolAsParticipant = await conversation.getParticipantByIdentity(carol.identity);
    await conversation.removeParticipant(carolAsParticipant);
    const carolLeft = await alice.log.waitFor('participantLeft', (p) => p.identity === carol.identity);
    assert.equal(carolLeft.sid, carolAsParticipant.sid);
    await carol.log.waitFor('conversationLeft', (c) => c.sid === conversation.sid);

    assert.deepEqual(
      (await sdk.rest.listParticipants(conversation.sid)).map((p) => p.identity),
      [alice.identity],
    );
    await eventually(async () => (await conversation.getParticipants()).length === 1, { what: 'one participant left' });
  });

  it('leave(): the others get participantLeft', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [conversation, bobsView] = await sharedConversation(alice, [bob]);
    assert.equal(await bobsView.leave(), bobsView);
    const left = await alice.log.waitFor('participantLeft', (p) => p.identity === bob.identity);
    assert.equal(left.conversation, conversation);
    await bob.log.waitFor('conversationLeft', (c) => c.sid === conversation.sid);
  });

  it('participant attributes update: participantUpdated[attributes] on the other client', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [conversation, bobsView] = await sharedConversation(alice, [bob]);
    const me = await bobsView.getParticipantByIdentity(bob.identity);
    await me.updateAttributes({ status: 'away' });
    const update = await alice.log.waitFor(
      'participantUpdated',
      (u) => u.participant.identity === bob.identity && u.updateReasons.includes('attributes'),
    );
    assert.deepEqual(update.participant.attributes, { status: 'away' });
    assert.equal(update.participant.conversation, conversation);
  });
});
