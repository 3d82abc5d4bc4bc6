// The channel deliveries page: the delivery receipts of SMS, WhatsApp and email recipients across
// conversations, newest first, with each recipient's address, attempts and last error, failures only when
// asked (GET /palaver/v1/ChannelDeliveries, read from the receipts themselves).

import { type Context, conversationHash } from '../context';
import { describeError, formatDate, h, replace } from '../dom';
import type { PageView } from '../main';

interface ChannelDelivery {
  service_sid: string;
  receipt: {
    sid: string;
    conversation_sid: string;
    message_sid: string;
    participant_sid: string;
    channel_message_sid: string | null;
    status: string;
    error_code: number;
    date_created: string;
    date_updated: string;
  };
  channel: string;
  address: string | null;
  attempts: number;
  last_error: string | null;
  next_attempt: string | null;
  message_index: number | null;
  message_author: string | null;
  date_created: string;
}

const REFRESH_MS = 3000;
const PAGE_SIZE = 50;

export function channelDeliveriesPage(context: Context, params: URLSearchParams): PageView {
  const status = h('p', { class: 'status', role: 'status' });
  const failedOnly = h('input', { type: 'checkbox', name: 'failed', checked: params.get('failed') === 'true' });
  const rows = h('tbody');
  const older = h('button', { type: 'button', class: 'link', hidden: true }, 'Older receipts →');
  const newest = h('button', { type: 'button', class: 'link', hidden: true }, '← Newest');
  // The page shown: null for the newest, else the URL of an older page (from `next_page_url`).
  let shown: string | null = null;
  const report = (failure: unknown) => (status.textContent = describeError(failure));

  const load = async () => {
    const page = await context.rest.page<ChannelDelivery>(
      shown ?? '/palaver/v1/ChannelDeliveries',
      'channel_deliveries',
      shown ? {} : { Failed: failedOnly.checked ? 'true' : null, PageSize: PAGE_SIZE },
    );
    older.hidden = !page.nextPageUrl;
    newest.hidden = shown === null;
    older.onclick = () => {
      shown = page.nextPageUrl;
      load().catch(report);
    };
    replace(
      rows,
      page.items.length === 0 ? h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No delivery receipts')) : null,
      page.items.map((d) => {
        const r = d.receipt;
        const failed = r.status === 'failed' || r.status === 'undelivered';
        const problem = [r.error_code ? `error ${r.error_code}` : '', d.last_error ?? ''].filter(Boolean).join(': ');
        return h(
          'tr',
          { class: failed ? 'failure' : null, 'data-status': r.status },
          h('td', {}, formatDate(d.date_created)),
          h('td', {}, `${d.channel} ${d.address ?? r.participant_sid}`),
          h('td', {}, r.status, d.next_attempt ? h('small', {}, ` (next try ${formatDate(d.next_attempt)})`) : null),
          h('td', {}, String(d.attempts)),
          h('td', {}, problem),
          h(
            'td',
            {},
            h('a', { href: conversationHash(d.service_sid, r.conversation_sid) }, r.conversation_sid),
            d.message_index !== null ? ` #${d.message_index}` : '',
            d.message_author ? ` by ${d.message_author}` : '',
          ),
          h('td', { class: 'sid' }, r.channel_message_sid ?? ''),
        );
      }),
    );
  };

  failedOnly.addEventListener('change', () => {
    shown = null;
    load().catch(report);
  });
  newest.addEventListener('click', () => {
    shown = null;
    load().catch(report);
  });
  const element = h(
    'main',
    { class: 'channel-deliveries' },
    h('h1', {}, 'Channel deliveries'),
    h(
      'p',
      {},
      'Delivery receipts of SMS, WhatsApp and email participants, newest first, as they stand now (the ' +
        'time is their last change). Each message keeps its receipts: open its conversation.',
    ),
    h('label', {}, failedOnly, ' Failures only'),
    status,
    h(
      'table',
      { class: 'list' },
      h(
        'thead',
        {},
        h('tr', {}, ['When', 'Recipient', 'Status', 'Attempts', 'Error', 'Message', 'Channel id'].map((t) => h('th', {}, t))),
      ),
      rows,
    ),
    h('p', { class: 'pager' }, newest, ' ', older),
  );
  load().catch(report);
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  return { element, dispose: () => clearInterval(timer) };
}
