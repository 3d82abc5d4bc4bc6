// The web console in a real browser, against a real server, with other clients taking part: the REST API
// (as a backend would) and `palaver chat` (a Rust SDK client) in the same conversation as the person at
// the console.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';

import { startServer } from '../../js-sdk/lib/server.mjs';
import { launchBrowser, openPage, screenshot } from '../lib/browser.mjs';
import { RustChat } from '../lib/chat.mjs';

const WAIT = { timeout: 15_000 };
/** A 1×1 PNG, for the media preview. */
const PIXEL = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
  'base64',
);

/** A local HTTP endpoint answering with the scripted statuses (then 200), recording what it gets. */
async function endpoint(statuses = [], body = '') {
  const hits = [];
  const server = createServer((request, response) => {
    let data = '';
    request.on('data', (chunk) => (data += chunk));
    request.on('end', () => {
      hits.push({ url: request.url, body: data });
      const status = statuses.shift() ?? 200;
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(typeof body === 'function' ? body(status) : body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, hits, close: () => server.close() };
}

describe('the web console', () => {
  let server;
  let browser;
  let page;
  let alice;
  let gateway;
  let conversation;
  const name = `support-${Date.now()}`;

  before(async () => {
    // A messaging gateway that refuses every message, so SMS receipts fail.
    gateway = await endpoint([400, 400, 400, 400], JSON.stringify({ code: 21211, message: 'invalid To number', status: 400 }));
    server = await startServer({
      env: {
        PALAVER_MESSAGING_GATEWAY_URL: gateway.url,
        PALAVER_MESSAGING_GATEWAY_ACCOUNT_SID: 'AC00000000000000000000000000000042',
        PALAVER_MESSAGING_GATEWAY_AUTH_TOKEN: 'gateway-secret-token',
      },
    });
    browser = await launchBrowser();
    page = await openPage(browser);
    conversation = await server.rest.createConversation({ FriendlyName: 'Support chat', UniqueName: name });
    await server.rest.addParticipant(conversation.sid, 'alice');
    const bob = await server.rest.addParticipant(conversation.sid, 'bob');
    await server.rest.postMessage(conversation.sid, 'alice', 'Welcome!');
    await server.rest.post(`/v1/Conversations/${conversation.sid}/Participants/${bob.sid}`, { LastReadMessageIndex: 0 });
    alice = new RustChat(server, 'alice', name);
    await alice.waitFor(/connected as alice/);
  });

  after(async () => {
    if (page) await screenshot(page, 'last').catch(() => {});
    await browser?.close();
    await alice?.quit();
    await server?.stop();
    gateway?.close();
  });

  it('serves the page with a strict policy, and its files cached by content', async () => {
    const response = await fetch(`${server.url}/console`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type'), /^text\/html/);
    assert.equal(response.headers.get('cache-control'), 'no-cache');
    const policy = response.headers.get('content-security-policy');
    assert.match(policy, /default-src 'none'/);
    assert.match(policy, /script-src 'self';/);
    assert.match(policy, /frame-ancestors 'none'/);
    const html = await response.text();
    const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html);
    assert.ok(script, html);
    const asset = await fetch(`${server.url}${script[1]}`);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('content-type'), /^text\/javascript/);
    assert.match(asset.headers.get('cache-control'), /immutable/);
    const again = await fetch(`${server.url}/console/`, { headers: { 'If-None-Match': response.headers.get('etag') } });
    assert.equal(again.status, 304);
    assert.equal((await fetch(`${server.url}/console/assets/nothing.js`)).status, 404);
  });

  it('refuses wrong credentials and signs in with the account SID and auth token', async () => {
    await page.goto(`${server.url}/console`);
    await page.getByLabel('Account SID or API key SID').fill(server.accountSid);
    await page.getByLabel('Auth token or API key secret').fill('not-the-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: /Authentication/ }).waitFor(WAIT);
    await page.getByLabel('Auth token or API key secret').fill(server.authToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: /Conversations/ }).waitFor(WAIT);
    await page.getByRole('link', { name: 'Support chat' }).waitFor(WAIT);
    await screenshot(page, 'conversations');
  });

  it('filters by participant identity and shows that user’s unread count live', async () => {
    await page.getByLabel('Participant identity').fill('bob');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.locator('.live.connected').waitFor(WAIT);
    const unread = page.locator(`tr[data-sid="${conversation.sid}"] td.unread`);
    await waitForText(unread, '0');
    await server.rest.postMessage(conversation.sid, 'alice', 'Are you there?');
    await waitForText(unread, '1');
    await screenshot(page, 'unread-for-bob');
    await page.getByLabel('Participant identity').fill('nobody-here');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByText('No conversations').waitFor(WAIT);
  });

  it('watches a conversation without taking part: messages, typing and horizons of others arrive live', async () => {
    // Carol, another `palaver chat` client, types in it (alice's typing is kept for a later test: the SDK
    // sends one indicator per typing timeout).
    await server.rest.addParticipant(conversation.sid, 'carol');
    const carol = new RustChat(server, 'carol', name);
    try {
      await carol.waitFor(/connected as carol/);
      await page.goto(`${server.url}/console#/conversations`);
      await page.getByRole('link', { name: 'Support chat' }).click();
      await page.getByRole('heading', { name: 'Support chat' }).waitFor(WAIT);
      await page.getByLabel('Send as').selectOption({ label: '(nobody: watch only)' });
      await page.locator('.live.connected', { hasText: 'watching live' }).waitFor(WAIT);
      assert.ok(await page.getByPlaceholder(/Choose a chat participant/).isDisabled(), 'a watcher cannot write');
      await server.rest.postMessage(conversation.sid, 'alice', 'Seen by a watcher');
      await page.locator('ol.messages li', { hasText: 'Seen by a watcher' }).waitFor(WAIT);
      carol.say('/typing');
      await page.locator('p.typing', { hasText: 'carol is typing…' }).waitFor(WAIT);
      await screenshot(page, 'watching');
      carol.say('Hello from the SDK');
      await page.locator('ol.messages li[data-author="carol"]', { hasText: 'Hello from the SDK' }).waitFor(WAIT);
      await page.locator('p.typing', { hasText: 'carol is typing…' }).waitFor({ state: 'detached', ...WAIT });
      const last = (await server.rest.listMessages(conversation.sid)).at(-1).index;
      carol.say('/read');
      await waitForText(page.locator('tr[data-participant="carol"] td.horizon'), `#${last}`);
    } finally {
      await carol.quit();
    }
    // The watcher is an observer, not a user of the service.
    const users = await server.rest.get('/v1/Users?PageSize=100');
    assert.ok(!users.users.some((u) => u.identity === 'palaver-console'), JSON.stringify(users.users));
  });

  it('opens a conversation and shows a message sent through REST as it arrives', async () => {
    await page.goto(`${server.url}/console#/conversations`);
    await page.getByRole('link', { name: 'Support chat' }).click();
    await page.getByRole('heading', { name: 'Support chat' }).waitFor(WAIT);
    await page.getByText('Are you there?').waitFor(WAIT);
    await page.getByLabel('Send as').selectOption('bob');
    await page.locator('.live.connected').waitFor(WAIT);
    await server.rest.postMessage(conversation.sid, 'alice', 'Hello from REST');
    await page.locator('ol.messages li', { hasText: 'Hello from REST' }).waitFor(WAIT);
    await screenshot(page, 'conversation-live');
  });

  it('sends as the chosen participant; the Rust SDK client sees the typing and the message', async () => {
    const from = alice.lines.length;
    await page.getByPlaceholder(/Write a message as bob/).pressSequentially('Hi alice, from the console');
    await alice.waitFor(/bob is typing/, { from });
    await page.getByPlaceholder(/Write a message as bob/).press('Enter');
    await alice.waitFor(/\] bob: Hi alice, from the console$/, { from });
    await page.locator('ol.messages li.mine', { hasText: 'Hi alice, from the console' }).waitFor(WAIT);
  });

  it('shows who is typing, and read horizons as they move', async () => {
    alice.say('/typing');
    await page.locator('p.typing', { hasText: 'alice is typing…' }).waitFor(WAIT);
    await screenshot(page, 'typing');
    const messages = await server.rest.listMessages(conversation.sid);
    const last = messages.at(-1).index;
    alice.say('/read');
    await waitForText(page.locator('tr[data-participant="alice"] td.horizon'), `#${last}`);
    await waitForText(page.locator('tr[data-participant="alice"] td.unread'), '0');
    await page.getByRole('button', { name: 'mark all read as bob' }).click();
    await waitForText(page.locator('tr[data-participant="bob"] td.horizon'), `#${last}`);
    await page.getByText('0 unread for bob').waitFor(WAIT);
    const bob = (await server.rest.listParticipants(conversation.sid)).find((p) => p.identity === 'bob');
    assert.equal(bob.last_read_message_index, last);
  });

  it('previews media from blob URLs fetched with the credentials', async () => {
    await page.locator('input[type=file]').setInputFiles({ name: 'pixel.png', mimeType: 'image/png', buffer: PIXEL });
    await page.getByRole('button', { name: 'Send' }).click();
    const image = page.locator('figure.media-item img[alt="pixel.png"]').first();
    await image.waitFor(WAIT);
    assert.match(await image.getAttribute('src'), /^blob:/);
    await page.waitForFunction((img) => img.complete && img.naturalWidth === 1, await image.elementHandle());
    const stored = (await server.rest.listMessages(conversation.sid)).at(-1);
    assert.equal(stored.author, 'bob');
    assert.equal(stored.media[0].content_type, 'image/png');
  });

  it('edits the attributes', async () => {
    const from = alice.lines.length;
    await page.getByLabel('Attributes (JSON)').fill('{"topic": "billing", "priority": 2}');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved.').waitFor(WAIT);
    const fetched = await server.rest.get(`/v1/Conversations/${conversation.sid}`);
    assert.deepEqual(JSON.parse(fetched.attributes), { topic: 'billing', priority: 2 });
    await alice.waitFor(/conversation updated \(.*attributes/, { from });
    await page.getByLabel('Attributes (JSON)').fill('{not json');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText(/not valid JSON/).waitFor(WAIT);
    await screenshot(page, 'attributes');
  });

  it('closes the conversation', async () => {
    await page.getByLabel('State').selectOption('closed');
    await page.getByRole('button', { name: 'Change state' }).click();
    await page.locator('.subtitle [data-state="closed"]').waitFor(WAIT);
    const fetched = await server.rest.get(`/v1/Conversations/${conversation.sid}`);
    assert.equal(fetched.state, 'closed');
    await screenshot(page, 'closed');
  });

  it('configures webhooks and lists their deliveries with retries', async () => {
    const receiver = await endpoint([500]);
    try {
      await page.getByRole('link', { name: 'Webhooks' }).click();
      await page.getByLabel('Post-event URL').fill(`${receiver.url}/hook`);
      await page.getByLabel('onMessageAdded', { exact: true }).check();
      await page.getByRole('button', { name: 'Save' }).click();
      await page.getByText('Saved.').waitFor(WAIT);
      const config = await server.rest.get('/v1/Configuration/Webhooks');
      assert.equal(config.post_webhook_url, `${receiver.url}/hook`);
      assert.deepEqual(config.filters, ['onMessageAdded']);
      const other = await server.rest.createConversation({ FriendlyName: 'Hooked' });
      await server.rest.post(`/v1/Conversations/${other.sid}/Messages`, { Author: 'carol', Body: 'ping' }, {
        headers: { 'X-Twilio-Webhook-Enabled': 'true' },
      });
      await page.locator('tr[data-outcome="retrying"]', { hasText: 'answered 500' }).waitFor(WAIT);
      await page.locator('tr[data-outcome="delivered"]', { hasText: 'onMessageAdded' }).waitFor(WAIT);
      assert.equal(receiver.hits.length, 2);
      await screenshot(page, 'webhooks');
    } finally {
      receiver.close();
    }
  });

  it('lists failed channel deliveries', async () => {
    const sms = await server.rest.createConversation({ FriendlyName: 'SMS customer' });
    await server.rest.post(`/v1/Conversations/${sms.sid}/Participants`, {
      'MessagingBinding.Address': '+15551230001',
      'MessagingBinding.ProxyAddress': '+15559990000',
    });
    await server.rest.postMessage(sms.sid, 'agent', 'Your order shipped');
    await page.getByRole('link', { name: 'Channel deliveries' }).click();
    await page.getByLabel('Failures only').check();
    const row = page.locator('tr[data-status="failed"]', { hasText: '+15551230001' });
    await row.waitFor(WAIT);
    assert.match(await row.innerText(), /sms \+15551230001/);
    assert.ok(gateway.hits.length >= 1, 'the gateway was asked');
    await screenshot(page, 'channel-deliveries');
  });

  it('reported no script errors or policy violations', () => {
    // The wrong-password attempt is answered 401, which the browser reports as a failed load.
    const unexpected = page.problems.filter((p) => !/status of 401/.test(p));
    assert.deepEqual(unexpected, []);
  });
});

async function waitForText(locator, text) {
  await locator.filter({ hasText: new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`) }).waitFor(WAIT);
}
