// The server's public REST API (Twilio Conversations v1 shape): form-encoded requests with PascalCase fields,
// JSON answers with snake_case fields, HTTP Basic auth. The tests use it to make changes "from the server side"
// (as a backend with the `twilio` library would) and to check what the SDK did.

export class RestError extends Error {
  constructor(method, path, status, body) {
    super(`${method} ${path} answered ${status}: ${typeof body === 'string' ? body : JSON.stringify(body)}`);
    this.status = status;
    this.body = body;
  }
}

export class Rest {
  constructor(baseUrl, username, password) {
    this.baseUrl = baseUrl;
    this.authorization = 'Basic ' + Buffer.from(`${username}:${password}`).toString('base64');
  }

  /**
   * Sends one request. `params` go in the query string for GET/DELETE and in the form body otherwise; an array
   * value repeats the key. Resolves to `{status, body, headers}`; rejects with a `RestError` when the status is
   * not 2xx, unless `raw` is set.
   */
  async request(method, path, params = {}, { raw = false, headers = {} } = {}) {
    const form = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value === undefined || value === null) continue;
      for (const item of Array.isArray(value) ? value : [value]) {
        form.append(key, typeof item === 'object' ? JSON.stringify(item) : String(item));
      }
    }
    const hasBody = method !== 'GET' && method !== 'DELETE';
    const query = !hasBody && [...form.keys()].length ? `?${form}` : '';
    const url = path.startsWith('http') ? path + query : `${this.baseUrl}${path}${query}`;
    const response = await fetch(url, {
      method,
      headers: {
        Authorization: this.authorization,
        Accept: 'application/json',
        ...(hasBody ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {}),
        ...headers,
      },
      body: hasBody ? form.toString() : undefined,
      signal: AbortSignal.timeout(15_000),
    });
    const text = await response.text();
    let body = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    if (!raw && (response.status < 200 || response.status > 299)) {
      throw new RestError(method, path, response.status, body);
    }
    return { status: response.status, body, headers: response.headers };
  }

  async get(path, params, options) {
    return (await this.request('GET', path, params, options)).body;
  }

  async post(path, params, options) {
    return (await this.request('POST', path, params, options)).body;
  }

  async delete(path, params, options) {
    return (await this.request('DELETE', path, params, options)).status;
  }

  // Shorthands for what the tests do most.

  /** `POST /v1/Conversations`. `params` in PascalCase (FriendlyName, UniqueName, Attributes…). */
  createConversation(params = {}) {
    return this.post('/v1/Conversations', params);
  }

  /** `POST /v1/Conversations/{CH}/Participants` with `Identity` (a chat participant). */
  addParticipant(conversationSid, identity, params = {}) {
    return this.post(`/v1/Conversations/${conversationSid}/Participants`, { Identity: identity, ...params });
  }

  /** `POST /v1/Conversations/{CH}/Messages`. */
  postMessage(conversationSid, author, body, params = {}) {
    return this.post(`/v1/Conversations/${conversationSid}/Messages`, { Author: author, Body: body, ...params });
  }

  /** Every message of a conversation, ascending (follows `meta.next_page_url`). */
  async listMessages(conversationSid) {
    return this.listAll(`/v1/Conversations/${conversationSid}/Messages`, { PageSize: 100 });
  }

  /** Every participant of a conversation. */
  async listParticipants(conversationSid) {
    return this.listAll(`/v1/Conversations/${conversationSid}/Participants`, { PageSize: 100 });
  }

  /** Follows a list's pages and concatenates its items (found under `meta.key`). */
  async listAll(path, params = {}) {
    const items = [];
    let page = await this.get(path, params);
    for (;;) {
      items.push(...page[page.meta.key]);
      if (!page.meta.next_page_url) return items;
      page = await this.get(page.meta.next_page_url);
    }
  }
}
