// A client of Palaver's realtime protocol (docs/protocol.md; the Rust types are in
// crates/palaver-api/src/realtime.rs): one WebSocket, JSON text frames, requests with typed replies, stored
// events with per-stream sequence numbers, and resume after a reconnect from the last number seen.

export interface ConversationInfo {
  sid: string;
  service_sid: string;
  friendly_name: string | null;
  unique_name: string | null;
  attributes: string;
  state: string;
  date_created: string;
  date_updated: string;
  last_message: { index: number; date_created: string | null } | null;
  messages_count: number;
  participants_count: number;
}

export interface ParticipantInfo {
  sid: string;
  conversation_sid: string;
  identity: string | null;
  type: string;
  messaging_binding: { type: string; address: string; proxy_address?: string | null } | null;
  attributes: string;
  role_sid: string | null;
  last_read_message_index: number | null;
  last_read_timestamp: string | null;
}

export interface MessageInfo {
  sid: string;
  conversation_sid: string;
  index: number;
  author: string;
  body: string | null;
  subject: string | null;
  attributes: string;
  participant_sid: string | null;
  media: MediaDescriptor[];
  delivery: Record<string, unknown> | null;
  date_created: string;
  date_updated: string | null;
}

export interface MediaDescriptor {
  sid: string;
  content_type: string;
  filename: string | null;
  size: number;
  category?: string;
}

export interface MyConversation {
  conversation: ConversationInfo;
  status: string;
  participant: ParticipantInfo | null;
  last_read_message_index: number | null;
  unread_messages_count: number | null;
  notification_level: string;
  last_seq: number;
}

export interface Connected {
  identity: string;
  service_sid: string;
  token_expires_at: string;
  typing_timeout_ms: number;
  session_id: string;
}

export interface EventFrame {
  type: 'event';
  stream: string;
  seq: number;
  kind: string;
  data: Record<string, unknown>;
  at: string;
}

export interface TypingFrame {
  type: 'typing';
  conversation_sid: string;
  identity: string;
  participant_sid: string | null;
  timeout_ms: number;
}

export interface UnreadFrame {
  type: 'unread';
  conversation_sid: string;
  unread_messages_count: number | null;
  last_read_message_index: number | null;
}

/** An error reply (the REST API's Twilio codes). */
export class RealtimeError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'denied' | 'closed';

export interface Listeners {
  event?: (frame: EventFrame) => void;
  typing?: (frame: TypingFrame) => void;
  unread?: (frame: UnreadFrame) => void;
  state?: (state: ConnectionState, detail?: string) => void;
}

/** Close codes after which reconnecting with the same credentials cannot help. */
const DENIED = 4401;
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 5000, 10000];

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

export class RealtimeClient {
  private socket: WebSocket | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** The last sequence number handled per stream: sent as `resume`, and used to drop a replayed duplicate. */
  private readonly lastSeq = new Map<string, number>();
  private attempts = 0;
  private stopped = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  connected: Connected | null = null;

  /**
   * `tokenFor` mints an access token (called at every connect and before the token expires); `listeners` get
   * the events, typing and unread frames and connection state changes.
   */
  constructor(
    private readonly url: string,
    private readonly tokenFor: () => Promise<string>,
    private readonly listeners: Listeners,
  ) {}

  /** Connects; resolves once `connect` is answered. Later drops reconnect and resume by themselves. */
  async start(): Promise<Connected> {
    this.stopped = false;
    return this.open();
  }

  /** Closes the connection for good. */
  close(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.socket?.close(1000);
    this.socket = null;
    this.failPending(new Error('the connection was closed'));
    this.listeners.state?.('closed');
  }

  /** Calls a protocol method; resolves with its result, rejects with a `RealtimeError`. */
  call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error('not connected to the realtime API'));
    }
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });
  }

  private open(): Promise<Connected> {
    this.listeners.state?.(this.attempts === 0 ? 'connecting' : 'reconnecting');
    return new Promise<Connected>((resolve, reject) => {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      let settled = false;
      socket.onopen = async () => {
        try {
          const token = await this.tokenFor();
          const resume = Object.fromEntries(this.lastSeq);
          const connected = await this.call<Connected>('connect', { token, resume });
          this.connected = connected;
          this.attempts = 0;
          settled = true;
          this.listeners.state?.('connected');
          resolve(connected);
        } catch (error) {
          settled = true;
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      };
      socket.onmessage = (message) => this.handle(String(message.data));
      socket.onclose = (close) => {
        if (this.socket !== socket) return;
        this.socket = null;
        this.failPending(new Error(`the connection closed (${close.code})`));
        if (!settled) {
          settled = true;
          reject(new Error(`could not connect to the realtime API (close code ${close.code})`));
        }
        if (this.stopped) return;
        if (close.code === DENIED) {
          this.listeners.state?.('denied', close.reason);
          return;
        }
        this.scheduleReconnect();
      };
    });
  }

  private scheduleReconnect(): void {
    const delay = RECONNECT_DELAYS_MS[Math.min(this.attempts, RECONNECT_DELAYS_MS.length - 1)];
    this.attempts += 1;
    this.listeners.state?.('reconnecting');
    this.reconnectTimer = setTimeout(() => {
      this.open().catch(() => {
        // The close handler schedules the next try.
      });
    }, delay);
  }

  private failPending(error: Error): void {
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }

  private handle(text: string): void {
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    switch (frame.type) {
      case 'reply': {
        const pending = this.pending.get(frame.reply_to as number);
        if (!pending) return;
        this.pending.delete(frame.reply_to as number);
        const error = frame.error as { code: number; message: string; status: number } | undefined;
        if (error) pending.reject(new RealtimeError(error.code, error.message, error.status));
        else pending.resolve(frame.result);
        return;
      }
      case 'event': {
        const event = frame as unknown as EventFrame;
        const last = this.lastSeq.get(event.stream) ?? 0;
        if (event.seq <= last) return;
        this.lastSeq.set(event.stream, event.seq);
        this.listeners.event?.(event);
        return;
      }
      case 'typing':
        this.listeners.typing?.(frame as unknown as TypingFrame);
        return;
      case 'unread':
        this.listeners.unread?.(frame as unknown as UnreadFrame);
        return;
      case 'token_about_to_expire':
        this.tokenFor()
          .then((token) => this.call('update_token', { token }))
          .catch(() => {
            // At expiry the server closes the connection, and the reconnect mints a fresh token.
          });
        return;
      default:
        return;
    }
  }
}

/** The realtime endpoint of the server this page came from. */
export function realtimeUrl(): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/v1/realtime`;
}
