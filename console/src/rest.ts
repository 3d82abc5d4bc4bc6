// The REST API (Twilio Conversations v1 shape, plus Palaver's own resources under /palaver/v1): form-encoded
// requests with PascalCase parameters, JSON answers with snake_case fields, HTTP Basic credentials (the
// account SID and auth token, or an API key SID and secret).

/** An answer other than 2xx, with Twilio's error code when the server sent one. */
export class RestError extends Error {
  constructor(
    readonly status: number,
    readonly code: number | null,
    message: string,
  ) {
    super(message);
  }
}

export type Params = Record<string, string | number | boolean | string[] | null | undefined>;

/** A list page: its items and the URL of the next page, if any. */
export interface Page<T> {
  items: T[];
  nextPageUrl: string | null;
}

export class Rest {
  private readonly authorization: string;

  constructor(
    readonly username: string,
    password: string,
  ) {
    this.authorization = 'Basic ' + btoa(`${username}:${password}`);
  }

  async get<T>(path: string, params: Params = {}): Promise<T> {
    return this.request<T>('GET', withQuery(path, params));
  }

  async post<T>(path: string, params: Params = {}, headers: Record<string, string> = {}): Promise<T> {
    return this.request<T>('POST', path, form(params), headers);
  }

  /** Sends `body` as the request body with its own content type (media uploads). */
  async upload<T>(path: string, body: Blob, contentType: string): Promise<T> {
    return this.request<T>('POST', path, body, { 'Content-Type': contentType });
  }

  async delete(path: string): Promise<void> {
    await this.request<void>('DELETE', path);
  }

  /** One page of a list resource; `key` is the list's field (`conversations`, `messages`, …). */
  async page<T>(pathOrUrl: string, key: string, params: Params = {}): Promise<Page<T>> {
    const body = await this.get<Record<string, unknown>>(pathOrUrl, params);
    const meta = (body.meta ?? {}) as { next_page_url?: string | null };
    return { items: (body[key] as T[]) ?? [], nextPageUrl: meta.next_page_url ?? null };
  }

  /** A file's bytes (media content), fetched with the credentials, as a Blob. */
  async blob(path: string): Promise<Blob> {
    const response = await fetch(path, { headers: { Authorization: this.authorization }, credentials: 'omit' });
    if (!response.ok) throw await errorOf(response);
    return response.blob();
  }

  private async request<T>(
    method: string,
    path: string,
    body?: BodyInit,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const response = await fetch(relativeTo(path), {
      method,
      headers: { Authorization: this.authorization, Accept: 'application/json', ...headers },
      body,
      credentials: 'omit',
    });
    if (!response.ok) throw await errorOf(response);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }
}

/** Absolute URLs from `meta` point at this server: keep their path and query only. */
function relativeTo(pathOrUrl: string): string {
  if (!/^https?:/.test(pathOrUrl)) return pathOrUrl;
  const url = new URL(pathOrUrl);
  return url.pathname + url.search;
}

function withQuery(path: string, params: Params): string {
  const query = form(params).toString();
  if (!query) return path;
  return path + (path.includes('?') ? '&' : '?') + query;
}

function form(params: Params): URLSearchParams {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) body.append(name, String(item));
  }
  return body;
}

async function errorOf(response: Response): Promise<RestError> {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { code?: number; message?: string };
    return new RestError(response.status, body.code ?? null, body.message ?? `HTTP ${response.status}`);
  } catch {
    return new RestError(response.status, null, text || `HTTP ${response.status}`);
  }
}
