// Conversations: create, join and leave, look-ups, updates and their reasons, counts, notification level,
// delete.

import assert from 'node:assert/strict';
import { it } from 'node:test';

import { eventually } from '../lib/events.mjs';
import { forEachSdk, unique, useServer } from '../lib/harness.mjs';
import { attributesOf, restConversation, sharedConversation } from '../lib/scenarios.mjs';

const env = useServer();

const isUpdateOf = (sid, reason) => (update) =>
  update.conversation.sid === sid && update.updateReasons.includes(reason);

forEachSdk(env, (sdk) => {
  it('createConversation with friendlyName, uniqueName and attributes', async () => {
    const alice = await sdk.connect(unique('alice'));
    const uniqueName = unique('support');
    const attributes = { topic: 'billing', priority: 2, tags: ['a', 'b'] };
    const conversation = await alice.client.createConversation({ friendlyName: 'Support', uniqueName, attributes });
    assert.match(conversation.sid, /^CH[0-9a-f]{32}$/);
    assert.equal(conversation.friendlyName, 'Support');
    assert.equal(conversation.uniqueName, uniqueName);
    assert.deepEqual(conversation.attributes, attributes);
    assert.equal(conversation.createdBy, alice.identity);
    assert.ok(conversation.dateCreated instanceof Date);
    assert.ok(Math.abs(conversation.dateCreated.getTime() - Date.now()) < 60_000);
    assert.equal(conversation.status, 'notParticipating', 'creating does not join');
    assert.equal(alice.log.all('conversationAdded', (c) => c.sid === conversation.sid).length, 1);
    // The server has it, as sent.
    const stored = await sdk.rest.get(`/v1/Conversations/${conversation.sid}`);
    assert.equal(stored.friendly_name, 'Support');
    assert.equal(stored.unique_name, uniqueName);
    assert.deepEqual(JSON.parse(stored.attributes), attributes);
    assert.deepEqual(await sdk.rest.listParticipants(conversation.sid), []);
  });

  it('createConversation without options gives empty defaults', async () => {
    const alice = await sdk.connect(unique('alice'));
    const conversation = await alice.client.createConversation();
    assert.match(conversation.sid, /^CH[0-9a-f]{32}$/);
    assert.ok(!conversation.uniqueName, `no unique name (got ${JSON.stringify(conversation.uniqueName)})`);
    assert.deepEqual(conversation.attributes, {});
    const stored = await sdk.rest.get(`/v1/Conversations/${conversation.sid}`);
    assert.equal(stored.unique_name, null);
    assert.deepEqual(JSON.parse(stored.attributes), {});
  });

  it('join and leave: conversationJoined / conversationLeft, status, and the server roster', async () => {
    const alice = await sdk.connect(unique('alice'));
    const conversation = await alice.client.createConversation({ friendlyName: 'Join me' });
    assert.equal(await conversation.join(), conversation);
    const joined = await alice.joined(conversation.sid);
    assert.equal(joined, conversation);
    assert.equal(conversation.status, 'joined');
    const [added] = alice.log.all('conversationAdded', (c) => c.sid === conversation.sid);
    const [joinedEntry] = alice.log.all('conversationJoined', (c) => c.sid === conversation.sid);
    assert.ok(added.seq < joinedEntry.seq);
    assert.deepEqual(
      (await sdk.rest.listParticipants(conversation.sid)).map((p) => p.identity),
      [alice.identity],
    );
    // The own participant shows up in the roster.
    const me = await eventually(() => conversation.getParticipantByIdentity(alice.identity).catch(() => null), {
      what: 'the own participant',
    });
    assert.match(me.sid, /^MB[0-9a-f]{32}$/);
    assert.equal(me.type, 'chat');

    assert.equal(await conversation.leave(), conversation);
    const left = await alice.log.waitFor('conversationLeft', (c) => c.sid === conversation.sid);
    assert.equal(left, conversation);
    assert.equal(conversation.status, 'notParticipating');
    assert.ok(joinedEntry.seq < alice.log.all('conversationLeft', (c) => c.sid === conversation.sid)[0].seq);
    assert.deepEqual(await sdk.rest.listParticipants(conversation.sid), []);
  });

  it('joining twice rejects with 409 (participant already exists, 50433)', async () => {
    const alice = await sdk.connect(unique('alice'));
    const conversation = await alice.client.createConversation();
    await conversation.join();
    await alice.joined(conversation.sid);
    await assert.rejects(conversation.join(), (error) => {
      assert.equal(error.status, 409);
      assert.equal(error.body?.code, 50433);
      return true;
    });
  });

  it('getConversationBySid and getConversationByUniqueName; an unknown unique name rejects with 404', async () => {
    const identity = unique('alice');
    const uniqueName = unique('lookup');
    const made = await restConversation(sdk.rest, {
      identities: [identity],
      params: { FriendlyName: 'Look me up', UniqueName: uniqueName, Attributes: '{"k":"v"}' },
    });
    const alice = await sdk.connect(identity);
    const bySid = await alice.client.getConversationBySid(made.sid);
    assert.equal(bySid.sid, made.sid);
    assert.equal(bySid.friendlyName, 'Look me up');
    assert.equal(bySid.uniqueName, uniqueName);
    assert.deepEqual(bySid.attributes, { k: 'v' });
    const byName = await alice.client.getConversationByUniqueName(uniqueName);
    assert.equal(byName.sid, made.sid);
    assert.equal(byName, bySid, 'one object per conversation');
    await assert.rejects(alice.client.getConversationByUniqueName(unique('no-such-name')), (error) => {
      assert.equal(error.status, 404);
      return true;
    });
    await assert.rejects(alice.client.getConversationBySid('CH' + '0'.repeat(32)));
  });

  it('updateFriendlyName / updateUniqueName / updateAttributes reach the other participant with their reasons, in order', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [mine, theirs] = await sharedConversation(alice, [bob]);
    const sid = mine.sid;
    const mark = bob.log.mark();

    assert.equal(await mine.updateFriendlyName('Renamed'), mine);
    const renamed = await bob.log.waitFor('conversationUpdated', isUpdateOf(sid, 'friendlyName'), { since: mark });
    assert.equal(renamed.conversation, theirs);
    assert.equal(theirs.friendlyName, 'Renamed');
    assert.ok(!renamed.updateReasons.includes('uniqueName'));
    assert.ok(!renamed.updateReasons.includes('attributes'));

    const uniqueName = unique('renamed');
    assert.equal(await mine.updateUniqueName(uniqueName), mine);
    const named = await bob.log.waitFor('conversationUpdated', isUpdateOf(sid, 'uniqueName'), { since: mark });
    assert.equal(theirs.uniqueName, uniqueName);
    assert.ok(!named.updateReasons.includes('friendlyName'));

    const attributes = { colour: 'blue', nested: { list: [1, 2, 3] } };
    assert.equal(await mine.updateAttributes(attributes), mine);
    const changed = await bob.log.waitFor('conversationUpdated', isUpdateOf(sid, 'attributes'), { since: mark });
    assert.deepEqual(theirs.attributes, attributes);
    assert.ok(!changed.updateReasons.includes('friendlyName'));
    assert.deepEqual(await theirs.getAttributes(), attributes);

    // In the order they were made.
    const seqOf = (reason) => bob.log.all('conversationUpdated', isUpdateOf(sid, reason), mark)[0].seq;
    assert.ok(seqOf('friendlyName') < seqOf('uniqueName'));
    assert.ok(seqOf('uniqueName') < seqOf('attributes'));

    // The author's own object follows too, and the server has the values.
    await eventually(() => mine.friendlyName === 'Renamed' && mine.uniqueName === uniqueName, {
      what: "the author's own view",
    });
    const stored = await sdk.rest.get(`/v1/Conversations/${sid}`);
    assert.equal(stored.friendly_name, 'Renamed');
    assert.equal(stored.unique_name, uniqueName);
    assert.deepEqual(attributesOf(stored.attributes), attributes);

    // Clearing the unique name.
    await mine.updateUniqueName(null);
    await bob.log.waitFor('conversationUpdated', (u) => isUpdateOf(sid, 'uniqueName')(u) && !theirs.uniqueName, {
      since: mark,
    });
    assert.equal((await sdk.rest.get(`/v1/Conversations/${sid}`)).unique_name, null);
  });

  it('getMessagesCount and getParticipantsCount', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [conversation] = await sharedConversation(alice, [bob]);
    assert.equal(await conversation.getMessagesCount(), 0);
    assert.equal(await conversation.getParticipantsCount(), 2);
    for (const body of ['one', 'two', 'three']) await conversation.sendMessage(body);
    // The counts are read through a short-lived cache ("semi-realtime").
    await eventually(async () => (await conversation.getMessagesCount()) === 3, { what: 'messages_count 3' });
    await conversation.removeParticipant(bob.identity);
    await eventually(async () => (await conversation.getParticipantsCount()) === 1, { what: 'participants_count 1' });
  });

  it('setUserNotificationLevel: muted and back, with conversationUpdated[notificationLevel]', async () => {
    const alice = await sdk.connect(unique('alice'));
    const [conversation] = await sharedConversation(alice);
    assert.equal(conversation.notificationLevel, 'default');
    const mark = alice.log.mark();
    assert.equal(await conversation.setUserNotificationLevel('muted'), undefined);
    await alice.log.waitFor('conversationUpdated', isUpdateOf(conversation.sid, 'notificationLevel'), { since: mark });
    assert.equal(conversation.notificationLevel, 'muted');
    const stored = await sdk.rest.get(`/v1/Users/${alice.identity}/Conversations/${conversation.sid}`);
    assert.equal(stored.notification_level, 'muted');

    const again = alice.log.mark();
    await conversation.setUserNotificationLevel('default');
    await alice.log.waitFor('conversationUpdated', isUpdateOf(conversation.sid, 'notificationLevel'), { since: again });
    assert.equal(conversation.notificationLevel, 'default');
    await assert.rejects(conversation.setUserNotificationLevel('loud'), /"default" or "muted"/);
  });

  it('delete: conversationRemoved for the owner and the other participant; the server forgets it', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [mine, theirs] = await sharedConversation(alice, [bob]);
    assert.equal(await mine.delete(), mine);
    assert.equal(await alice.log.waitFor('conversationRemoved', (c) => c.sid === mine.sid), mine);
    assert.equal(await bob.log.waitFor('conversationRemoved', (c) => c.sid === mine.sid), theirs);
    const { status } = await sdk.rest.request('GET', `/v1/Conversations/${mine.sid}`, {}, { raw: true });
    assert.equal(status, 404);
    const page = await bob.client.getSubscribedConversations();
    assert.ok(!page.items.some((c) => c.sid === mine.sid));
  });
});
