// One conversation: its messages (live, paging back through history, media previews, delivery receipts),
// who is typing, its participants and their read horizons, its attributes and state, and a composer that
// sends as a chosen chat participant.
//
// Live updates come from the realtime API, connected as the participant the console acts as (a user sees
// the events and typing of the conversations it takes part in). Watching without acting as anyone connects
// as an observer (a read-only session that may follow any conversation of the service), so messages,
// typing and read horizons arrive live then too.

import { type Context, accessToken, conversationPath, observerToken } from '../context';
import { describeError, formatDate, h, replace } from '../dom';
import type { PageView } from '../main';
import {
  type ConversationInfo,
  type MediaDescriptor,
  type MessageInfo,
  type ParticipantInfo,
  RealtimeClient,
  type TypingFrame,
  realtimeUrl,
} from '../realtime';
import {
  type Conversation,
  type Message,
  type Participant,
  type RestConversation,
  type RestMessage,
  type RestParticipant,
  fromConversationInfo,
  fromMessageInfo,
  fromParticipantInfo,
  fromRestConversation,
  fromRestMessage,
  fromRestParticipant,
} from './conversation-model';

const PAGE_SIZE = 30;
const ACTING_KEY = 'palaver-console-acting:';
const WATCH_ONLY = '';

export function conversationPage(context: Context, service: string, sid: string): PageView {
  const path = (below = '') => conversationPath(service, sid, below);
  const messages = new Map<number, Message>();
  const participants = new Map<string, Participant>();
  const typing = new Map<string, ReturnType<typeof setTimeout>>();
  const blobUrls: string[] = [];
  let conversation: Conversation | null = null;
  let olderPage: string | null = null;
  let realtime: RealtimeClient | null = null;
  let acting = sessionStorage.getItem(ACTING_KEY + sid) ?? null;
  let actingUnread: number | null = null;
  let typingSentAt = 0;
  let typingInterval = 5000;
  let disposed = false;

  // The page's parts.
  const title = h('h1', {});
  const subtitle = h('p', { class: 'subtitle' });
  const status = h('p', { class: 'status', role: 'status' });
  const live = h('span', { class: 'live' });
  const messageList = h('ol', { class: 'messages', 'aria-live': 'polite' });
  const olderButton = h('button', { type: 'button', class: 'older', hidden: true }, 'Load older messages');
  const typingLine = h('p', { class: 'typing', 'aria-live': 'polite' });
  const participantRows = h('tbody');
  const actingSelect = h('select', { name: 'acting', 'aria-label': 'Send as' });
  const unreadLine = h('span', { class: 'acting-unread' });
  const body = h('textarea', { name: 'body', rows: 2, placeholder: 'Write a message…' });
  const files = h('input', { type: 'file', name: 'media', multiple: true });
  const sendButton = h('button', { type: 'submit' }, 'Send');
  const markRead = h('button', { type: 'button', class: 'link' }, 'mark all read');
  const composer = h(
    'form',
    { class: 'composer' },
    h('div', { class: 'acting' }, h('label', {}, 'Send as ', actingSelect), unreadLine, markRead),
    body,
    h('div', { class: 'row' }, files, sendButton),
  );
  const attributes = h('textarea', { name: 'attributes', rows: 6, spellcheck: false });
  const friendlyName = h('input', { name: 'friendly_name' });
  const stateSelect = h(
    'select',
    { name: 'state' },
    ['active', 'inactive', 'closed'].map((s) => h('option', { value: s }, s)),
  );
  const details = h(
    'form',
    { class: 'details' },
    h('label', {}, 'Friendly name', friendlyName),
    h('label', {}, 'Attributes (JSON)', attributes),
    h('button', { type: 'submit', name: 'save' }, 'Save'),
  );
  const stateForm = h('form', { class: 'inline state-form' }, h('label', {}, 'State ', stateSelect), h('button', { type: 'submit' }, 'Change state'));
  const addIdentity = h('input', { name: 'identity', placeholder: 'identity' });
  const addForm = h('form', { class: 'inline' }, addIdentity, h('button', { type: 'submit' }, 'Add chat participant'));

  const element = h(
    'main',
    { class: 'conversation' },
    h('p', {}, h('a', { href: `#/conversations?service=${service}` }, '← Conversations')),
    title,
    subtitle,
    status,
    h(
      'div',
      { class: 'columns' },
      h('section', { class: 'timeline' }, h('h2', {}, 'Messages ', live), olderButton, messageList, typingLine, composer),
      h(
        'aside',
        {},
        h('h2', {}, 'Participants'),
        h(
          'table',
          { class: 'participants' },
          h('thead', {}, h('tr', {}, ['Participant', 'Read up to', 'Unread', ''].map((t) => h('th', {}, t)))),
          participantRows,
        ),
        addForm,
        h('h2', {}, 'Conversation'),
        stateForm,
        details,
      ),
    ),
  );

  const fail = (failure: unknown) => {
    status.textContent = describeError(failure);
    status.className = 'status error';
  };
  const ok = (text = '') => {
    status.textContent = text;
    status.className = 'status';
  };

  // Rendering.
  const lastIndex = () => Math.max(-1, ...messages.keys());

  const renderHeader = () => {
    if (!conversation) return;
    title.textContent = conversation.friendlyName || conversation.uniqueName || conversation.sid;
    replace(
      subtitle,
      h('span', { class: `state ${conversation.state}`, 'data-state': conversation.state }, conversation.state),
      ' ',
      h('span', { class: 'sid' }, conversation.sid),
      conversation.uniqueName ? ` · unique name ${conversation.uniqueName}` : '',
      ` · updated ${formatDate(conversation.dateUpdated)}`,
    );
    if (document.activeElement !== attributes) attributes.value = pretty(conversation.attributes);
    if (document.activeElement !== friendlyName) friendlyName.value = conversation.friendlyName ?? '';
    stateSelect.value = conversation.state;
  };

  const renderMessages = () => {
    const sorted = [...messages.values()].sort((a, b) => a.index - b.index);
    replace(messageList, sorted.map(renderMessage));
    olderButton.hidden = !olderPage;
    messageList.scrollTop = messageList.scrollHeight;
  };

  const renderMessage = (message: Message) => {
    const attrs = message.attributes && message.attributes !== '{}' ? message.attributes : null;
    return h(
      'li',
      { 'data-index': message.index, 'data-author': message.author ?? '', class: message.author === acting ? 'mine' : null },
      h(
        'div',
        { class: 'meta' },
        h('strong', { class: 'author' }, message.author ?? '(no author)'),
        h('span', { class: 'index' }, `#${message.index}`),
        h('time', {}, formatDate(message.dateCreated)),
      ),
      message.subject ? h('div', { class: 'subject' }, message.subject) : null,
      h('div', { class: 'body' }, message.body ?? ''),
      message.media.length ? h('div', { class: 'media' }, message.media.map(renderMedia)) : null,
      attrs ? h('code', { class: 'attributes' }, attrs) : null,
      message.delivery ? renderDelivery(message) : null,
    );
  };

  const renderMedia = (media: MediaDescriptor) => {
    const holder = h('figure', { class: 'media-item', 'data-media': media.sid });
    const name = media.filename || media.sid;
    const caption = h('figcaption', {}, `${name} (${media.content_type}, ${media.size} bytes)`);
    const contentPath = `/v1/Services/${service}/Media/${media.sid}/Content`;
    const preview = media.content_type.startsWith('image/') && media.content_type !== 'image/svg+xml';
    if (preview) {
      context.rest
        .blob(contentPath)
        .then((blob) => {
          if (disposed) return;
          const url = URL.createObjectURL(blob);
          blobUrls.push(url);
          holder.prepend(h('img', { src: url, alt: name }));
        })
        .catch((failure) => holder.append(h('span', { class: 'error' }, describeError(failure))));
    }
    const download = h('button', { type: 'button', class: 'link' }, 'Download');
    download.addEventListener('click', async () => {
      try {
        const url = URL.createObjectURL(await context.rest.blob(contentPath));
        blobUrls.push(url);
        h('a', { href: url, download: name }).click();
      } catch (failure) {
        fail(failure);
      }
    });
    holder.append(caption, download);
    return holder;
  };

  const renderDelivery = (message: Message) => {
    const delivery = message.delivery ?? {};
    const summary = ['sent', 'delivered', 'read', 'undelivered', 'failed']
      .filter((key) => delivery[key] && delivery[key] !== 'none')
      .map((key) => `${key}: ${delivery[key]}`)
      .join(', ');
    const receipts = h('ul', { class: 'receipts' });
    const show = h('button', { type: 'button', class: 'link' }, 'receipts');
    show.addEventListener('click', async () => {
      try {
        const page = await context.rest.page<{ sid: string; participant_sid: string; status: string; error_code: number | null }>(
          path(`/Messages/${message.sid}/Receipts`),
          'delivery_receipts',
        );
        replace(
          receipts,
          page.items.map((r) =>
            h(
              'li',
              { class: r.status === 'failed' || r.status === 'undelivered' ? 'failure' : null },
              `${participantLabel(participants.get(r.participant_sid)) || r.participant_sid}: ${r.status}`,
              r.error_code ? ` (error ${r.error_code})` : '',
            ),
          ),
        );
      } catch (failure) {
        fail(failure);
      }
    });
    const failed = delivery.failed !== 'none' || delivery.undelivered !== 'none';
    return h(
      'div',
      { class: failed ? 'delivery failure' : 'delivery' },
      `delivery to ${delivery.total ?? 0}: ${summary || 'queued'} `,
      show,
      receipts,
    );
  };

  const renderParticipants = () => {
    const last = lastIndex();
    const sorted = [...participants.values()].sort((a, b) => participantLabel(a).localeCompare(participantLabel(b)));
    replace(
      participantRows,
      sorted.map((p) => {
        const unread = p.lastRead === null ? '–' : String(Math.max(0, last - p.lastRead));
        const remove = h('button', { type: 'button', class: 'link', title: 'Remove from the conversation' }, 'remove');
        remove.addEventListener('click', async () => {
          if (!confirm(`Remove ${participantLabel(p)} from the conversation?`)) return;
          try {
            await context.rest.delete(path(`/Participants/${p.sid}`));
            participants.delete(p.sid);
            renderParticipants();
          } catch (failure) {
            fail(failure);
          }
        });
        return h(
          'tr',
          { 'data-participant': p.identity ?? p.binding?.address ?? p.sid },
          h('td', {}, participantLabel(p), p.binding ? h('small', {}, ` ${p.binding.type}`) : null),
          h('td', { class: 'horizon', title: formatDate(p.lastReadAt) }, p.lastRead === null ? '–' : `#${p.lastRead}`),
          h('td', { class: 'unread' }, unread),
          h('td', {}, remove),
        );
      }),
    );
    renderActing();
  };

  const renderActing = () => {
    const identities = [...participants.values()]
      .map((p) => p.identity)
      .filter((identity): identity is string => !!identity)
      .sort();
    if (acting === null) acting = identities[0] ?? WATCH_ONLY;
    const options = [WATCH_ONLY, ...identities];
    if (acting && !options.includes(acting)) options.push(acting);
    replace(
      actingSelect,
      options.map((identity) =>
        h('option', { value: identity, selected: identity === acting }, identity || '(nobody: watch only)'),
      ),
    );
    const canSend = !!acting;
    body.disabled = !canSend;
    sendButton.disabled = !canSend;
    files.disabled = !canSend;
    markRead.hidden = !canSend;
    markRead.textContent = `mark all read as ${acting}`;
    body.placeholder = canSend ? `Write a message as ${acting}…` : 'Choose a chat participant to send as (or add one)';
    unreadLine.textContent = canSend && actingUnread !== null ? ` · ${actingUnread} unread for ${acting}` : '';
  };

  const renderTyping = () => {
    const names = [...typing.keys()];
    typingLine.textContent =
      names.length === 0 ? '' : `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…`;
  };

  // State changes from REST answers and realtime events.
  const upsertMessage = (message: Message) => {
    messages.set(message.index, message);
    if (message.author && typing.has(message.author)) {
      clearTimeout(typing.get(message.author));
      typing.delete(message.author);
      renderTyping();
    }
  };

  const loadConversation = async () => {
    conversation = fromRestConversation(await context.rest.get<RestConversation>(path()));
    renderHeader();
  };

  const loadParticipants = async () => {
    const fresh = new Map<string, Participant>();
    let next: string | null = path('/Participants');
    while (next) {
      const page: { items: RestParticipant[]; nextPageUrl: string | null } = await context.rest.page<RestParticipant>(
        next,
        'participants',
        next.includes('?') ? {} : { PageSize: 100 },
      );
      for (const p of page.items) fresh.set(p.sid, fromRestParticipant(p));
      next = page.nextPageUrl;
    }
    participants.clear();
    for (const [key, value] of fresh) participants.set(key, value);
    renderParticipants();
  };

  const loadNewest = async () => {
    const page = await context.rest.page<RestMessage>(path('/Messages'), 'messages', { Order: 'desc', PageSize: PAGE_SIZE });
    if (olderPage === null && messages.size === 0) olderPage = page.nextPageUrl;
    for (const m of page.items) upsertMessage(fromRestMessage(m));
    renderMessages();
  };

  const loadOlder = async () => {
    if (!olderPage) return;
    const page = await context.rest.page<RestMessage>(olderPage, 'messages');
    olderPage = page.nextPageUrl;
    for (const m of page.items) upsertMessage(fromRestMessage(m));
    const keep = messageList.scrollHeight - messageList.scrollTop;
    renderMessages();
    messageList.scrollTop = messageList.scrollHeight - keep;
  };

  const onEvent = (kind: string, data: Record<string, unknown>) => {
    if (kind.startsWith('message.') || kind === 'delivery.updated') {
      const message = fromMessageInfo(data as unknown as MessageInfo);
      if (kind === 'message.removed') messages.delete(message.index);
      else upsertMessage(message);
      renderMessages();
      renderParticipants();
    } else if (kind.startsWith('participant.')) {
      const participant = fromParticipantInfo(data as unknown as ParticipantInfo);
      if (kind === 'participant.removed') participants.delete(participant.sid);
      else participants.set(participant.sid, participant);
      renderParticipants();
    } else if (kind.startsWith('conversation.')) {
      if (kind === 'conversation.removed') {
        ok('This conversation was deleted.');
        return;
      }
      conversation = fromConversationInfo(data as unknown as ConversationInfo);
      renderHeader();
    }
  };

  const onTyping = (frame: TypingFrame) => {
    if (frame.conversation_sid !== sid) return;
    clearTimeout(typing.get(frame.identity));
    typing.set(
      frame.identity,
      setTimeout(() => {
        typing.delete(frame.identity);
        renderTyping();
      }, frame.timeout_ms),
    );
    renderTyping();
  };

  // Watching: an observer's session subscribed to this conversation. After a reconnect the server follows
  // the conversation again from the `resume` map and replays what was missed; subscribing again is harmless,
  // and covers a conversation that had sent nothing before the drop.
  const watch = async () => {
    let reconnecting = false;
    const client = new RealtimeClient(realtimeUrl(), () => observerToken(context, service), {
      event: (frame) => {
        if (frame.stream === sid) onEvent(frame.kind, frame.data);
      },
      typing: onTyping,
      state: (state, detail) => {
        live.textContent = state === 'connected' ? 'watching live' : `${state}${detail ? `: ${detail}` : ''}`;
        live.className = `live ${state}`;
        if (state === 'reconnecting') reconnecting = true;
        if (state === 'connected' && reconnecting) {
          reconnecting = false;
          client.call('subscribe', { conversation: sid }).catch(fail);
        }
      },
    });
    realtime = client;
    await client.start();
    await client.call('subscribe', { conversation: sid });
  };

  // Live: the realtime API as the acting participant, or as an observer when watching only.
  const goLive = async () => {
    realtime?.close();
    realtime = null;
    typing.clear();
    renderTyping();
    actingUnread = null;
    if (!acting) {
      await watch();
      return;
    }
    const identity = acting;
    const client = new RealtimeClient(realtimeUrl(), () => accessToken(context, identity, service), {
      event: (frame) => {
        if (frame.stream === sid) onEvent(frame.kind, frame.data);
      },
      typing: onTyping,
      unread: (frame) => {
        if (frame.conversation_sid !== sid) return;
        actingUnread = frame.unread_messages_count;
        renderActing();
      },
      state: (state, detail) => {
        live.textContent = state === 'connected' ? `live as ${identity}` : `${state}${detail ? `: ${detail}` : ''}`;
        live.className = `live ${state}`;
        // After a reconnect the resume replays what was missed; the first connect reads the current state.
        if (state === 'connected') {
          client
            .call<{ unread_messages_count: number | null }>('get_unread_count', { conversation: sid })
            .then((count) => {
              actingUnread = count.unread_messages_count;
              renderActing();
            })
            .catch(() => {});
        }
      },
    });
    realtime = client;
    await client.start();
    typingInterval = client.connected?.typing_timeout_ms ?? typingInterval;
  };

  // Controls.
  markRead.addEventListener('click', async () => {
    if (!realtime || !acting) return;
    try {
      const last = lastIndex();
      const count = await realtime.call<{ unread_messages_count: number | null }>('set_read_horizon', {
        conversation: sid,
        index: last < 0 ? null : last,
      });
      actingUnread = count.unread_messages_count;
      renderActing();
    } catch (failure) {
      fail(failure);
    }
  });
  olderButton.addEventListener('click', () => loadOlder().catch(fail));

  actingSelect.addEventListener('change', () => {
    acting = actingSelect.value;
    sessionStorage.setItem(ACTING_KEY + sid, acting);
    renderMessages();
    renderActing();
    goLive().catch(fail);
  });

  body.addEventListener('input', () => {
    const now = Date.now();
    if (!realtime || !acting || now - typingSentAt < typingInterval / 2) return;
    typingSentAt = now;
    realtime.call('typing', { conversation: sid }).catch(() => {});
  });
  body.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  composer.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!realtime || !acting) return;
    const text = body.value.trim();
    const chosen = [...(files.files ?? [])];
    if (!text && chosen.length === 0) return;
    sendButton.disabled = true;
    try {
      const mediaSids: string[] = [];
      for (const file of chosen) mediaSids.push(await upload(context, service, file));
      const sent = await realtime.call<MessageInfo>('send_message', {
        conversation: sid,
        body: text || null,
        media_sids: mediaSids,
        idempotency_key: crypto.randomUUID(),
      });
      upsertMessage(fromMessageInfo(sent));
      renderMessages();
      body.value = '';
      files.value = '';
      typingSentAt = 0;
      ok();
    } catch (failure) {
      fail(failure);
    } finally {
      sendButton.disabled = false;
    }
  });

  details.addEventListener('submit', async (event) => {
    event.preventDefault();
    let text = attributes.value.trim() || '{}';
    try {
      text = JSON.stringify(JSON.parse(text));
    } catch (failure) {
      fail(new Error(`The attributes are not valid JSON: ${describeError(failure)}`));
      return;
    }
    try {
      conversation = fromRestConversation(
        await context.rest.post<RestConversation>(path(), { Attributes: text, FriendlyName: friendlyName.value }),
      );
      attributes.blur();
      renderHeader();
      ok('Saved.');
    } catch (failure) {
      fail(failure);
    }
  });

  stateForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      conversation = fromRestConversation(await context.rest.post<RestConversation>(path(), { State: stateSelect.value }));
      renderHeader();
      ok(`The conversation is ${conversation.state}.`);
    } catch (failure) {
      fail(failure);
    }
  });

  addForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const identity = addIdentity.value.trim();
    if (!identity) return;
    try {
      const added = await context.rest.post<RestParticipant>(path('/Participants'), { Identity: identity });
      participants.set(added.sid, fromRestParticipant(added));
      addIdentity.value = '';
      renderParticipants();
    } catch (failure) {
      fail(failure);
    }
  });

  // Start: connect first, then read the current state, so no change falls between the two.
  (async () => {
    await loadParticipants();
    await goLive();
    await Promise.all([loadConversation(), loadNewest()]);
    renderParticipants();
  })().catch(fail);

  return {
    element,
    dispose() {
      disposed = true;
      realtime?.close();
      for (const timer of typing.values()) clearTimeout(timer);
      for (const url of blobUrls) URL.revokeObjectURL(url);
    },
  };
}

/** Uploads a file to the media service; resolves with its `ME…` SID. */
async function upload(context: Context, service: string, file: File): Promise<string> {
  const query = new URLSearchParams({ Filename: file.name });
  const media = await context.rest.upload<{ sid: string }>(
    `/v1/Services/${service}/Media?${query}`,
    file,
    file.type || 'application/octet-stream',
  );
  return media.sid;
}

function participantLabel(p: Participant | undefined): string {
  if (!p) return '';
  return p.identity ?? p.binding?.address ?? p.sid;
}

function pretty(json: string): string {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json;
  }
}
