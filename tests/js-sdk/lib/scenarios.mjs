// Set-ups several tests share: a conversation two SDK clients have joined, a conversation prepared over REST.

import { eventually } from './events.mjs';
import { unique } from './harness.mjs';

/**
 * `owner` creates a conversation with the SDK and joins it; then adds every other client with `add()`. Resolves
 * when each client has joined and sees every participant (so its message and roster streams are live).
 * Returns each client's own `Conversation` object, in the order given: `[ownersView, …othersViews]`.
 */
export async function sharedConversation(owner, others = [], options = {}) {
  const conversation = await owner.client.createConversation({ friendlyName: unique('room'), ...options });
  await conversation.join();
  await owner.joined(conversation.sid);
  const views = [conversation];
  for (const other of others) {
    await conversation.add(other.identity);
    views.push(await other.joined(conversation.sid));
  }
  await everyoneSeesEveryone(views, 1 + others.length);
  return views;
}

/** Waits until each view lists `count` participants (its roster is subscribed and complete). */
export async function everyoneSeesEveryone(views, count) {
  for (const view of views) {
    await eventually(async () => (await view.getParticipants()).length === count, {
      what: `${count} participants in ${view.sid}`,
    });
  }
}

/**
 * A conversation made over REST, with chat participants `identities` and `messages` (each `[author, body]`)
 * posted in order. Returns the REST conversation resource.
 */
export async function restConversation(rest, { identities = [], messages = [], params = {} } = {}) {
  const conversation = await rest.createConversation({ FriendlyName: unique('rest'), ...params });
  for (const identity of identities) await rest.addParticipant(conversation.sid, identity);
  for (const [author, body] of messages) await rest.postMessage(conversation.sid, author, body);
  return conversation;
}

/** `JSON.parse` for attributes that may come as a JSON string (REST) or already parsed (SDK). */
export function attributesOf(value) {
  return typeof value === 'string' ? JSON.parse(value) : value;
}
