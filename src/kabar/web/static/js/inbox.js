// The inbox: conversation list (filters, search, infinite scroll, live re-ordering and badges),
// the thread (history, load older, ticks, media, replies, reactions, typing) and the composer
// (optimistic send, quick replies, uploads, templates), plus the contact panel.
import { api, ApiError, newKey, wsBase } from './api.js';
import {
  $, $$, clear, contactAddress, dayKey, displayName, formatDay, formatFull, formatShort, formatTime, h, initials, LEAD_LABELS,
  localInputToIso, notOlder, toast,
} from './dom.js';
import { ContactPanel } from './contact-panel.js';
import { connectLive } from './live.js';
import { fillMemberSelects, me, memberName, workspace } from './shell.js';

const PAGE = 50;
const WINDOW_MS = 24 * 3600 * 1000;
const STATUS_RANK = { pending: 0, sent: 1, delivered: 2, read: 3, received: 3, failed: 4 };
const TICKS = {
  pending: ['◷', 'Sending'],
  sent: ['✓', 'Sent'],
  delivered: ['✓✓', 'Delivered'],
  read: ['✓✓', 'Read'],
  failed: ['⚠', 'Failed'],
};

const el = {
  inbox: $('#inbox'),
  search: $('#conv-q'),
  segButtons: $$('.seg-btn'),
  unreadTotal: $('#unread-total'),
  filters: $('#filters'),
  filterForm: $('#filter-form'),
  filterCount: $('#filter-count'),
  tagOptions: $('#tag-filter-options'),
  count: $('#conv-count'),
  list: $('#conv-list'),
  more: $('#conv-more'), // the last <li> of the list: infinite-scroll sentinel and status line
  thread: $('#thread'),
  threadEmpty: $('#thread-empty'),
  messages: $('#messages'),
  messageList: $('#message-list'),
  loadOlder: $('#load-older'),
  typing: $('#typing'),
  assignee: $('#ctl-assignee'),
  status: $('#ctl-status'),
  ai: $('#ctl-ai'),
  aiToggle: $('#ctl-ai-toggle'),
  aiLabel: $('#ctl-ai-label'),
  snoozeForm: $('#snooze-form'),
  windowBanner: $('#window-banner'),
  composer: $('#composer'),
  text: $('#composer-text'),
  attach: $('#attach-input'),
  attachPreview: $('#attach-preview'),
  replyPreview: $('#reply-preview'),
  quickMenu: $('#quick-menu'),
  templateDialog: $('#template-dialog'),
  templateForm: $('#template-form'),
  templateList: $('#template-list'),
  panel: $('#contact-panel'),
};

const state = {
  filters: { unread: false, status: [], lead_status: [], tag: [], assignee: '', q: '' },
  conversations: new Map(), // id → conversation (as the API shows it)
  order: [], // ids, newest activity first
  rows: new Map(), // id → <li>
  cursor: null,
  exhausted: false,
  loading: null, // AbortController of the list request in flight
  openId: null,
  messages: new Map(), // id → message of the open thread
  messageEls: new Map(),
  olderCursor: null,
  loadingOlder: false,
  local: new Map(), // temporary id → {body, key} of optimistic sends
  typing: new Map(), // conversation id → timer
  replyTo: null,
  attachment: null,
  quickReplies: [],
  templates: [],
  live: null,
  dirty: new Set(), // conversations changed by message events, to refetch
};

const panel = new ContactPanel(el.panel, {
  onClose: () => closePanel(),
  onMerged: () => refreshList(),
});

// -- list -------------------------------------------------------------------------------------

function listQuery(cursor) {
  const f = state.filters;
  return {
    unread: f.unread ? 'true' : undefined,
    status: f.status,
    lead_status: f.lead_status,
    tag: f.tag,
    assignee_id: f.assignee === 'me' ? me.id : f.assignee || undefined,
    q: f.q || undefined,
    cursor,
    limit: PAGE,
  };
}

async function loadList({ reset = false } = {}) {
  if (reset) {
    state.loading?.abort();
    state.cursor = null;
    state.exhausted = false;
  } else if (state.loading || state.exhausted) {
    return;
  }
  const controller = new AbortController();
  state.loading = controller;
  el.more.hidden = false;
  el.more.textContent = 'Loading…';
  try {
    const page = await api('GET', `${wsBase}/conversations`, { query: listQuery(state.cursor), signal: controller.signal });
    if (reset) {
      state.conversations.clear();
      state.order = [];
      state.rows.clear();
      clear(el.list).append(el.more);
    }
    for (const conversation of page.data) placeConversation(conversation, { append: true });
    state.cursor = page.next_cursor;
    state.exhausted = !page.next_cursor;
    showTotals(page.total_count, page.unread_count);
    el.more.textContent = state.exhausted ? (state.order.length ? '' : 'No conversations match.') : 'Loading…';
    el.more.hidden = state.exhausted && state.order.length > 0;
  } catch (err) {
    if (state.loading === controller) state.loading = null;
    if (err.name !== 'AbortError') el.more.textContent = `Could not load conversations: ${err.message}`;
    return; // no automatic retry loop; scrolling or a filter change tries again
  } finally {
    if (state.loading === controller) state.loading = null;
  }
  // A short first page on a tall screen: keep filling until the list scrolls.
  if (!state.exhausted && el.list.scrollHeight <= el.list.clientHeight + 40) loadList();
}

function showTotals(total, unread) {
  if (typeof total === 'number') el.count.textContent = `${total} conversation${total === 1 ? '' : 's'}`;
  if (typeof unread === 'number') {
    el.unreadTotal.hidden = unread === 0;
    el.unreadTotal.textContent = String(unread);
    document.title = `${unread ? `(${unread}) ` : ''}Inbox · Kabar`;
  }
}

let totalsTimer = null;
/** After live changes, one cheap request re-reads the counts for the current filters. */
function refreshTotalsSoon() {
  clearTimeout(totalsTimer);
  totalsTimer = setTimeout(async () => {
    try {
      const page = await api('GET', `${wsBase}/conversations`, { query: { ...listQuery(undefined), limit: 1 } });
      showTotals(page.total_count, page.unread_count);
    } catch { /* the next change tries again */ }
  }, 400);
}

function refreshList() {
  loadList({ reset: true });
}

/** Upsert the newest page without clearing the list (after the realtime subscription starts). */
async function reconcileFirstPage() {
  try {
    const page = await api('GET', `${wsBase}/conversations`, { query: listQuery(undefined) });
    for (const conversation of page.data) placeConversation(conversation);
    showTotals(page.total_count, page.unread_count);
  } catch { /* the live stream and the next scroll keep it current */ }
}

function sortKey(conversation) {
  return `${conversation.last_message_at}|${conversation.id}`;
}

/** Does a conversation belong in the list as currently filtered? (For live updates.) */
function matchesFilters(c) {
  const f = state.filters;
  if (me.role === 'member' && c.assignee_id && c.assignee_id !== me.id) return false;
  if (f.unread && !(c.unread_count > 0)) return false;
  if (f.status.length && !f.status.includes(c.status)) return false;
  if (f.lead_status.length && !f.lead_status.includes(c.contact?.lead_status)) return false;
  if (f.tag.length && !(c.contact?.tags || []).some((t) => f.tag.includes(t))) return false;
  if (f.assignee === 'me' && c.assignee_id !== me.id) return false;
  if (f.assignee === 'unassigned' && c.assignee_id) return false;
  if (f.assignee && !['me', 'unassigned'].includes(f.assignee) && c.assignee_id !== f.assignee) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    const digits = q.replace(/\D/g, '');
    const contact = c.contact || {};
    const hay = `${contact.name || ''} ${contact.profile_name || ''} @${contact.username || ''}`.toLowerCase();
    const phone = (contact.phone || '').replace(/\D/g, '');
    const phoneHit = digits.length >= 3 && (phone.includes(digits) || phone.includes(digits.replace(/^0/, '62')));
    if (!hay.includes(q) && !phoneHit) return false;
  }
  return true;
}

/** Insert or move a conversation to its place (newest activity first), or drop it if filtered out. */
function placeConversation(conversation, { append = false } = {}) {
  const id = conversation.id;
  const known = state.conversations.get(id);
  if (known && known.contact && !conversation.contact) conversation = { ...conversation, contact: known.contact };
  if (!append && !matchesFilters(conversation)) {
    if (known && id !== state.openId) {
      removeConversation(id);
    } else if (known) {
      // The open conversation stays in view until the user moves on, even if it no longer matches.
      state.conversations.set(id, conversation);
      renderRow(conversation);
      updateThreadHeader(conversation);
    }
    return;
  }
  state.conversations.set(id, conversation);
  const row = renderRow(conversation);
  const current = state.order.indexOf(id);
  if (current >= 0) state.order.splice(current, 1);
  const key = sortKey(conversation);
  let index = state.order.findIndex((other) => sortKey(state.conversations.get(other)) < key);
  if (index < 0) index = state.order.length;
  // Older than everything loaded while more pages remain: it will come with a later page.
  if (!append && index === state.order.length && !state.exhausted && current < 0) {
    state.conversations.delete(id);
    state.rows.delete(id);
    row.remove();
    return;
  }
  state.order.splice(index, 0, id);
  const before = (state.order[index + 1] && state.rows.get(state.order[index + 1])) || el.more;
  if (row.nextElementSibling !== before || !row.parentNode) el.list.insertBefore(row, before);
  if (state.openId === id) updateThreadHeader(conversation);
}

function removeConversation(id) {
  state.conversations.delete(id);
  state.order = state.order.filter((other) => other !== id);
  state.rows.get(id)?.remove();
  state.rows.delete(id);
}

function renderRow(c) {
  const contact = c.contact || {};
  const unread = c.unread_count > 0;
  const typing = state.typing.has(c.id);
  const meta = h('span', { class: 'conv-meta' },
    contact.lead_status ? h('span', { class: `pill pill-${contact.lead_status}`, text: LEAD_LABELS[contact.lead_status] || contact.lead_status }) : null,
    c.status !== 'open' ? h('span', { class: 'pill', text: c.status }) : null,
    c.ai_paused ? h('span', { class: 'pill', text: 'AI off' }) : null,
    (contact.tags || []).slice(0, 2).map((t) => h('span', { class: 'pill', text: `#${t}` })));
  const link = h('a', { href: `?c=${encodeURIComponent(c.id)}`, 'aria-current': c.id === state.openId ? 'true' : undefined },
    h('span', { class: 'avatar', 'aria-hidden': 'true', text: initials(contact) }),
    h('span', { class: 'conv-main' },
      h('span', { class: 'conv-top' },
        h('span', { class: 'conv-name', text: displayName(contact) }),
        contact.username && displayName(contact) !== `@${contact.username}` ? h('span', { class: 'conv-handle muted small', text: `@${contact.username}` }) : null,
        h('time', { class: 'conv-time', datetime: c.last_message_at, title: formatFull(c.last_message_at), text: formatShort(c.last_message_at) })),
      h('span', { class: 'conv-bottom' },
        typing ? h('span', { class: 'conv-preview conv-typing', text: 'typing…' }) : h('span', { class: 'conv-preview', text: c.last_message_preview || '' }),
        unread ? h('span', { class: 'badge', 'aria-label': `${c.unread_count} unread`, text: String(c.unread_count) }) : null),
      meta));
  link.addEventListener('click', (event) => {
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    openConversation(c.id, { push: true });
  });
  const row = h('li', { class: `conv-item${unread ? ' unread' : ''}`, dataset: { id: c.id, unread: String(c.unread_count || 0) } }, link);
  const old = state.rows.get(c.id);
  if (old) old.replaceWith(row);
  state.rows.set(c.id, row);
  return row;
}

// -- filters ----------------------------------------------------------------------------------

function readFilters() {
  const form = el.filterForm;
  const checked = (name) => $$(`input[name="${name}"]:checked`, form).map((i) => i.value);
  state.filters.status = checked('status');
  state.filters.lead_status = checked('lead_status');
  state.filters.tag = checked('tag');
  state.filters.assignee = form.elements.assignee_id.value;
  const n = state.filters.status.length + state.filters.lead_status.length + state.filters.tag.length + (state.filters.assignee ? 1 : 0);
  el.filterCount.hidden = n === 0;
  el.filterCount.textContent = String(n);
}

async function fillTagFilter() {
  const w = await workspace();
  const tags = new Set(w?.settings?.contact_tags || []);
  try {
    const stats = await api('GET', `${wsBase}/stats`);
    for (const tag of Object.keys(stats.contacts?.by_tag || {}).slice(0, 30)) tags.add(tag);
  } catch { /* tags from settings only */ }
  clear(el.tagOptions);
  if (!tags.size) el.tagOptions.append(h('span', { class: 'muted small', text: 'No tags yet' }));
  for (const tag of [...tags].sort()) {
    el.tagOptions.append(h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'tag', value: tag }), ` ${tag}`));
  }
}

function bindFilters() {
  let timer;
  el.search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.filters.q = el.search.value.trim();
      refreshList();
    }, 250);
  });
  $('#conv-search').addEventListener('submit', (event) => {
    event.preventDefault();
    state.filters.q = el.search.value.trim();
    refreshList();
  });
  for (const button of el.segButtons) {
    button.addEventListener('click', () => {
      state.filters.unread = button.dataset.unread === 'true';
      for (const b of el.segButtons) b.setAttribute('aria-pressed', String(b === button));
      refreshList();
    });
  }
  el.filterForm.addEventListener('change', () => {
    readFilters();
    refreshList();
  });
  el.filterForm.addEventListener('reset', () => setTimeout(() => {
    readFilters();
    refreshList();
  }));
  el.filterForm.addEventListener('submit', (event) => event.preventDefault());
}

// -- thread -----------------------------------------------------------------------------------

async function openConversation(id, { push = false } = {}) {
  if (push) history.pushState({ c: id }, '', `?c=${encodeURIComponent(id)}`);
  const previous = state.openId;
  state.openId = id;
  for (const [rowId, row] of state.rows) {
    const link = row.firstElementChild;
    if (rowId === id) link.setAttribute('aria-current', 'true');
    else link.removeAttribute('aria-current');
  }
  el.threadEmpty.hidden = true;
  el.thread.hidden = false;
  setView('thread');
  if (previous !== id) {
    resetComposer();
    state.messages.clear();
    state.messageEls.clear();
    state.olderCursor = null;
    clear(el.messageList);
    el.loadOlder.hidden = true;
  }
  let conversation = state.conversations.get(id);
  if (conversation) updateThreadHeader(conversation);
  try {
    const [fresh, page] = await Promise.all([
      api('GET', `${wsBase}/conversations/${encodeURIComponent(id)}`),
      api('GET', `${wsBase}/conversations/${encodeURIComponent(id)}/messages`, { query: { limit: PAGE } }),
    ]);
    if (state.openId !== id) return;
    conversation = fresh;
    state.conversations.set(id, fresh);
    if (state.rows.has(id)) placeConversation(fresh);
    updateThreadHeader(fresh);
    // An event that arrived while the page was loading may be newer than the page's copy.
    for (const message of page.data) {
      const known = state.messages.get(message.id);
      if (!known || isNewer(message, known)) state.messages.set(message.id, message);
    }
    state.olderCursor = page.next_cursor;
    renderThread({ keepScroll: false });
    markRead(fresh);
    if (!el.panel.hidden || window.matchMedia('(min-width: 1200px)').matches) openPanel({ focus: false });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      toast('This conversation is not available.', 'error');
      closeThread();
      return;
    }
    toast(err.message, 'error');
  }
}

function closeThread() {
  state.openId = null;
  el.thread.hidden = true;
  el.threadEmpty.hidden = false;
  setView('list');
}

function setView(view) {
  el.inbox.dataset.view = view;
}

async function markRead(conversation) {
  if (!(conversation.unread_count > 0)) return;
  placeConversation({ ...conversation, unread_count: 0 });
  try {
    const updated = await api('POST', `${wsBase}/conversations/${conversation.id}/read`);
    if (updated && updated.id) placeConversation(updated);
  } catch { /* the badge comes back with the next event if it failed */ }
  refreshTotalsSoon();
}

let markReadTimer = null;
function markReadSoon() {
  clearTimeout(markReadTimer);
  markReadTimer = setTimeout(() => {
    const c = state.conversations.get(state.openId);
    if (c && document.visibilityState === 'visible') markRead(c);
  }, 300);
}

async function updateThreadHeader(c) {
  const contact = c.contact || {};
  const head = $('.thread-head', el.thread);
  $('[data-field=name]', head).textContent = displayName(contact);
  $('[data-field=phone]', head).textContent = contactAddress(contact);
  $('[data-field=avatar]', head).textContent = initials(contact);
  el.status.value = c.status;
  // A staff reply or an assignment pauses ARI (server side); the switch resumes it.
  el.ai.checked = !c.ai_paused;
  el.ai.setAttribute('aria-label', c.ai_paused ? 'ARI paused (a human took over): resume ARI' : 'ARI replies are on: pause ARI');
  el.aiLabel.textContent = c.ai_paused ? 'ARI paused' : 'ARI on';
  el.aiToggle.title = c.ai_paused ? 'A person took over this chat; switch on to resume ARI' : 'When on, ARI answers this customer automatically';
  el.aiToggle.dataset.paused = String(Boolean(c.ai_paused));
  await fillMemberSelects(el.thread);
  if (state.openId === c.id) el.assignee.value = c.assignee_id || '';
  const outside = !c.last_inbound_at || Date.now() - new Date(c.last_inbound_at).getTime() > WINDOW_MS;
  el.windowBanner.hidden = !outside;
  el.composer.dataset.window = outside ? 'closed' : 'open';
  el.typing.hidden = !state.typing.has(c.id);
}

function sortedMessages() {
  return [...state.messages.values()].sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : 1));
}

function nearBottom() {
  const m = el.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 120;
}

function scrollToBottom() {
  el.messages.scrollTop = el.messages.scrollHeight;
}

/** Full redraw (open, load older); keepScroll keeps the view still when older messages are prepended. */
function renderThread({ keepScroll }) {
  const fromBottom = el.messages.scrollHeight - el.messages.scrollTop;
  // A redraw is not news: screen readers announce only what arrives afterwards.
  el.messageList.setAttribute('aria-busy', 'true');
  clear(el.messageList);
  state.messageEls.clear();
  let lastDay = null;
  for (const message of sortedMessages()) {
    const day = dayKey(message.created_at);
    if (day !== lastDay) el.messageList.append(daySeparator(message.created_at));
    lastDay = day;
    const item = renderMessage(message);
    el.messageList.append(item);
  }
  el.loadOlder.hidden = !state.olderCursor;
  el.messageList.removeAttribute('aria-busy');
  if (keepScroll) el.messages.scrollTop = el.messages.scrollHeight - fromBottom;
  else scrollToBottom();
}

function daySeparator(iso) {
  return h('li', { class: 'day-sep', role: 'separator', text: formatDay(iso) });
}

/** What identifies one of our sends before and after the server has it. */
function sendSignature(m) {
  return [m.conversation_id, m.type, m.text || m.media?.caption || '', m.reply_to_id || ''].join('|');
}

/** The live event of our own send often arrives before the POST's answer: its optimistic bubble
 * (the oldest pending one that matches) gives way at once instead of showing twice. */
function dropLocalTwin(message) {
  if (message._local || message.direction !== 'outbound' || message.sender_id !== me.id || state.messages.has(message.id)) return;
  const signature = sendSignature(message);
  for (const localId of state.local.keys()) {
    const local = state.messages.get(localId);
    if (local?.status === 'pending' && sendSignature(local) === signature) {
      state.messageEls.get(localId)?.remove();
      state.messageEls.delete(localId);
      state.messages.delete(localId);
      return;
    }
  }
}

/** Add or replace one message in the open thread without redrawing the rest. */
function upsertMessage(message) {
  dropLocalTwin(message);
  const existing = state.messages.get(message.id);
  if (existing && !isNewer(message, existing)) return;
  const stick = nearBottom();
  state.messages.set(message.id, message);
  if (state.messageEls.has(message.id)) {
    replaceMessage(message); // keeps keyboard focus inside the bubble
    return;
  }
  const sorted = sortedMessages();
  const index = sorted.findIndex((m) => m.id === message.id);
  const next = sorted[index + 1];
  const prev = sorted[index - 1];
  const item = renderMessage(message);
  if (next && state.messageEls.get(next.id)) {
    state.messageEls.get(next.id).before(item);
  } else {
    if (!prev || dayKey(prev.created_at) !== dayKey(message.created_at)) el.messageList.append(daySeparator(message.created_at));
    el.messageList.append(item);
  }
  if (stick || message.direction === 'outbound') scrollToBottom();
}

/** Events can arrive twice or late: never let an older copy of a message replace a newer one. */
function isNewer(incoming, existing) {
  if (existing._local) return true;
  const a = STATUS_RANK[incoming.status] ?? 0;
  const b = STATUS_RANK[existing.status] ?? 0;
  if (a !== b) return a > b;
  return notOlder(incoming, existing);
}

function removeMessage(id) {
  state.messages.delete(id);
  state.messageEls.get(id)?.remove();
  state.messageEls.delete(id);
}

function renderMessage(m) {
  const out = m.direction === 'outbound';
  const classes = ['msg', out ? 'out' : 'in'];
  if (m.sender_type === 'bot') classes.push('bot');
  if (m.status === 'failed') classes.push('failed');
  const item = h('li', { class: classes.join(' '), dataset: { id: m.id, status: m.status, direction: m.direction } });
  if (out) {
    const sender = h('div', { class: 'msg-sender', text: m.sender_type === 'bot' ? 'ARI' : '' });
    if (m.sender_type === 'user' && m.sender_id) memberName(m.sender_id).then((name) => { sender.textContent = name === 'Me' ? 'You' : name; });
    item.append(sender);
  }
  if (m.reply_to_id) {
    const quoted = state.messages.get(m.reply_to_id);
    item.append(h('div', { class: 'msg-quote', text: quoted ? summary(quoted) : 'Reply to an earlier message' }));
  }
  if (m.deleted_at) {
    item.append(h('div', { class: 'msg-text muted', text: 'This message was deleted' }));
  } else {
    item.append(...renderBody(m));
  }
  if (m.reactions && m.reactions.length) {
    item.append(h('div', { class: 'reactions', role: 'group', 'aria-label': 'Reactions' }, m.reactions.map(renderReaction)));
  }
  const foot = h('div', { class: 'msg-foot' });
  if (!m._local && !m.deleted_at) {
    foot.append(h('button', { type: 'button', class: 'btn btn-ghost msg-reply', 'aria-label': 'Reply to this message', title: 'Reply', text: '↩', onclick: () => startReply(m) }));
    // WhatsApp can only show a reaction on a message it knows (one with a provider id).
    if (m.provider_message_id) {
      foot.append(h('button', {
        type: 'button', class: 'btn btn-ghost msg-react', 'aria-label': 'React to this message', title: 'React',
        'aria-haspopup': 'true', 'aria-expanded': 'false', text: '☺', onclick: (event) => openReactionPicker(m.id, event.currentTarget),
      }));
    }
  }
  if (m.edited_at) foot.append(h('span', { text: 'edited' }));
  foot.append(h('time', { datetime: m.created_at, title: formatFull(m.created_at), text: formatTime(m.created_at) }));
  if (out) {
    const [glyph, label] = TICKS[m.status] || ['', m.status];
    foot.append(h('span', { class: `tick tick-${m.status}`, role: 'img', 'aria-label': label, title: label, text: glyph }));
  }
  item.append(foot);
  if (m.status === 'failed') {
    const reason = m.error ? `${m.error.title || 'Not delivered'}${m.error.code ? ` (${m.error.code})` : ''}` : 'Not delivered';
    item.append(h('div', { class: 'msg-error', role: 'note', text: `Failed: ${reason}` }));
    if (m._local) {
      item.append(h('div', { class: 'msg-actions' },
        m._retryable ? h('button', { type: 'button', class: 'btn btn-small', text: 'Retry', onclick: () => retryLocal(m.id) }) : null,
        h('button', { type: 'button', class: 'btn btn-small', text: 'Discard', onclick: () => { state.local.delete(m.id); removeMessage(m.id); } })));
    }
  }
  state.messageEls.set(m.id, item);
  return item;
}

// -- reactions ------------------------------------------------------------------------------------

const REACTION_CHOICES = ['👍', '❤️', '😂', '😮', '😢', '🙏'];
const BUSINESS = 'business';

function renderReaction(r) {
  const mine = r.by === BUSINESS;
  const classes = ['reaction'];
  let title = mine ? 'Your team' : 'Customer';
  if (mine && r.status === 'pending') { classes.push('reaction-pending'); title += ' · sending'; }
  if (mine && r.status === 'failed') {
    classes.push('reaction-failed');
    title += ` · not delivered: ${r.error?.title || 'failed'}${r.error?.code ? ` (${r.error.code})` : ''}`;
  }
  return h('span', { class: classes.join(' '), title, 'aria-label': `${r.emoji} (${title})`, dataset: { by: r.by || '' }, text: r.emoji || '' });
}

function businessReaction(m) {
  return (m.reactions || []).find((r) => r.by === BUSINESS) || null;
}

let picker = null; // {el, trigger, close}

function closeReactionPicker({ focus = true } = {}) {
  if (!picker) return;
  const { el: box, trigger } = picker;
  picker = null;
  box.remove();
  document.removeEventListener('pointerdown', onPointerOutsidePicker, true);
  if (trigger.isConnected) {
    trigger.setAttribute('aria-expanded', 'false');
    if (focus) trigger.focus();
  }
}

function onPointerOutsidePicker(event) {
  if (picker && !picker.el.contains(event.target) && event.target !== picker.trigger) closeReactionPicker({ focus: false });
}

/** A small group of emoji buttons under the message: arrows move, Enter picks, Escape closes. */
function openReactionPicker(messageId, trigger) {
  const reopen = picker?.trigger === trigger;
  closeReactionPicker({ focus: false });
  if (reopen) return;
  const m = state.messages.get(messageId);
  if (!m) return;
  const current = businessReaction(m)?.emoji || '';
  const choices = REACTION_CHOICES.map((emoji) => h('button', {
    type: 'button', class: 'btn btn-ghost', text: emoji, 'aria-label': `React with ${emoji}`,
    'aria-pressed': String(emoji === current), onclick: () => chooseReaction(messageId, emoji === current ? '' : emoji),
  }));
  if (current) {
    choices.push(h('button', { type: 'button', class: 'btn btn-ghost reaction-remove', text: 'Remove', 'aria-label': 'Remove your reaction', onclick: () => chooseReaction(messageId, '') }));
  }
  const box = h('div', { class: 'reaction-picker', role: 'group', 'aria-label': 'Choose a reaction' }, choices);
  box.addEventListener('keydown', (event) => {
    const buttons = $$('button', box);
    const index = buttons.indexOf(document.activeElement);
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      closeReactionPicker();
    } else if (event.key === 'ArrowRight' || event.key === 'ArrowLeft') {
      event.preventDefault();
      buttons[(index + (event.key === 'ArrowRight' ? 1 : -1) + buttons.length) % buttons.length].focus();
    }
  });
  trigger.closest('li.msg').append(box);
  trigger.setAttribute('aria-expanded', 'true');
  picker = { el: box, trigger };
  document.addEventListener('pointerdown', onPointerOutsidePicker, true);
  (choices.find((b) => b.getAttribute('aria-pressed') === 'true') || choices[0]).focus();
}

/** Optimistic: the reaction shows at once (sending), the server's copy replaces it; undone on error. */
async function chooseReaction(messageId, emoji) {
  closeReactionPicker();
  const before = state.messages.get(messageId);
  if (!before) return;
  const others = (before.reactions || []).filter((r) => r.by !== BUSINESS);
  const optimistic = { ...before, reactions: emoji ? [...others, { emoji, by: BUSINESS, status: 'pending', user_id: me.id }] : others };
  replaceMessage(optimistic);
  try {
    const saved = await api('POST', `${wsBase}/conversations/${encodeURIComponent(before.conversation_id)}/messages/${encodeURIComponent(messageId)}/reactions`, { json: { emoji } });
    if (state.messages.get(messageId) === optimistic) replaceMessage(saved);
    else upsertMessage(saved);
  } catch (err) {
    if (state.messages.get(messageId) === optimistic) replaceMessage(before);
    toast(err.message, 'error');
  }
}

/** Swap a message's bubble for this copy (no newer-than check: the caller knows best). */
function replaceMessage(message) {
  state.messages.set(message.id, message);
  const old = state.messageEls.get(message.id);
  const focused = old?.contains(document.activeElement) ? document.activeElement.className : null;
  const item = renderMessage(message);
  old?.replaceWith(item);
  if (focused?.includes('msg-react')) $('.msg-react', item)?.focus();
}

function summary(m) {
  if (m.text) return m.text.length > 120 ? `${m.text.slice(0, 120)}…` : m.text;
  if (m.media?.caption) return m.media.caption;
  return `[${m.type}]`;
}

function renderBody(m) {
  const parts = [];
  const media = m.media || {};
  const url = media.url || (media.id && /^[0-9a-f-]{36}$/.test(media.id) ? `${wsBase}/uploads/${media.id}` : null);
  const caption = media.caption || (m.type !== 'text' ? m.text : null);
  if (m.type === 'image' || m.type === 'sticker') {
    if (url) parts.push(h('a', { href: url, target: '_blank', rel: 'noopener' }, h('img', { class: 'media-img', src: url, alt: caption || media.filename || 'Image', loading: 'lazy' })));
    else parts.push(h('div', { class: 'media-doc', text: `🖼 ${m.type}` }));
  } else if (m.type === 'video') {
    parts.push(url ? h('video', { class: 'media-video', src: url, controls: true, preload: 'metadata' }) : h('div', { class: 'media-doc', text: '🎬 Video' }));
  } else if (m.type === 'audio' || m.type === 'voice') {
    parts.push(url ? h('audio', { src: url, controls: true, preload: 'metadata' }) : h('div', { class: 'media-doc', text: '🎤 Audio' }));
  } else if (m.type === 'document') {
    const name = media.filename || 'Document';
    parts.push(url ? h('a', { class: 'media-doc', href: url, download: name, target: '_blank', rel: 'noopener' }, '📄 ', name) : h('div', { class: 'media-doc', text: `📄 ${name}` }));
  } else if (m.type === 'template') {
    const name = m.metadata?.template?.name || m.metadata?.template_name;
    if (!m.text) parts.push(h('div', { class: 'msg-text', text: `📋 Template${name ? `: ${name}` : ''}` }));
  } else if (m.type === 'location') {
    parts.push(h('div', { class: 'msg-text', text: `📍 ${m.text || 'Location'}` }));
    return parts;
  } else if (!['text', 'image', 'sticker'].includes(m.type) && !m.text) {
    parts.push(h('div', { class: 'msg-text muted', text: `[${m.type}]` }));
  }
  if (m.type === 'text' || m.type === 'template' || m.type === 'interactive' || m.type === 'button') {
    if (m.text) parts.push(h('div', { class: 'msg-text', text: m.text }));
  } else if (caption) {
    parts.push(h('div', { class: 'msg-text', text: caption }));
  }
  return parts;
}

async function loadOlder() {
  if (!state.olderCursor || state.loadingOlder || !state.openId) return;
  state.loadingOlder = true;
  const id = state.openId;
  try {
    const page = await api('GET', `${wsBase}/conversations/${encodeURIComponent(id)}/messages`, { query: { before: state.olderCursor, limit: PAGE } });
    if (state.openId !== id) return;
    for (const message of page.data) if (!state.messages.has(message.id)) state.messages.set(message.id, message);
    state.olderCursor = page.next_cursor;
    renderThread({ keepScroll: true });
  } catch (err) {
    toast(err.message, 'error');
  } finally {
    state.loadingOlder = false;
  }
}

// -- composer ---------------------------------------------------------------------------------

function resetComposer() {
  el.text.value = '';
  autosize();
  cancelReply();
  cancelAttach();
  closeQuickMenu();
  el.snoozeForm.hidden = true;
}

function autosize() {
  el.text.style.height = 'auto';
  el.text.style.height = `${Math.min(el.text.scrollHeight + 2, 160)}px`;
}

function startReply(message) {
  state.replyTo = message;
  $('[data-field=quote]', el.replyPreview).textContent = summary(message);
  el.replyPreview.hidden = false;
  el.text.focus();
}

function cancelReply() {
  state.replyTo = null;
  el.replyPreview.hidden = true;
}

function cancelAttach() {
  if (state.attachment?.preview) URL.revokeObjectURL(state.attachment.preview);
  state.attachment = null;
  el.attach.value = '';
  el.attachPreview.hidden = true;
}

function mediaType(mime) {
  if (mime.startsWith('image/')) return 'image';
  if (mime.startsWith('video/')) return 'video';
  if (mime.startsWith('audio/')) return 'audio';
  return 'document';
}

async function submitComposer() {
  const text = el.text.value.trim();
  const file = state.attachment?.file;
  if (!text && !file) return;
  const conversationId = state.openId;
  const replyTo = state.replyTo?.id || null;
  let body;
  let preview = null;
  if (file) {
    body = { type: mediaType(file.type || ''), media: { caption: text || undefined, filename: file.name } };
    preview = state.attachment.preview;
  } else {
    body = { type: 'text', text };
  }
  if (replyTo) body.reply_to_id = replyTo;
  const local = {
    id: `local-${newKey()}`,
    _local: true,
    conversation_id: conversationId,
    direction: 'outbound',
    sender_type: 'user',
    sender_id: me.id,
    type: body.type,
    text: file ? text || null : text,
    media: file ? { url: preview, filename: file.name, mime_type: file.type, caption: text || undefined } : null,
    status: 'pending',
    error: null,
    reply_to_id: replyTo,
    reactions: [],
    metadata: {},
    created_at: new Date().toISOString(),
    updated_at: new Date().toISOString(),
  };
  state.local.set(local.id, { body, key: newKey(), file, conversationId });
  state.attachment = null; // the bubble owns the preview URL now
  el.text.value = '';
  autosize();
  cancelReply();
  cancelAttach();
  sendTyping('paused');
  upsertMessage(local);
  await deliverLocal(local.id);
}

/** POST a pending local message (upload first if it has a file); swap in the server's copy. */
async function deliverLocal(localId) {
  const pending = state.local.get(localId);
  if (!pending) return;
  try {
    if (pending.file && !pending.body.media.upload_id) {
      const form = new FormData();
      form.append('file', pending.file, pending.file.name);
      const upload = await api('POST', `${wsBase}/uploads`, { form });
      pending.body.media.upload_id = upload.upload_id;
    }
    const message = await api('POST', `${wsBase}/conversations/${encodeURIComponent(pending.conversationId)}/messages`, {
      json: pending.body, headers: { 'Idempotency-Key': pending.key },
    });
    state.local.delete(localId);
    if (state.openId !== pending.conversationId) return;
    const stick = nearBottom();
    const old = state.messageEls.get(localId);
    state.messages.delete(localId);
    state.messageEls.delete(localId);
    if (state.messages.has(message.id)) {
      old?.remove();
    } else {
      state.messages.set(message.id, message);
      const item = renderMessage(message);
      if (old) old.replaceWith(item);
      else el.messageList.append(item);
    }
    if (stick) scrollToBottom();
  } catch (err) {
    const local = state.messages.get(localId);
    if (!local) return;
    const outside = err instanceof ApiError && err.type.endsWith('outside-customer-service-window');
    const failed = {
      ...local,
      status: 'failed',
      _retryable: !(err instanceof ApiError) || err.status === 0 || err.status >= 500 || err.status === 429,
      error: { code: err.status || 'network', title: outside ? 'Outside the 24-hour window: send an approved template instead' : err.message },
      updated_at: new Date().toISOString(),
    };
    state.messages.set(localId, failed);
    state.messageEls.get(localId)?.replaceWith(renderMessage(failed));
    if (outside) {
      el.windowBanner.hidden = false;
      openTemplates();
    }
  }
}

function retryLocal(localId) {
  const local = state.messages.get(localId);
  if (!local) return;
  const pending = { ...local, status: 'pending', error: null };
  state.messages.set(localId, pending);
  state.messageEls.get(localId)?.replaceWith(renderMessage(pending));
  deliverLocal(localId);
}

// Quick replies: the ⚡ button or "/" at the start of the message.
function openQuickMenu(filter = '') {
  const q = filter.toLowerCase();
  const items = state.quickReplies.filter((r) => !q || r.label.toLowerCase().includes(q) || r.text.toLowerCase().includes(q));
  clear(el.quickMenu);
  if (!items.length) {
    el.quickMenu.append(h('li', { class: 'muted small', text: state.quickReplies.length ? 'No quick reply matches.' : 'No quick replies yet: add them in Settings → Workspace.' }));
  }
  items.forEach((reply, index) => {
    el.quickMenu.append(h('li', { role: 'presentation' },
      h('button', {
        type: 'button', role: 'option', 'aria-selected': index === 0 ? 'true' : 'false', dataset: { index: String(index) },
        onclick: () => useQuickReply(reply),
      }, h('strong', { text: reply.label }), h('small', { text: reply.text }))));
  });
  el.quickMenu.hidden = false;
}

function closeQuickMenu() {
  el.quickMenu.hidden = true;
}

function useQuickReply(reply) {
  el.text.value = reply.text;
  closeQuickMenu();
  autosize();
  el.text.focus();
}

function moveQuickSelection(delta) {
  const options = $$('button[role=option]', el.quickMenu);
  if (!options.length) return;
  let index = options.findIndex((o) => o.getAttribute('aria-selected') === 'true');
  index = (index + delta + options.length) % options.length;
  options.forEach((o, i) => o.setAttribute('aria-selected', String(i === index)));
  options[index].scrollIntoView({ block: 'nearest' });
}

// Templates (outside the 24-hour window).
function openTemplates() {
  clear(el.templateList);
  for (const t of state.templates) {
    el.templateList.append(h('li', {}, h('button', {
      type: 'button', class: 'btn',
      onclick: () => {
        el.templateForm.elements.name.value = t.name;
        el.templateForm.elements.language.value = t.language || 'id';
        el.templateForm.elements.params.focus();
      },
    }, h('strong', { text: t.name }), ' ', h('span', { class: 'muted small', text: `${t.language || 'id'} · ${t.description || ''}` }))));
  }
  $('.form-error', el.templateForm).hidden = true;
  if (!el.templateDialog.open) el.templateDialog.showModal();
}

async function sendTemplate() {
  const f = el.templateForm.elements;
  const name = f.name.value.trim();
  const language = f.language.value.trim() || 'id';
  const params = f.params.value.split('\n').map((p) => p.trim()).filter(Boolean);
  const template = { name, language };
  if (params.length) template.components = [{ type: 'body', parameters: params.map((text) => ({ type: 'text', text })) }];
  const body = { type: 'template', template };
  const local = {
    id: `local-${newKey()}`, _local: true, conversation_id: state.openId, direction: 'outbound', sender_type: 'user', sender_id: me.id,
    type: 'template', text: `📋 ${name}${params.length ? ` (${params.join(', ')})` : ''}`, media: null, status: 'pending', error: null,
    reply_to_id: null, reactions: [], metadata: {}, created_at: new Date().toISOString(), updated_at: new Date().toISOString(),
  };
  state.local.set(local.id, { body, key: newKey(), conversationId: state.openId });
  el.templateDialog.close();
  el.templateForm.reset();
  upsertMessage(local);
  await deliverLocal(local.id);
}

// Typing: tell the other staff (and the realtime layer) while this user types.
let typingSentAt = 0;
let pausedTimer = null;
function sendTyping(stateName = 'typing') {
  if (!state.live || !state.openId) return;
  const now = Date.now();
  if (stateName === 'typing') {
    clearTimeout(pausedTimer);
    pausedTimer = setTimeout(() => sendTyping('paused'), 4000);
    if (now - typingSentAt < 2500) return;
    typingSentAt = now;
  } else {
    typingSentAt = 0;
  }
  try {
    state.live.typing(state.openId, stateName);
  } catch { /* typing is best effort */ }
  if (stateName === 'typing') showTypingToCustomer(state.openId, now);
}

// WhatsApp's own indicator for the customer lasts ~25 s: renew it at most every 20 s.
let customerTyping = { id: null, at: 0 };
function showTypingToCustomer(conversationId, now) {
  if (customerTyping.id === conversationId && now - customerTyping.at < 20_000) return;
  customerTyping = { id: conversationId, at: now };
  api('POST', `${wsBase}/conversations/${encodeURIComponent(conversationId)}/typing`).catch(() => { /* best effort */ });
}

function bindComposer() {
  el.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    submitComposer();
  });
  el.text.addEventListener('keydown', (event) => {
    if (!el.quickMenu.hidden) {
      if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        moveQuickSelection(event.key === 'ArrowDown' ? 1 : -1);
        return;
      }
      if (event.key === 'Escape') {
        closeQuickMenu();
        return;
      }
      if (event.key === 'Enter' && el.text.value.startsWith('/')) {
        event.preventDefault();
        $('button[aria-selected=true]', el.quickMenu)?.click();
        return;
      }
    }
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submitComposer();
    }
  });
  el.text.addEventListener('input', () => {
    autosize();
    const value = el.text.value;
    if (value.startsWith('/') && !value.includes('\n')) openQuickMenu(value.slice(1));
    else closeQuickMenu();
    if (value) sendTyping('typing');
  });
  el.attach.addEventListener('change', () => {
    const file = el.attach.files[0];
    if (!file) return;
    if (file.size > 16 * 1024 * 1024) {
      toast('Files up to 16 MB can be sent on WhatsApp.', 'error');
      el.attach.value = '';
      return;
    }
    state.attachment = { file, preview: URL.createObjectURL(file) };
    $('[data-field=file]', el.attachPreview).textContent = `📎 ${file.name} (${Math.ceil(file.size / 1024)} KB) — add a caption and press Send`;
    el.attachPreview.hidden = false;
    el.text.focus();
  });
  el.templateForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!el.templateForm.reportValidity()) return;
    sendTemplate();
  });
  document.addEventListener('click', (event) => {
    const action = event.target.closest('[data-action]')?.dataset.action;
    if (!action) {
      if (!el.quickMenu.hidden && !el.composer.contains(event.target)) closeQuickMenu();
      return;
    }
    if (action === 'quick-replies') (el.quickMenu.hidden ? openQuickMenu() : closeQuickMenu());
    else if (action === 'open-templates') openTemplates();
    else if (action === 'close-dialog') el.templateDialog.close();
    else if (action === 'cancel-reply') cancelReply();
    else if (action === 'cancel-attach') cancelAttach();
    else if (action === 'back-to-list') {
      history.pushState({}, '', location.pathname);
      closeThread();
    } else if (action === 'open-panel') togglePanel();
    else if (action === 'cancel-snooze') {
      el.snoozeForm.hidden = true;
      el.status.value = state.conversations.get(state.openId)?.status || 'open';
    }
  });
}

// -- conversation controls --------------------------------------------------------------------

async function patchConversation(changes) {
  const id = state.openId;
  const before = state.conversations.get(id);
  try {
    const updated = await api('PATCH', `${wsBase}/conversations/${encodeURIComponent(id)}`, { json: changes });
    placeConversation(updated);
    updateThreadHeader(updated);
    refreshTotalsSoon();
    return updated;
  } catch (err) {
    toast(err.message, 'error');
    if (before) updateThreadHeader(before);
    return null;
  }
}

function bindControls() {
  el.assignee.addEventListener('change', async () => {
    const updated = await patchConversation({ assignee_id: el.assignee.value || null });
    if (updated) toast(updated.assignee_id ? `Assigned to ${await memberName(updated.assignee_id)}` : 'Unassigned');
  });
  el.status.addEventListener('change', () => {
    if (el.status.value === 'snoozed') {
      el.snoozeForm.hidden = false;
      const input = $('#snooze-until');
      const tomorrow9 = new Date(Date.now() + 86400000);
      const wib = new Date(tomorrow9.getTime() + 7 * 3600000).toISOString().slice(0, 10);
      input.value = `${wib}T09:00`;
      input.focus();
      return;
    }
    el.snoozeForm.hidden = true;
    patchConversation({ status: el.status.value });
  });
  el.snoozeForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const until = localInputToIso($('#snooze-until').value);
    const updated = await patchConversation({ status: 'snoozed', snoozed_until: until });
    if (updated) {
      el.snoozeForm.hidden = true;
      toast(`Snoozed until ${formatFull(until)}`);
    }
  });
  el.ai.addEventListener('change', async () => {
    const updated = await patchConversation({ ai_paused: !el.ai.checked });
    if (updated) toast(updated.ai_paused ? 'ARI paused: a human handles this chat' : 'ARI resumed');
  });
}

// -- contact panel ----------------------------------------------------------------------------

function openPanel({ focus = true } = {}) {
  const conversation = state.conversations.get(state.openId);
  if (!conversation) return;
  const contactId = conversation.contact?.id;
  if (panel.contactId !== contactId || el.panel.hidden) panel.show(contactId, { conversationId: conversation.id });
  el.panel.hidden = false;
  if (!window.matchMedia('(min-width: 900px)').matches) setView('panel');
  const title = el.panel.querySelector('h2');
  if (focus && title) {
    title.setAttribute('tabindex', '-1');
    title.focus();
  }
}

function closePanel() {
  panel.hide();
  el.panel.hidden = true;
  setView(state.openId ? 'thread' : 'list');
  $('.thread-contact')?.focus();
}

function togglePanel() {
  if (!el.panel.hidden && window.matchMedia('(min-width: 900px)').matches) closePanel();
  else openPanel();
}

// -- live updates -----------------------------------------------------------------------------

let dirtyTimer = null;
function markDirty(conversationId) {
  state.dirty.add(conversationId);
  clearTimeout(dirtyTimer);
  dirtyTimer = setTimeout(async () => {
    const ids = [...state.dirty];
    state.dirty.clear();
    for (const id of ids) {
      try {
        placeConversation(await api('GET', `${wsBase}/conversations/${encodeURIComponent(id)}`));
      } catch { /* gone or not visible to us */ }
    }
    refreshTotalsSoon();
  }, 250);
}

function onEvent(event) {
  const { type, data } = event;
  if (!data) return;
  if (type === 'conversation.created' || type === 'conversation.updated') {
    if (data.contact) {
      state.dirty.delete(data.id);
      placeConversation(data);
    } else {
      markDirty(data.id);
    }
    refreshTotalsSoon();
  } else if (type === 'message.created' || type === 'message.updated') {
    if (type === 'message.created' && data.direction === 'inbound') clearTyping(data.conversation_id);
    if (data.conversation_id === state.openId) {
      upsertMessage(data);
      if (type === 'message.created' && data.direction === 'inbound') markReadSoon();
    }
    if (type === 'message.created') markDirty(data.conversation_id);
  } else if (type === 'contact.updated') {
    for (const [id, c] of state.conversations) {
      if (c.contact?.id === data.id) {
        const contact = { ...c.contact, ...pickSummary(data) };
        placeConversation({ ...c, contact });
        if (id === state.openId) updateThreadHeader({ ...c, contact });
      }
    }
    panel.applyContact(data);
  } else if (type === 'contact.merged' || type === 'contact.deleted') {
    refreshList();
  } else if (type.startsWith('note.') && data.contact_id && data.contact_id === panel.contactId) {
    panel.loadNotes();
  } else if (type.startsWith('ari.') && state.openId && panel.contactId) {
    panel.loadAri();
  }
}

function pickSummary(contact) {
  const { id, phone, whatsapp_user_id, username, name, profile_name, lead_status, lead_score, tags } = contact;
  return { id, phone, whatsapp_user_id, username, name, profile_name, lead_status, lead_score, tags };
}

function onTyping(message) {
  const id = message.conversation_id;
  if (!id || message.user_id === me.id) return;
  if (message.state === 'paused') {
    clearTyping(id);
    return;
  }
  clearTimeout(state.typing.get(id));
  state.typing.set(id, setTimeout(() => clearTyping(id), 6000));
  showTyping(id, message);
}

async function showTyping(id, message) {
  const c = state.conversations.get(id);
  if (c) renderRow(c);
  if (id === state.openId) {
    el.typing.hidden = false;
    el.typing.textContent = message.sender_type === 'user' && message.user_id ? `${await memberName(message.user_id)} is typing…` : 'typing…';
  }
}

function clearTyping(id) {
  clearTimeout(state.typing.get(id));
  state.typing.delete(id);
  const c = state.conversations.get(id);
  if (c && state.rows.has(id)) renderRow(c);
  if (id === state.openId) el.typing.hidden = true;
}

async function startLive() {
  try {
    state.live = await connectLive({
      onEvent,
      onTyping,
      // Events older than the server keeps: reload what is on screen (realtime.js holds back
      // newer events until this is done).
      onResync: async () => {
        await loadList({ reset: true });
        if (state.openId) await openConversation(state.openId);
      },
    });
  } catch (err) {
    document.body.dataset.live = 'off';
    toast('Live updates are unavailable; reload to see new messages.', 'error');
  }
}

// -- start ------------------------------------------------------------------------------------

function bindScrolling() {
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadList();
  }, { root: el.list, rootMargin: '200px' });
  observer.observe(el.more);
  const older = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.messages.size) loadOlder();
  }, { root: el.messages });
  older.observe(el.loadOlder);
  el.loadOlder.addEventListener('click', loadOlder);
}

async function main() {
  bindFilters();
  bindComposer();
  bindControls();
  fillMemberSelects();
  const w = await workspace().catch(() => null);
  state.quickReplies = (w?.settings?.quick_replies || []).filter((r) => r && r.text);
  state.templates = (w?.settings?.message_templates || []).filter((t) => t && t.name);
  fillTagFilter();
  const params = new URLSearchParams(location.search);
  if (params.get('q')) {
    el.search.value = params.get('q');
    state.filters.q = params.get('q');
  }
  // Subscribe and load at the same time (faster first paint); once subscribed, re-read the first
  // page so that a change made between the list read and the subscription is not missed.
  const live = startLive();
  bindScrolling();
  await loadList({ reset: true });
  await live;
  await reconcileFirstPage();
  // ?c= opens a conversation; ?q= (from a contact page) opens the only match.
  const initial = params.get('c') || (params.get('q') && state.order.length === 1 ? state.order[0] : null);
  if (initial) openConversation(initial);
  window.addEventListener('popstate', () => {
    const id = new URLSearchParams(location.search).get('c');
    if (id) openConversation(id);
    else closeThread();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.openId) markReadSoon();
  });
}

main();
