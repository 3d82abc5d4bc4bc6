// Waiting for things with bounded timeouts, so a broken server fails a test quickly instead of hanging it.

/** The default wait for one event (ms). */
export const EVENT_TIMEOUT_MS = Number(process.env.PALAVER_EVENT_TIMEOUT_MS || 10_000);

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class TimeoutError extends Error {}

/** `promise`, or a `TimeoutError` naming `what` (a string, or a function giving one) after `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const expiry = new Promise((_, reject) => {
    timer = setTimeout(() => {
      const label = typeof what === 'function' ? what() : what;
      reject(new TimeoutError(`timed out after ${ms} ms: ${label}`));
    }, ms);
  });
  return Promise.race([Promise.resolve(promise), expiry]).finally(() => clearTimeout(timer));
}

/**
 * The next `event` from `emitter` whose first argument passes `filter`: resolves with that argument (the SDK's
 * events carry one payload). Register it *before* doing what causes the event.
 */
export function once(emitter, event, { timeout = EVENT_TIMEOUT_MS, filter = () => true } = {}) {
  let listener;
  const seen = new Promise((resolve) => {
    listener = (...args) => {
      if (filter(...args)) resolve(args[0]);
    };
    emitter.on(event, listener);
  });
  return withTimeout(seen, timeout, `waiting for '${event}'`).finally(() => emitter.off(event, listener));
}

/** Polls `check` until it returns a truthy value (which is returned) or stops throwing; fails after `timeout`. */
export async function eventually(check, { timeout = EVENT_TIMEOUT_MS, interval = 50, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const reason = lastError ? `: ${lastError.message}` : '';
      throw new TimeoutError(`timed out after ${timeout} ms waiting for ${what}${reason}`);
    }
    await sleep(interval);
  }
}

/**
 * Records events of one or more emitters from the moment it is attached, so a test can ask for an event that
 * may already have fired, count events ("exactly once") and check their order.
 *
 * Each entry: `{ seq, name, payload, args, at }` (`payload` is the first argument).
 */
export class EventLog {
  constructor() {
    this.entries = [];
    this.waiters = new Set();
    this.detachers = [];
  }

  /** Records `names` of `emitter`. */
  watch(emitter, names) {
    for (const name of names) {
      const listener = (...args) => this.push(name, args);
      emitter.on(name, listener);
      this.detachers.push(() => emitter.off(name, listener));
    }
    return this;
  }

  detach() {
    for (const detach of this.detachers.splice(0)) detach();
  }

  push(name, args) {
    const entry = { seq: this.entries.length, name, payload: args[0], args, at: Date.now() };
    this.entries.push(entry);
    for (const waiter of this.waiters) waiter();
  }

  /** The position to pass as `since` to look only at what comes after now. */
  mark() {
    return this.entries.length;
  }

  /** Recorded entries named `name` (from `since`) whose payload passes `filter`. */
  all(name, filter = () => true, since = 0) {
    return this.entries.filter((e) => e.seq >= since && e.name === name && filter(e.payload, e));
  }

  /** Payloads of `all(...)`. */
  payloads(name, filter, since) {
    return this.all(name, filter, since).map((e) => e.payload);
  }

  /** Names of all recorded entries from `since`, in order (for order assertions). */
  names(since = 0) {
    return this.entries.filter((e) => e.seq >= since).map((e) => e.name);
  }

  /** Waits until `count` entries named `name` pass `filter`; resolves with their entries. */
  waitForCount(name, count, filter = () => true, { timeout = EVENT_TIMEOUT_MS, since = 0 } = {}) {
    const matches = () => this.all(name, filter, since);
    return this.until(
      () => {
        const found = matches();
        return found.length >= count ? found.slice(0, count) : null;
      },
      timeout,
      () => `${count} × '${name}' (have ${matches().length})`,
    );
  }

  /** The first entry (recorded already or to come) named one of `names`: e.g. success or failure. */
  waitForFirst(names, { timeout = EVENT_TIMEOUT_MS, since = 0 } = {}) {
    return this.until(
      () => this.entries.find((e) => e.seq >= since && names.includes(e.name)) ?? null,
      timeout,
      () => `one of ${names.map((n) => `'${n}'`).join(', ')}`,
    );
  }

  /** Resolves with `check()` once it is not null, re-checking on every new entry; fails after `timeout`. */
  until(check, timeout, what) {
    const now = check();
    if (now !== null) return Promise.resolve(now);
    let waiter;
    const done = new Promise((resolve) => {
      waiter = () => {
        const value = check();
        if (value !== null) resolve(value);
      };
      this.waiters.add(waiter);
    });
    return withTimeout(done, timeout, what).finally(() => this.waiters.delete(waiter));
  }

  /** The first entry's payload named `name` that passes `filter`, recorded already or to come. */
  async waitFor(name, filter = () => true, options = {}) {
    const [entry] = await this.waitForCount(name, 1, filter, options);
    return entry.payload;
  }
}
