// Every signed-in page: log out, close open menus on Escape / outside click, shared workspace data.
import { api, ws, wsBase } from './api.js';
import { toast } from './dom.js';

export const me = {
  id: document.body.dataset.userId || '',
  name: document.body.dataset.userName || '',
  role: document.body.dataset.role || '',
};
export const isManager = me.role === 'owner' || me.role === 'admin';

document.addEventListener('click', async (event) => {
  const button = event.target.closest('[data-action=logout]');
  if (button) {
    try {
      await api('POST', '/v1/auth/logout');
    } catch (err) {
      toast(err.message, 'error');
    }
    window.location.assign('/login');
    return;
  }
  for (const menu of document.querySelectorAll('details.menu[open]')) {
    if (!menu.contains(event.target)) menu.open = false;
  }
});

document.addEventListener('keydown', (event) => {
  if (event.key !== 'Escape') return;
  for (const menu of document.querySelectorAll('details.menu[open], details.filters[open]')) {
    menu.open = false;
    menu.querySelector('summary')?.focus();
  }
});

let membersPromise = null;
/** The workspace's members, fetched once per page: [{user_id, name, email, role}]. */
export function members() {
  if (!ws) return Promise.resolve([]);
  membersPromise ??= api('GET', `${wsBase}/members`).then((r) => r.data).catch(() => []);
  return membersPromise;
}

export async function memberName(userId) {
  if (!userId) return '';
  if (userId === me.id) return 'Me';
  const found = (await members()).find((m) => m.user_id === userId);
  return found ? found.name || found.email : 'Someone';
}

/** Fill every <select data-members-select> with the members (keeping its static options). */
export async function fillMemberSelects(root = document) {
  const list = await members();
  for (const select of root.querySelectorAll('select[data-members-select]')) {
    if (select.dataset.filled) continue;
    select.dataset.filled = '1';
    const current = select.value;
    for (const m of list) {
      const opt = document.createElement('option');
      opt.value = m.user_id;
      opt.textContent = m.user_id === me.id ? `${m.name || m.email} (me)` : m.name || m.email;
      select.append(opt);
    }
    select.value = current;
  }
}

let workspacePromise = null;
/** The workspace (name, slug, settings) fetched once per page. */
export function workspace({ refresh = false } = {}) {
  if (!ws) return Promise.resolve(null);
  if (refresh || !workspacePromise) workspacePromise = api('GET', wsBase);
  return workspacePromise;
}
