// What every page of the console shares: the REST client signed in with the account's credentials, the
// conversation services, and access tokens for the realtime API.

import { Rest } from './rest';

export interface Service {
  sid: string;
  friendly_name: string;
}

export interface Context {
  rest: Rest;
  /** Every conversation service, the default one first. */
  services: Service[];
  /** The account's default conversation service. */
  defaultService: string;
  /** Goes to a console address (`#/…`). */
  navigate(hash: string): void;
}

const STORAGE_KEY = 'palaver-console-credentials';

export interface Credentials {
  username: string;
  password: string;
}

/** The credentials of this tab's session, if it signed in (kept only as long as the tab). */
export function storedCredentials(): Credentials | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Credentials) : null;
  } catch {
    return null;
  }
}

export function storeCredentials(credentials: Credentials | null): void {
  if (credentials) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(credentials));
  else sessionStorage.removeItem(STORAGE_KEY);
}

/** Checks the credentials against the API and loads what every page needs. */
export async function signIn(credentials: Credentials, navigate: (hash: string) => void): Promise<Context> {
  const rest = new Rest(credentials.username.trim(), credentials.password.trim());
  const configuration = await rest.get<{ default_chat_service_sid: string }>('/v1/Configuration');
  const services: Service[] = [];
  let next: string | null = '/v1/Services?PageSize=100';
  while (next) {
    const page: { items: Service[]; nextPageUrl: string | null } = await rest.page<Service>(next, 'services');
    services.push(...page.items);
    next = page.nextPageUrl;
  }
  const defaultService = configuration.default_chat_service_sid;
  services.sort((a, b) => Number(b.sid === defaultService) - Number(a.sid === defaultService));
  return { rest, services, defaultService, navigate };
}

/** An access token for `identity` in `service`, from `POST /palaver/v1/AccessTokens`. */
export async function accessToken(context: Context, identity: string, service: string): Promise<string> {
  const minted = await context.rest.post<{ token: string }>('/palaver/v1/AccessTokens', {
    Identity: identity,
    ChatServiceSid: service,
  });
  return minted.token;
}

/**
 * An observer's access token for `service` (`POST /palaver/v1/AccessTokens` with `Observer=true`): its
 * realtime session follows any conversation of the service, read-only. The identity only names the console
 * in the server's logs; no user is created for it.
 */
export async function observerToken(context: Context, service: string): Promise<string> {
  const minted = await context.rest.post<{ token: string }>('/palaver/v1/AccessTokens', {
    Identity: 'palaver-console',
    ChatServiceSid: service,
    Observer: true,
  });
  return minted.token;
}

/** The REST path of a conversation (or of something below it). */
export function conversationPath(service: string, conversation: string, below = ''): string {
  return `/v1/Services/${encodeURIComponent(service)}/Conversations/${encodeURIComponent(conversation)}${below}`;
}

/** The console address of a conversation. */
export function conversationHash(service: string, conversation: string): string {
  return `#/services/${service}/conversations/${conversation}`;
}
