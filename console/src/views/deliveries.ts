// The channel deliveries page: recent changes of SMS, WhatsApp and email delivery receipts across
// conversations, failures first when asked (GET /palaver/v1/ChannelDeliveries).

import { type Context, conversationHash } from '../context';
import { describeError, formatDate, h, replace } from '../dom';
import type { PageView } from '../main';

interface ReceiptChange {
  service_sid: string;
  receipt: {
    sid: string;
    conversation_sid: string;
    message_sid: string;
    participant_sid: string;
    channel_message_sid: string | null;
    status: string;
    error_code: number;
  };
  message_index: number | null;
  message_author: string | null;
  date_created: string;
}

const REFRESH_MS = 3000;

export function channelDeliveriesPage(context: Context, params: URLSearchParams): PageView {
  const status = h('p', { class: 'status', role: 'status' });
  const failedOnly = h('input', { type: 'checkbox', name: 'failed', checked: params.get('failed') === 'true' });
  const rows = h('tbody');
  const addresses = new Map<string, string>();

  const addressOf = async (service: string, conversation: string, participant: string): Promise<string> => {
    const known = addresses.get(participant);
    if (known) return known;
    const p = await context.rest.get<{ messaging_binding: { type: string; address: string } | null; identity: string | null }>(
      `/v1/Services/${service}/Conversations/${conversation}/Participants/${participant}`,
    );
    const label = p.messaging_binding ? `${p.messaging_binding.type} ${p.messaging_binding.address}` : (p.identity ?? participant);
    addresses.set(participant, label);
    return label;
  };

  const load = async () => {
    const page = await context.rest.get<{ channel_deliveries: ReceiptChange[] }>('/palaver/v1/ChannelDeliveries', {
      Failed: failedOnly.checked ? 'true' : null,
      PageSize: 200,
    });
    replace(
      rows,
      page.channel_deliveries.length === 0
        ? h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No receipt changes since the server started'))
        : null,
      page.channel_deliveries.map((change) => {
        const r = change.receipt;
        const recipient = h('td', {}, r.participant_sid);
        addressOf(change.service_sid, r.conversation_sid, r.participant_sid).then((label) => (recipient.textContent = label)).catch(() => {});
        const failed = r.status === 'failed' || r.status === 'undelivered';
        return h(
          'tr',
          { class: failed ? 'failure' : null, 'data-status': r.status },
          h('td', {}, formatDate(change.date_created)),
          recipient,
          h('td', {}, r.status),
          h('td', {}, r.error_code ? String(r.error_code) : ''),
          h(
            'td',
            {},
            h('a', { href: conversationHash(change.service_sid, r.conversation_sid) }, r.conversation_sid),
            change.message_index !== null ? ` #${change.message_index}` : '',
            change.message_author ? ` by ${change.message_author}` : '',
          ),
          h('td', { class: 'sid' }, r.channel_message_sid ?? ''),
        );
      }),
    );
  };

  failedOnly.addEventListener('change', () => load().catch((f) => (status.textContent = describeError(f))));
  const element = h(
    'main',
    { class: 'channel-deliveries' },
    h('h1', {}, 'Channel deliveries'),
    h(
      'p',
      {},
      'Delivery receipts of SMS, WhatsApp and email participants as they change (the newest 500 since the ' +
        'server started). Each message keeps its receipts: open its conversation.',
    ),
    h('label', {}, failedOnly, ' Failures only'),
    status,
    h(
      'table',
      { class: 'list' },
      h('thead', {}, h('tr', {}, ['When', 'Recipient', 'Status', 'Error', 'Message', 'Channel id'].map((t) => h('th', {}, t)))),
      rows,
    ),
  );
  load().catch((failure) => (status.textContent = describeError(failure)));
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  return { element, dispose: () => clearInterval(timer) };
}
