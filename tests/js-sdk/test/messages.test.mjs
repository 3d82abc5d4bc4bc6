// Messages: text and attributes, media (one Buffer; the builder with two), history paging both ways, and
// updates and removal as the other participant sees them.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';

import { eventually } from '../lib/events.mjs';
import { forEachSdk, unique, useServer } from '../lib/harness.mjs';
import { attributesOf, restConversation, sharedConversation } from '../lib/scenarios.mjs';

const env = useServer();

const inConversation = (sid, more = () => true) => (message) => message.conversation.sid === sid && more(message);

async function download(url) {
  assert.match(url, /^https?:\/\//);
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}`);
  return Buffer.from(await response.arrayBuffer());
}

forEachSdk(env, (sdk) => {
  it('sendMessage text (with and without attributes) resolves to the index; both clients get messageAdded in order', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [mine, theirs] = await sharedConversation(alice, [bob]);
    const sid = mine.sid;

    assert.equal(await mine.sendMessage('hello'), 0);
    assert.equal(await mine.sendMessage('with attributes', { priority: 'high', n: 1 }), 1);
    assert.equal(await theirs.sendMessage('a reply'), 2);

    const received = (await bob.log.waitForCount('messageAdded', 3, inConversation(sid))).map((e) => e.payload);
    assert.deepEqual(
      received.map((m) => [m.index, m.author, m.body]),
      [
        [0, alice.identity, 'hello'],
        [1, alice.identity, 'with attributes'],
        [2, bob.identity, 'a reply'],
      ],
    );
    assert.deepEqual(received[0].attributes, {});
    assert.deepEqual(received[1].attributes, { priority: 'high', n: 1 });
    for (const message of received) {
      assert.match(message.sid, /^IM[0-9a-f]{32}$/);
      assert.equal(message.type, 'text');
      assert.equal(message.conversation, theirs);
      assert.ok(message.dateCreated instanceof Date);
    }
    const aliceAsParticipant = await theirs.getParticipantByIdentity(alice.identity);
    assert.equal(received[0].participantSid, aliceAsParticipant.sid);

    // The author gets its own messages too, in the same order.
    const own = (await alice.log.waitForCount('messageAdded', 3, inConversation(sid))).map((e) => e.payload);
    assert.deepEqual(
      own.map((m) => m.sid),
      received.map((m) => m.sid),
    );
    // lastMessage follows.
    await eventually(() => theirs.lastMessage?.index === 2, { what: 'lastMessage.index 2' });
    assert.ok(theirs.lastMessage.dateCreated instanceof Date);
    await bob.log.waitFor('conversationUpdated', (u) => u.conversation.sid === sid && u.updateReasons.includes('lastMessage'));

    // The server stored what was sent.
    const stored = await sdk.rest.listMessages(sid);
    assert.deepEqual(
      stored.map((m) => [m.index, m.author, m.body, attributesOf(m.attributes)]),
      [
        [0, alice.identity, 'hello', {}],
        [1, alice.identity, 'with attributes', { priority: 'high', n: 1 }],
        [2, bob.identity, 'a reply', {}],
      ],
    );
    assert.deepEqual(
      stored.map((m) => m.sid),
      received.map((m) => m.sid),
    );
  });

  it('sendMessage with media (a Buffer with contentType and filename): uploaded, attached, downloadable', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [mine] = await sharedConversation(alice, [bob]);
    const content = Buffer.from('hello media\n');
    const index = await mine.sendMessage(
      { contentType: 'text/plain', filename: 'notes.txt', media: content },
      { kind: 'file' },
    );
    assert.equal(index, 0);

    const message = await bob.log.waitFor('messageAdded', inConversation(mine.sid));
    assert.equal(message.index, 0);
    assert.equal(message.type, 'media');
    assert.equal(message.author, alice.identity);
    assert.deepEqual(message.attributes, { kind: 'file' });
    assert.equal(message.attachedMedia.length, 1);
    const [media] = message.attachedMedia;
    assert.match(media.sid, /^ME[0-9a-f]{32}$/);
    assert.equal(media.contentType, 'text/plain');
    assert.equal(media.filename, 'notes.txt');
    assert.equal(media.size, content.length);
    assert.equal(media.category, 'media');
    assert.deepEqual(await download(await media.getContentTemporaryUrl()), content);

    const [stored] = await sdk.rest.listMessages(mine.sid);
    assert.equal(stored.media.length, 1);
    assert.equal(stored.media[0].sid, media.sid);
    assert.equal(stored.media[0].content_type, 'text/plain');
    assert.equal(stored.media[0].filename, 'notes.txt');
    assert.equal(stored.media[0].size, content.length);
  });

  it('prepareMessage builder with a body, attributes and two media', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [mine] = await sharedConversation(alice, [bob]);
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(200)]);
    const text = Buffer.from('second attachment');
    const index = await mine
      .prepareMessage()
      .setBody('two files')
      .setAttributes({ files: 2 })
      .addMedia({ contentType: 'image/png', filename: 'picture.png', media: png })
      .addMedia({ contentType: 'text/plain', filename: 'second.txt', media: text })
      .build()
      .send();
    assert.equal(index, 0);

    const message = await bob.log.waitFor('messageAdded', inConversation(mine.sid));
    assert.equal(message.body, 'two files');
    assert.deepEqual(message.attributes, { files: 2 });
    assert.deepEqual(
      message.attachedMedia.map((m) => [m.filename, m.contentType, m.size]),
      [
        ['picture.png', 'image/png', png.length],
        ['second.txt', 'text/plain', text.length],
      ],
    );
    const urls = await message.getTemporaryContentUrlsForAttachedMedia();
    assert.equal(urls.size, 2);
    const [first, second] = message.attachedMedia;
    assert.deepEqual(await download(urls.get(first.sid)), png);
    assert.deepEqual(await download(urls.get(second.sid)), text);
  });

  it('getMessages pages backwards and forwards: items ascending, has*Page flags, inclusive anchor', async () => {
    const identity = unique('reader');
    const count = 25;
    const all = Array.from({ length: count }, (_, i) => i);
    const made = await restConversation(sdk.rest, {
      identities: [identity],
      messages: all.map((i) => ['system', `m${i}`]),
    });
    const alice = await sdk.connect(identity);
    const conversation = await alice.client.getConversationBySid(made.sid);
    const indices = (page) => page.items.map((m) => m.index);
    const check = (page, expected, { prev, next }, what) => {
      assert.deepEqual(indices(page), expected, what);
      assert.deepEqual(
        page.items.map((m) => m.body),
        expected.map((i) => `m${i}`),
        `${what}: bodies`,
      );
      if (prev !== undefined) assert.equal(page.hasPrevPage, prev, `${what}: hasPrevPage`);
      if (next !== undefined) assert.equal(page.hasNextPage, next, `${what}: hasNextPage`);
    };

    // Backwards from the end, page by page: prev = older, next = newer; every page ascending.
    const last = await conversation.getMessages(3);
    check(last, [22, 23, 24], { prev: true, next: false }, 'last page');
    const backwards = [last];
    while (backwards.at(-1).hasPrevPage) {
      backwards.push(await backwards.at(-1).prevPage());
      assert.ok(backwards.length <= count, 'backward paging ends');
    }
    assert.deepEqual(backwards.map(indices).reverse().flat(), all, 'the pages cover everything once');
    for (const [i, page] of backwards.entries()) {
      const oldest = i === backwards.length - 1;
      assert.equal(page.items.length, oldest ? 1 : 3, `page ${i} size`);
      if (i > 0) assert.equal(page.hasNextPage, true, `page ${i}: hasNextPage`);
    }
    const oldest = backwards.at(-1);
    check(oldest, [0], { prev: false, next: true }, 'oldest');
    await assert.rejects(oldest.prevPage());
    check(last, [22, 23, 24], { prev: true, next: false }, 'pages are not changed by paging');
    const newer = await oldest.nextPage();
    if (sdk.version.startsWith('2.')) {
      check(newer, [1, 2, 3], { prev: true, next: true }, 'newer again');
    } else {
      // twilio-sync 4 (SDK 3.x) pages from its own item cache here without asking the server, and skips one
      // item going back up from the oldest page ([2, 3, 4]): only what does not depend on that is checked.
      assert.equal(newer.items.length, 3);
      assert.ok(newer.items.every((m, k) => m.index > 0 && (k === 0 || m.index > newer.items[k - 1].index)));
    }

    // Forwards from the start.
    const forwards = [await conversation.getMessages(4, 0, 'forward')];
    check(forwards[0], [0, 1, 2, 3], { prev: false, next: true }, 'first forward page');
    while (forwards.at(-1).hasNextPage) {
      forwards.push(await forwards.at(-1).nextPage());
      assert.ok(forwards.length <= count, 'forward paging ends');
    }
    assert.deepEqual(forwards.map(indices).flat(), all, 'the forward pages cover everything once');
    const end = forwards.at(-1);
    check(end, [24], { next: false }, 'last forward page');
    check(await end.prevPage(), [20, 21, 22, 23], {}, 'back from the end');

    // The anchor is inclusive in both directions.
    check(await conversation.getMessages(3, 5), [3, 4, 5], { prev: true }, 'backwards from 5');
    check(await conversation.getMessages(3, 5, 'forward'), [5, 6, 7], { next: true }, 'forward from 5');
    check(await conversation.getMessages(3, 24, 'forward'), [24], { next: false }, 'forward from the last');
    check(await conversation.getMessages(3, 0), [0], { prev: false }, 'backwards from the first');

    // Everything at once (the default page size is 30).
    check(await conversation.getMessages(), all, { prev: false, next: false }, 'all');
  });

  it('updateBody, updateAttributes and remove: messageUpdated reasons and messageRemoved on the other client', async () => {
    const alice = await sdk.connect(unique('alice'));
    const bob = await sdk.connect(unique('bob'));
    const [mine, theirs] = await sharedConversation(alice, [bob]);
    const sid = mine.sid;
    await mine.sendMessage('draft', { v: 1 });
    const message = await alice.log.waitFor('messageAdded', inConversation(sid));
    const bobsCopy = await bob.log.waitFor('messageAdded', inConversation(sid));
    assert.equal(bobsCopy.sid, message.sid);
    const mark = bob.log.mark();

    assert.equal(await message.updateBody('final'), message);
    const bodyUpdate = await bob.log.waitFor('messageUpdated', (u) => u.message.sid === message.sid, { since: mark });
    assert.equal(bodyUpdate.message, bobsCopy);
    assert.ok(bodyUpdate.updateReasons.includes('body'), `reasons ${bodyUpdate.updateReasons}`);
    assert.ok(!bodyUpdate.updateReasons.includes('attributes'));
    assert.equal(bobsCopy.body, 'final');
    assert.deepEqual(bobsCopy.attributes, { v: 1 });

    const attributesMark = bob.log.mark();
    assert.equal(await message.updateAttributes({ v: 2, edited: true }), message);
    const attributesUpdate = await bob.log.waitFor('messageUpdated', (u) => u.message.sid === message.sid, {
      since: attributesMark,
    });
    assert.ok(attributesUpdate.updateReasons.includes('attributes'), `reasons ${attributesUpdate.updateReasons}`);
    assert.ok(!attributesUpdate.updateReasons.includes('body'));
    assert.deepEqual(bobsCopy.attributes, { v: 2, edited: true });
    assert.equal(bobsCopy.body, 'final');

    const stored = await sdk.rest.get(`/v1/Conversations/${sid}/Messages/${message.sid}`);
    assert.equal(stored.body, 'final');
    assert.deepEqual(attributesOf(stored.attributes), { v: 2, edited: true });

    await mine.sendMessage('stays');
    await bob.log.waitForCount('messageAdded', 2, inConversation(sid));
    assert.equal(await message.remove(), message);
    const removed = await bob.log.waitFor('messageRemoved', (m) => m.sid === message.sid);
    assert.equal(removed.index, 0);
    assert.equal(removed.conversation, theirs);
    // Order on Bob's side: the body update, then the attributes update, then the removal.
    const aboutIt = bob.log.entries.filter(
      (e) =>
        e.seq >= mark &&
        ((e.name === 'messageUpdated' && e.payload.message.sid === message.sid) ||
          (e.name === 'messageRemoved' && e.payload.sid === message.sid)),
    );
    assert.ok(aboutIt.length >= 3, `events: ${aboutIt.map((e) => e.name)}`);
    assert.equal(aboutIt.at(-1).name, 'messageRemoved');
    const bodySeq = aboutIt.find((e) => e.payload.updateReasons?.includes('body')).seq;
    const attributesSeq = aboutIt.find((e) => e.payload.updateReasons?.includes('attributes')).seq;
    assert.ok(bodySeq < attributesSeq);

    assert.deepEqual(
      (await sdk.rest.listMessages(sid)).map((m) => m.body),
      ['stays'],
    );
    const page = await theirs.getMessages();
    assert.deepEqual(
      page.items.map((m) => [m.index, m.body]),
      [[1, 'stays']],
    );
  });
});
