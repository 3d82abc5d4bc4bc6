// Users: the own user and others' profiles (friendly name, attributes), their updates live, and who may change
// what.

import assert from 'node:assert/strict';
import { it } from 'node:test';

import { eventually } from '../lib/events.mjs';
import { forEachSdk, unique, useServer } from '../lib/harness.mjs';
import { sharedConversation } from '../lib/scenarios.mjs';

const env = useServer();

forEachSdk(env, (sdk) => {
  it('the own user and another user: profiles, updates seen live by both, only one\'s own user changes', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    await sharedConversation(alice, [bob]);

    // Profiles made by the backend are what the SDK shows.
    await sdk.rest.post(`/v1/Users/${bob.identity}`, { FriendlyName: 'Bob B.', Attributes: JSON.stringify({ team: 'blue' }) });
    const bobSeenByAlice = await alice.client.getUser(bob.identity);
    assert.equal(bobSeenByAlice.identity, bob.identity);
    await eventually(async () => bobSeenByAlice.friendlyName === 'Bob B.', { what: 'the backend name' });
    assert.deepEqual(bobSeenByAlice.attributes, { team: 'blue' });

    // Bob renames himself; his own user and Alice's copy both change, with their reasons.
    const mine = bob.client.user;
    assert.equal(mine.identity, bob.identity);
    const mark = alice.log.mark();
    await mine.updateFriendlyName('Robert');
    await mine.updateAttributes({ team: 'red', level: 2 });
    await eventually(async () => mine.friendlyName === 'Robert' && mine.attributes.team === 'red', { what: 'own user updated' });
    await eventually(async () => bobSeenByAlice.friendlyName === 'Robert', { what: "alice's copy renamed" });
    await eventually(async () => bobSeenByAlice.attributes.team === 'red', { what: "alice's copy's attributes" });
    const reasons = alice.log
      .payloads('userUpdated', (u) => u.user.identity === bob.identity, mark)
      .flatMap((u) => u.updateReasons);
    assert.ok(reasons.includes('friendlyName'), `reasons ${reasons}`);
    assert.ok(reasons.includes('attributes'), `reasons ${reasons}`);

    // The server stored it.
    const stored = await sdk.rest.get(`/v1/Users/${bob.identity}`);
    assert.equal(stored.friendly_name, 'Robert');
    assert.deepEqual(JSON.parse(stored.attributes), { team: 'red', level: 2 });

    // Nobody changes someone else's user.
    await assert.rejects(bobSeenByAlice.updateFriendlyName('Hacked'), (error) => error.status === 403 || /403/.test(String(error)));
    assert.equal((await sdk.rest.get(`/v1/Users/${bob.identity}`)).friendly_name, 'Robert');

    // An unknown user is a 404.
    await assert.rejects(alice.client.getUser(unique('nobody')));
  });
});
