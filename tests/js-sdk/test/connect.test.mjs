// Connecting: initialisation and its events, the subscribed-conversations list, refused tokens, token refresh
// and expiry.

import assert from 'node:assert/strict';
import { it } from 'node:test';

import { eventually, sleep } from '../lib/events.mjs';
import { forEachSdk, unique, useServer } from '../lib/harness.mjs';
import { restConversation } from '../lib/scenarios.mjs';
import { mintToken, tamperSignature } from '../lib/token.mjs';

const env = useServer();

/**
 * A client with `token` that the server must refuse: resolves once it is `denied` and has said why. (The SDK
 * emits `initFailed` twice: first "Twilsock has disconnected.", then with the connection error.)
 */
async function refusedClient(sdk, identity, token) {
  const client = sdk.create(identity, { token });
  await client.log.waitFor('connectionStateChanged', (state) => state === 'denied', { timeout: 15_000 });
  const error = await client.log.waitFor('connectionError');
  assert.equal(error.terminal, true);
  assert.ok([401, 403].includes(error.httpStatusCode), `httpStatusCode ${error.httpStatusCode}`);
  assert.match(error.message, /^Connection error: /);
  await client.log.waitFor('initFailed', (failed) => failed.error?.message === error.message);
  assert.equal(client.log.all('initialized').length, 0, 'a refused client never initialises');
  assert.equal(client.client.connectionState, 'denied');
  assert.deepEqual(client.log.payloads('connectionStateChanged'), ['connecting', 'denied']);
  return client;
}

forEachSdk(env, (sdk) => {
  it('initialises: connectionStateChanged connecting → connected, then initialized, once', async () => {
    const identity = unique('alice');
    const alice = sdk.create(identity);
    await alice.ready();
    const { log } = alice;
    assert.deepEqual(log.payloads('connectionStateChanged'), ['connecting', 'connected']);
    const [connected] = log.all('connectionStateChanged', (state) => state === 'connected');
    const initialized = log.all('initialized');
    assert.equal(initialized.length, 1);
    assert.ok(connected.seq < initialized[0].seq, 'connected comes before initialized');
    assert.deepEqual(log.payloads('stateChanged'), ['initialized']);
    assert.equal(log.all('connectionError').length, 0);
    assert.equal(log.all('initFailed').length, 0);
    assert.equal(alice.client.connectionState, 'connected');
    assert.equal(alice.client.user.identity, identity);
  });

  it('getSubscribedConversations: empty for a new user', async () => {
    const alice = await sdk.connect(unique('alice'));
    const page = await alice.client.getSubscribedConversations();
    assert.deepEqual(page.items, []);
    assert.equal(page.hasNextPage, false);
    assert.equal(page.hasPrevPage, false);
  });

  it('getSubscribedConversations: lists the conversations the user was added to before connecting', async () => {
    const identity = unique('alice');
    const first = await restConversation(sdk.rest, { identities: [identity], params: { FriendlyName: 'First' } });
    const second = await restConversation(sdk.rest, { identities: [identity, 'bob'], params: { FriendlyName: 'Second' } });
    await restConversation(sdk.rest, { identities: ['bob'] }); // not alice's
    const alice = await sdk.connect(identity);
    const page = await alice.client.getSubscribedConversations();
    const seen = Object.fromEntries(page.items.map((c) => [c.sid, c]));
    assert.deepEqual(Object.keys(seen).sort(), [first.sid, second.sid].sort());
    assert.equal(seen[first.sid].friendlyName, 'First');
    assert.equal(seen[second.sid].friendlyName, 'Second');
    for (const conversation of page.items) assert.equal(conversation.status, 'joined');
    assert.equal(page.hasNextPage, false);
    // Each one is announced as added, then joined.
    for (const sid of [first.sid, second.sid]) {
      await alice.joined(sid);
      const [added] = alice.log.all('conversationAdded', (c) => c.sid === sid);
      const [joined] = alice.log.all('conversationJoined', (c) => c.sid === sid);
      assert.ok(added && added.seq < joined.seq, 'conversationAdded before conversationJoined');
    }
  });

  it('a token with a wrong signature is refused at init: denied, terminal connectionError, initFailed', async () => {
    const identity = unique('mallory');
    await refusedClient(sdk, identity, tamperSignature(sdk.server.token(identity)));
  });

  it('a token signed with another secret is refused at init', async () => {
    const identity = unique('mallory');
    const token = mintToken({
      accountSid: sdk.server.accountSid,
      keySid: sdk.server.keySid,
      keySecret: 'not-the-secret-of-this-key',
      identity,
    });
    const client = await refusedClient(sdk, identity, token);
    assert.equal(client.log.all('tokenExpired').length, 0, 'a bad token is not an expired one');
  });

  it('an expired token is refused at init with error 20104 and tokenExpired', async () => {
    const identity = unique('late');
    const now = Math.floor(Date.now() / 1000);
    const client = await refusedClient(sdk, identity, sdk.server.token(identity, { nbf: now - 600, exp: now - 300 }));
    const [error] = client.log.payloads('connectionError');
    assert.equal(error.errorCode, 20104);
    await client.log.waitFor('tokenExpired');
  });

  it('updateToken: a fresh token is accepted and the session carries on', async () => {
    const identity = unique('alice');
    const alice = await sdk.connect(identity, { ttl: 600 });
    const mark = alice.log.mark();
    await alice.client.updateToken(sdk.server.token(identity, { ttl: 3600 }));
    // Still connected, and calls still work.
    const conversation = await alice.client.createConversation({ friendlyName: 'after refresh' });
    assert.equal(conversation.friendlyName, 'after refresh');
    assert.equal(alice.client.connectionState, 'connected');
    assert.deepEqual(alice.log.payloads('connectionStateChanged', undefined, mark), []);
    assert.equal(alice.log.all('tokenExpired').length, 0);
  });

  it('a short-lived token: tokenAboutToExpire before it expires, then tokenExpired and the session ends', async () => {
    const identity = unique('brief');
    const ttl = 10;
    const exp = Math.floor(Date.now() / 1000) + ttl;
    const alice = await sdk.connect(identity, { token: sdk.server.token(identity, { exp }) });
    const warned = await alice.log.waitForCount('tokenAboutToExpire', 1, undefined, { timeout: ttl * 1000 });
    assert.ok(warned[0].at < exp * 1000, 'warned before the expiry');
    const [expired] = await alice.log.waitForCount('tokenExpired', 1, undefined, { timeout: ttl * 1000 + 10_000 });
    assert.ok(expired.at >= exp * 1000 - 1000, `tokenExpired ${exp * 1000 - expired.at} ms before exp`);
    assert.ok(warned[0].seq < expired.seq);
    await eventually(() => ['disconnected', 'denied'].includes(alice.client.connectionState), {
      what: 'the session to end after expiry',
    });
  });

  it('refreshing the token on tokenAboutToExpire keeps the session past the old expiry', async () => {
    const identity = unique('renew');
    const ttl = 10;
    const exp = Math.floor(Date.now() / 1000) + ttl;
    const alice = await sdk.connect(identity, { token: sdk.server.token(identity, { exp }) });
    await alice.log.waitFor('tokenAboutToExpire', undefined, { timeout: ttl * 1000 });
    await alice.client.updateToken(sdk.server.token(identity, { ttl: 3600 }));
    await sleep(Math.max(0, exp * 1000 - Date.now()) + 3000);
    assert.equal(alice.log.all('tokenExpired').length, 0);
    assert.equal(alice.client.connectionState, 'connected');
    const conversation = await alice.client.createConversation({ friendlyName: 'still here' });
    assert.equal(conversation.friendlyName, 'still here');
  });
});
