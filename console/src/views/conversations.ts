// The conversations page: filters (service, state, unique name, participant identity or address), the list,
// and live unread counts of the identity filtered on (through the realtime API, as that user).

import { type Context, accessToken, conversationHash } from '../context';
import { describeError, formatDate, h, replace } from '../dom';
import type { PageView } from '../main';
import { RealtimeClient, type MyConversation, realtimeUrl } from '../realtime';
import { RestError } from '../rest';

interface Row {
  sid: string;
  friendlyName: string | null;
  uniqueName: string | null;
  state: string;
  dateUpdated: string;
}

interface ConversationResource {
  sid: string;
  friendly_name: string | null;
  unique_name: string | null;
  state: string;
  date_updated: string;
}

interface ParticipantConversationResource {
  conversation_sid: string;
  conversation_friendly_name: string | null;
  conversation_unique_name: string | null;
  conversation_state: string;
  conversation_date_updated: string;
}

/** How often the list is read again when no identity's realtime session tells it about changes. */
const POLL_MS = 5000;

export function conversationsPage(context: Context, params: URLSearchParams): PageView {
  const service = params.get('service') || context.defaultService;
  const filters = {
    state: params.get('state') ?? '',
    unique: params.get('unique') ?? '',
    identity: params.get('identity') ?? '',
    address: params.get('address') ?? '',
  };
  const status = h('p', { class: 'status', role: 'status' });
  const table = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'More');
  const unread = new Map<string, number | null>();
  let rows: Row[] = [];
  let nextPage: string | null = null;
  let realtime: RealtimeClient | null = null;
  let timer: ReturnType<typeof setInterval> | null = null;
  let disposed = false;

  const serviceSelect = h(
    'select',
    { name: 'service' },
    context.services.map((s) =>
      h('option', { value: s.sid, selected: s.sid === service }, `${s.friendly_name} (${s.sid})`),
    ),
  );
  const stateSelect = h(
    'select',
    { name: 'state' },
    ['', 'active', 'inactive', 'closed'].map((s) => h('option', { value: s, selected: s === filters.state }, s || 'any')),
  );
  const input = (name: string, value: string, placeholder: string) =>
    h('input', { name, value, placeholder, type: 'search' });
  const form = h(
    'form',
    { class: 'filters' },
    h('label', {}, 'Service', serviceSelect),
    h('label', {}, 'State', stateSelect),
    h('label', {}, 'Unique name', input('unique', filters.unique, 'exact')),
    h('label', {}, 'Participant identity', input('identity', filters.identity, 'e.g. alice')),
    h('label', {}, 'Participant address', input('address', filters.address, 'e.g. +15551230000')),
    h('button', { type: 'submit' }, 'Apply'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      if (String(value).trim()) query.set(name, String(value).trim());
    }
    context.navigate(`#/conversations?${query}`);
  });

  const createName = h('input', { name: 'friendly_name', placeholder: 'Friendly name' });
  const createUnique = h('input', { name: 'unique_name', placeholder: 'Unique name (optional)' });
  const create = h(
    'form',
    { class: 'inline' },
    createName,
    createUnique,
    h('button', { type: 'submit' }, 'Create conversation'),
  );
  create.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const created = await context.rest.post<ConversationResource>(
        `/v1/Services/${service}/Conversations`,
        { FriendlyName: createName.value || null, UniqueName: createUnique.value || null },
      );
      context.navigate(conversationHash(service, created.sid));
    } catch (failure) {
      status.textContent = describeError(failure);
    }
  });

  const render = () => {
    replace(
      table,
      rows.length === 0 ? h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No conversations')) : null,
      rows.map((row) => {
        const count = unread.get(row.sid);
        return h(
          'tr',
          { 'data-sid': row.sid },
          h('td', {}, h('a', { href: conversationHash(service, row.sid) }, row.friendlyName || row.uniqueName || row.sid)),
          h('td', {}, row.uniqueName ?? ''),
          h('td', { class: 'sid' }, row.sid),
          h('td', {}, h('span', { class: `state ${row.state}` }, row.state)),
          h('td', {}, formatDate(row.dateUpdated)),
          h('td', { class: 'unread' }, filters.identity && count !== undefined ? (count === null ? '–' : String(count)) : ''),
        );
      }),
    );
    more.hidden = !nextPage;
  };

  const load = async (append = false) => {
    try {
      const page = await fetchRows(context, service, filters, append ? nextPage : null);
      if (disposed) return;
      rows = append ? rows.concat(page.rows) : page.rows;
      nextPage = page.next;
      status.textContent = '';
      render();
    } catch (failure) {
      status.textContent = describeError(failure);
    }
  };
  more.addEventListener('click', () => load(true));

  const followIdentity = async (identity: string) => {
    const loadCounts = async (client: RealtimeClient) => {
      let token: string | null = null;
      do {
        const page: { items: MyConversation[]; next_page_token: string | null } = await client.call(
          'get_my_conversations',
          token ? { page_token: token } : {},
        );
        for (const item of page.items) unread.set(item.conversation.sid, item.unread_messages_count);
        token = page.next_page_token;
      } while (token);
      render();
    };
    realtime = new RealtimeClient(realtimeUrl(), () => accessToken(context, identity, service), {
      unread: (frame) => {
        unread.set(frame.conversation_sid, frame.unread_messages_count);
        render();
      },
      event: (frame) => {
        if (frame.kind.startsWith('user.conversation_') || frame.kind.startsWith('conversation.')) load();
      },
      state: (state) => {
        live.textContent = state === 'connected' ? `live as ${identity}` : state;
        live.className = `live ${state}`;
        if (state === 'connected' && realtime) loadCounts(realtime).catch(() => {});
      },
    });
    await realtime.start();
  };

  const live = h('span', { class: 'live' });
  const element = h(
    'main',
    { class: 'conversations' },
    h('h1', {}, 'Conversations ', live),
    form,
    create,
    status,
    h(
      'table',
      { class: 'list' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Name', 'Unique name', 'SID', 'State', 'Updated', filters.identity ? `Unread (${filters.identity})` : ''].map(
            (label) => h('th', {}, label),
          ),
        ),
      ),
      table,
    ),
    more,
  );

  load();
  if (filters.identity) {
    followIdentity(filters.identity).catch((failure) => (status.textContent = describeError(failure)));
  } else {
    live.textContent = `refreshed every ${POLL_MS / 1000} s`;
    timer = setInterval(() => load(), POLL_MS);
  }
  return {
    element,
    dispose() {
      disposed = true;
      if (timer) clearInterval(timer);
      realtime?.close();
    },
  };
}

async function fetchRows(
  context: Context,
  service: string,
  filters: { state: string; unique: string; identity: string; address: string },
  next: string | null,
): Promise<{ rows: Row[]; next: string | null }> {
  const base = `/v1/Services/${service}`;
  const matches = (row: Row) =>
    (!filters.state || row.state === filters.state) && (!filters.unique || row.uniqueName === filters.unique);
  if (filters.identity || filters.address) {
    const page = await context.rest.page<ParticipantConversationResource>(
      next ?? `${base}/ParticipantConversations`,
      'conversations',
      next ? {} : { Identity: filters.identity || null, Address: filters.address || null, PageSize: 50 },
    );
    const rows = page.items.map((item) => ({
      sid: item.conversation_sid,
      friendlyName: item.conversation_friendly_name,
      uniqueName: item.conversation_unique_name,
      state: item.conversation_state,
      dateUpdated: item.conversation_date_updated,
    }));
    return { rows: rows.filter(matches), next: page.nextPageUrl };
  }
  if (filters.unique) {
    try {
      const one = await context.rest.get<ConversationResource>(`${base}/Conversations/${encodeURIComponent(filters.unique)}`);
      return { rows: [fromResource(one)].filter(matches), next: null };
    } catch (failure) {
      if (failure instanceof RestError && failure.status === 404) return { rows: [], next: null };
      throw failure;
    }
  }
  const page = await context.rest.page<ConversationResource>(
    next ?? `${base}/Conversations`,
    'conversations',
    next ? {} : { State: filters.state || null, PageSize: 50 },
  );
  return { rows: page.items.map(fromResource), next: page.nextPageUrl };
}

function fromResource(resource: ConversationResource): Row {
  return {
    sid: resource.sid,
    friendlyName: resource.friendly_name,
    uniqueName: resource.unique_name,
    state: resource.state,
    dateUpdated: resource.date_updated,
  };
}
