// Start-up with many conversations: a user already in 60 conversations (made over REST before the client
// starts) gets all of them, joined, and getSubscribedConversations pages through them (50 a page).

import assert from 'node:assert/strict';
import { before, it } from 'node:test';

import { forEachSdk, unique, useServer } from '../lib/harness.mjs';

const env = useServer();
const COUNT = 60;

forEachSdk(env, (sdk) => {
  const identity = unique('busy');
  const made = new Map(); // sid → friendly name

  before(async () => {
    for (let i = 0; i < COUNT; i++) {
      const friendlyName = `conversation ${String(i).padStart(2, '0')}`;
      const conversation = await sdk.rest.createConversation({ FriendlyName: friendlyName });
      await sdk.rest.addParticipant(conversation.sid, identity);
      made.set(conversation.sid, friendlyName);
    }
  });

  it(`a user in ${COUNT} conversations: all joined at start-up, listed across pages`, async () => {
    const started = Date.now();
    const client = await sdk.connect(identity);
    const joined = await client.log.waitForCount('conversationJoined', COUNT, undefined, { timeout: 30_000 });
    const startUpMs = Date.now() - started;
    assert.deepEqual(new Set(joined.map((e) => e.payload.sid)), new Set(made.keys()));
    assert.equal(client.log.all('conversationJoined').length, COUNT, 'each conversation joined once');

    const pages = [];
    let page = await client.client.getSubscribedConversations();
    pages.push(page);
    while (page.hasNextPage) {
      page = await page.nextPage();
      pages.push(page);
      assert.ok(pages.length <= COUNT, 'paging ends');
    }
    assert.ok(pages.length >= 2, `${COUNT} conversations need more than one page (got ${pages.length})`);
    assert.equal(pages[0].items.length, 50);
    const listed = pages.flatMap((p) => p.items);
    assert.equal(listed.length, COUNT, 'no conversation listed twice');
    assert.deepEqual(new Set(listed.map((c) => c.sid)), new Set(made.keys()));
    for (const conversation of listed) {
      assert.equal(conversation.status, 'joined');
      assert.equal(conversation.friendlyName, made.get(conversation.sid));
    }
    assert.ok(startUpMs < 30_000, `start-up took ${startUpMs} ms`);
  });
});
