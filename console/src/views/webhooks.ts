// The webhooks page: the account's webhook configuration (pre- and post-event URLs, method, filters), the
// outbox (requests still to send and those given up on: GET /palaver/v1/WebhookOutbox) and the delivery
// history, every attempt with its outcome and next retry (GET /palaver/v1/WebhookDeliveries). Both lists come
// from the database, so they are the whole cluster's and survive restarts.

import type { Context } from '../context';
import { describeError, formatDate, h, replace } from '../dom';
import type { PageView } from '../main';

interface WebhookConfiguration {
  method: string;
  filters: string[];
  pre_webhook_url: string | null;
  post_webhook_url: string | null;
}

interface WebhookAttempt {
  outbox_id: number;
  url: string;
  method: string;
  event_type: string | null;
  conversation_sid: string | null;
  attempt: number;
  outcome: 'delivered' | 'retrying' | 'gave_up';
  error: string | null;
  next_retry: string | null;
  date_created: string;
}

interface OutboxEntry {
  outbox_id: number;
  url: string;
  method: string;
  event_type: string | null;
  conversation_sid: string | null;
  attempts: number;
  state: 'pending' | 'dead';
  next_attempt: string | null;
  last_error: string | null;
  date_created: string | null;
}

const REFRESH_MS = 3000;
const PAGE_SIZE = 50;
const EVENT_TYPES = [
  'onConversationAdd', 'onConversationAdded', 'onConversationUpdate', 'onConversationUpdated',
  'onConversationRemove', 'onConversationRemoved', 'onConversationStateUpdated', 'onMessageAdd',
  'onMessageAdded', 'onMessageUpdate', 'onMessageUpdated', 'onMessageRemove', 'onMessageRemoved',
  'onParticipantAdd', 'onParticipantAdded', 'onParticipantUpdate', 'onParticipantUpdated',
  'onParticipantRemove', 'onParticipantRemoved', 'onDeliveryUpdated', 'onUserAdded', 'onUserUpdate',
  'onUserUpdated',
];

export function webhooksPage(context: Context): PageView {
  const status = h('p', { class: 'status', role: 'status' });
  const pre = h('input', { name: 'pre', type: 'url', placeholder: 'https://…' });
  const post = h('input', { name: 'post', type: 'url', placeholder: 'https://…' });
  const method = h('select', { name: 'method' }, ['POST', 'GET'].map((m) => h('option', { value: m }, m)));
  const filterBoxes = EVENT_TYPES.map((type) => h('input', { type: 'checkbox', name: 'filter', value: type }));
  const form = h(
    'form',
    { class: 'webhook-config' },
    h('label', {}, 'Pre-event URL', pre),
    h('label', {}, 'Post-event URL', post),
    h('label', {}, 'Method', method),
    h(
      'fieldset',
      { class: 'filters-list' },
      h('legend', {}, 'Events (filters)'),
      filterBoxes.map((box) => h('label', {}, box, box.value)),
    ),
    h('button', { type: 'submit' }, 'Save'),
  );
  const outcome = h(
    'select',
    { name: 'outcome' },
    ['', 'delivered', 'retrying', 'gave_up'].map((o) => h('option', { value: o }, o || 'any outcome')),
  );
  const rows = h('tbody');
  const outboxRows = h('tbody');
  const older = h('button', { type: 'button', class: 'link', hidden: true }, 'Older attempts →');
  const newest = h('button', { type: 'button', class: 'link', hidden: true }, '← Newest');
  // The history page shown: null for the newest, else the URL of an older page (from `next_page_url`).
  let historyPage: string | null = null;

  const show = (config: WebhookConfiguration) => {
    pre.value = config.pre_webhook_url ?? '';
    post.value = config.post_webhook_url ?? '';
    method.value = config.method.toUpperCase();
    for (const box of filterBoxes) box.checked = config.filters.includes(box.value);
  };

  // The form stays disabled until the current settings are in it, so nothing typed before is overwritten.
  const controls = () => [pre, post, method, ...filterBoxes];
  for (const control of controls()) control.disabled = true;
  const loadConfig = async () => {
    show(await context.rest.get<WebhookConfiguration>('/v1/Configuration/Webhooks'));
    for (const control of controls()) control.disabled = false;
  };

  const loadOutbox = async () => {
    const page = await context.rest.page<OutboxEntry>('/palaver/v1/WebhookOutbox', 'webhook_outbox', {
      PageSize: PAGE_SIZE,
    });
    replace(
      outboxRows,
      page.items.length === 0 ? h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'Nothing waits to be sent')) : null,
      page.items.map((e) =>
        h(
          'tr',
          { class: e.state === 'dead' || e.last_error ? 'failure' : null, 'data-state': e.state },
          h('td', {}, formatDate(e.date_created)),
          h('td', {}, e.event_type ?? ''),
          h('td', { class: 'url' }, `${e.method} ${e.url}`),
          h('td', {}, e.state === 'dead' ? 'given up' : 'waiting'),
          h('td', {}, String(e.attempts)),
          h('td', {}, e.last_error ?? ''),
          h('td', {}, e.next_attempt ? formatDate(e.next_attempt) : ''),
        ),
      ),
      page.nextPageUrl ? h('tr', {}, h('td', { colspan: 7, class: 'empty' }, `Only the newest ${PAGE_SIZE} are shown`)) : null,
    );
  };

  const loadDeliveries = async () => {
    const page = await context.rest.page<WebhookAttempt>(
      historyPage ?? '/palaver/v1/WebhookDeliveries',
      'webhook_deliveries',
      historyPage ? {} : { Outcome: outcome.value || null, PageSize: PAGE_SIZE },
    );
    older.hidden = !page.nextPageUrl;
    newest.hidden = historyPage === null;
    older.onclick = () => {
      historyPage = page.nextPageUrl;
      loadDeliveries().catch((f) => (status.textContent = describeError(f)));
    };
    replace(
      rows,
      page.items.length === 0 ? h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No webhook attempts recorded')) : null,
      page.items.map((a) =>
        h(
          'tr',
          { class: a.outcome === 'delivered' ? null : 'failure', 'data-outcome': a.outcome },
          h('td', {}, formatDate(a.date_created)),
          h('td', {}, a.event_type ?? ''),
          h('td', { class: 'url' }, `${a.method} ${a.url}`),
          h('td', {}, a.outcome.replace('_', ' ')),
          h('td', {}, String(a.attempt)),
          h('td', {}, a.error ?? ''),
          h('td', {}, a.next_retry ? formatDate(a.next_retry) : ''),
        ),
      ),
    );
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const filters = filterBoxes.filter((box) => box.checked).map((box) => box.value);
      show(
        await context.rest.post<WebhookConfiguration>('/v1/Configuration/Webhooks', {
          PreWebhookUrl: pre.value,
          PostWebhookUrl: post.value,
          Method: method.value,
          Filters: filters,
        }),
      );
      status.textContent = 'Saved.';
    } catch (failure) {
      status.textContent = describeError(failure);
    }
  });
  outcome.addEventListener('change', () => {
    historyPage = null;
    loadDeliveries().catch((f) => (status.textContent = describeError(f)));
  });
  newest.addEventListener('click', () => {
    historyPage = null;
    loadDeliveries().catch((f) => (status.textContent = describeError(f)));
  });
  const refresh = () => Promise.all([loadOutbox(), loadDeliveries()]);

  const element = h(
    'main',
    { class: 'webhooks' },
    h('h1', {}, 'Webhooks'),
    h('p', {}, 'Account-wide settings; services and conversations can have their own (REST API).'),
    form,
    status,
    h('h2', {}, 'Outbox'),
    h('p', {}, 'Requests still to send, and those given up on after every attempt failed.'),
    h(
      'table',
      { class: 'list outbox' },
      h(
        'thead',
        {},
        h('tr', {}, ['Planned', 'Event', 'Request', 'State', 'Attempts', 'Last error', 'Next attempt'].map((t) => h('th', {}, t))),
      ),
      outboxRows,
    ),
    h('h2', {}, 'Delivery history ', outcome),
    h(
      'table',
      { class: 'list deliveries' },
      h(
        'thead',
        {},
        h('tr', {}, ['When', 'Event', 'Request', 'Outcome', 'Attempt', 'Error', 'Next retry'].map((t) => h('th', {}, t))),
      ),
      rows,
    ),
    h('p', { class: 'pager' }, newest, ' ', older),
  );
  loadConfig().catch((failure) => (status.textContent = describeError(failure)));
  refresh().catch((failure) => (status.textContent = describeError(failure)));
  const timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  return { element, dispose: () => clearInterval(timer) };
}
