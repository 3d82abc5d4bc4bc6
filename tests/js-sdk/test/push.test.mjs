// Push registration from the official SDK: `setPushRegistrationId` reaches the server through the tunnel and
// becomes a binding of the user (listed through REST as the backend sees it); `removePushRegistrations` takes it
// away again.

import assert from 'node:assert/strict';
import { it } from 'node:test';

import { eventually } from '../lib/events.mjs';
import { forEachSdk, unique, useServer } from '../lib/harness.mjs';

const env = useServer();

forEachSdk(env, (sdk) => {
  it('setPushRegistrationId makes a binding for the user, removePushRegistrations removes it', async () => {
    const alice = await sdk.connect(unique('alice'));
    const service = (await sdk.rest.get('/v1/Configuration')).default_chat_service_sid;
    const bindings = async () =>
      (await sdk.rest.get(`/v1/Services/${service}/Bindings?Identity=${alice.identity}`)).bindings;
    const token = unique('fcm-device');

    await alice.client.setPushRegistrationId('fcm', token);
    const registered = await eventually(async () => {
      const found = (await bindings()).filter((b) => b.endpoint === token);
      return found.length === 1 ? found[0] : undefined;
    }, { what: 'the binding' });
    assert.equal(registered.binding_type, 'fcm');
    assert.equal(registered.identity, alice.identity);
    assert.ok(registered.sid.startsWith('BS'), registered.sid);
    assert.ok(registered.message_types.includes('new_message'), `${registered.message_types}`);

    await alice.client.removePushRegistrations('fcm', token);
    await eventually(async () => (await bindings()).every((b) => b.endpoint !== token), { what: 'no binding' });
  });
});
