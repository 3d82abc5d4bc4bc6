// The console's entry point: sign-in, navigation between pages (addresses after `#`), and the page frame.

import { type Context, type Credentials, signIn, storeCredentials, storedCredentials } from './context';
import { describeError, h, replace } from './dom';
import { conversationPage } from './views/conversation';
import { conversationsPage } from './views/conversations';
import { channelDeliveriesPage } from './views/deliveries';
import { webhooksPage } from './views/webhooks';

/** A page: its element, and what to stop when leaving it (realtime connections, timers). */
export interface PageView {
  element: HTMLElement;
  dispose(): void;
}

const root = document.getElementById('app')!;
let context: Context | null = null;
let current: PageView | null = null;

function navigate(hash: string): void {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function leavePage(): void {
  current?.dispose();
  current = null;
}

function route(): void {
  leavePage();
  if (!context) {
    showSignIn();
    return;
  }
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query);
  const parts = path.split('/').filter(Boolean);
  let page: PageView;
  if (parts[0] === 'services' && parts[2] === 'conversations' && parts[3]) {
    page = conversationPage(context, parts[1], parts[3]);
  } else if (parts[0] === 'webhooks') {
    page = webhooksPage(context);
  } else if (parts[0] === 'deliveries') {
    page = channelDeliveriesPage(context, params);
  } else {
    page = conversationsPage(context, params);
  }
  current = page;
  replace(root, frame(context, parts[0] ?? 'conversations'), page.element);
}

function frame(context: Context, section: string): HTMLElement {
  const link = (hash: string, label: string, name: string) =>
    h('a', { href: hash, class: section === name ? 'current' : null, 'data-nav': name }, label);
  return h(
    'header',
    { class: 'top' },
    h('strong', { class: 'brand' }, 'Palaver'),
    h(
      'nav',
      {},
      link('#/conversations', 'Conversations', 'conversations'),
      link('#/webhooks', 'Webhooks', 'webhooks'),
      link('#/deliveries', 'Channel deliveries', 'deliveries'),
    ),
    h('span', { class: 'account', title: 'Signed in as' }, context.rest.username),
    h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'),
  );
}

function signOut(): void {
  storeCredentials(null);
  context = null;
  leavePage();
  location.hash = '';
  showSignIn();
}

function showSignIn(message = ''): void {
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, placeholder: 'AC… or SK…' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', role: 'alert' }, message);
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'sign-in' },
    h('h1', {}, 'Palaver console'),
    h('p', {}, 'Sign in with the account SID and auth token, or an API key SID and secret.'),
    h('label', {}, 'Account SID or API key SID', username),
    h('label', {}, 'Auth token or API key secret', password),
    button,
    error,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    error.textContent = '';
    try {
      await start({ username: username.value, password: password.value });
    } catch (failure) {
      error.textContent = describeError(failure);
    } finally {
      button.disabled = false;
    }
  });
  replace(root, form);
  username.focus();
}

async function start(credentials: Credentials): Promise<void> {
  context = await signIn(credentials, navigate);
  storeCredentials(credentials);
  route();
}

window.addEventListener('hashchange', route);
const saved = storedCredentials();
if (saved) {
  start(saved).catch((failure) => {
    storeCredentials(null);
    showSignIn(describeError(failure));
  });
} else {
  showSignIn();
}
