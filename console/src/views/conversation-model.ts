// The conversation page's model: messages, participants and the conversation as the page keeps them, and
// their conversions from the REST API's resources and the realtime protocol's events (which name the same
// fields differently).

import type { ConversationInfo, MediaDescriptor, MessageInfo, ParticipantInfo } from '../realtime';

export interface Message {
  sid: string;
  index: number;
  author: string | null;
  body: string | null;
  subject: string | null;
  attributes: string;
  media: MediaDescriptor[];
  delivery: Record<string, unknown> | null;
  dateCreated: string;
}

export interface Participant {
  sid: string;
  identity: string | null;
  binding: { type: string; address: string; proxy_address?: string | null } | null;
  roleSid: string | null;
  attributes: string;
  lastRead: number | null;
  lastReadAt: string | null;
}

export interface Conversation {
  sid: string;
  friendlyName: string | null;
  uniqueName: string | null;
  attributes: string;
  state: string;
  dateUpdated: string;
}

export interface RestMessage {
  sid: string;
  index: number;
  author: string | null;
  body: string | null;
  subject?: string | null;
  attributes: string;
  media: MediaDescriptor[] | null;
  delivery: Record<string, unknown> | null;
  date_created: string;
}

export interface RestParticipant {
  sid: string;
  identity: string | null;
  messaging_binding: Participant['binding'];
  role_sid: string | null;
  attributes: string;
  last_read_message_index: number | null;
  last_read_timestamp: string | null;
}

export interface RestConversation {
  sid: string;
  friendly_name: string | null;
  unique_name: string | null;
  attributes: string;
  state: string;
  date_updated: string;
}

export function fromRestMessage(m: RestMessage): Message {
  return {
    sid: m.sid,
    index: m.index,
    author: m.author,
    body: m.body,
    subject: m.subject ?? null,
    attributes: m.attributes,
    media: m.media ?? [],
    delivery: m.delivery,
    dateCreated: m.date_created,
  };
}

/** A realtime message has every field a REST one has, under the same names. */
export function fromMessageInfo(m: MessageInfo): Message {
  return fromRestMessage(m);
}

export function fromRestParticipant(p: RestParticipant): Participant {
  return {
    sid: p.sid,
    identity: p.identity,
    binding: p.messaging_binding,
    roleSid: p.role_sid,
    attributes: p.attributes,
    lastRead: p.last_read_message_index,
    lastReadAt: p.last_read_timestamp,
  };
}

export function fromParticipantInfo(p: ParticipantInfo): Participant {
  return {
    sid: p.sid,
    identity: p.identity,
    binding: p.messaging_binding,
    roleSid: p.role_sid,
    attributes: p.attributes,
    lastRead: p.last_read_message_index,
    lastReadAt: p.last_read_timestamp,
  };
}

export function fromRestConversation(c: RestConversation): Conversation {
  return {
    sid: c.sid,
    friendlyName: c.friendly_name,
    uniqueName: c.unique_name,
    attributes: c.attributes,
    state: c.state,
    dateUpdated: c.date_updated,
  };
}

export function fromConversationInfo(c: ConversationInfo): Conversation {
  return {
    sid: c.sid,
    friendlyName: c.friendly_name,
    uniqueName: c.unique_name,
    attributes: c.attributes,
    state: c.state,
    dateUpdated: c.date_updated,
  };
}
