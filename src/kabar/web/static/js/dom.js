// DOM helpers. User content only ever goes in through textContent / attributes, never innerHTML.
// Attributes that navigate or load: only http(s) URLs (relative ones resolve to this origin), and
// for loading, the composer's blob: previews and data: images. A `javascript:` (or any other
// scheme) URL from a message, contact or setting is dropped, so it never becomes a link.
const LINK_ATTRS = new Set(['href', 'action', 'formaction']);
const LOAD_ATTRS = new Set(['src', 'poster']);

export function safeUrl(value, { load = false } = {}) {
  let url;
  try {
    url = new URL(String(value), document.baseURI);
  } catch {
    return null;
  }
  const allowed = load ? ['http:', 'https:', 'blob:', 'data:'] : ['http:', 'https:'];
  return allowed.includes(url.protocol) ? String(value) : null;
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (let [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (LINK_ATTRS.has(key) || LOAD_ATTRS.has(key)) {
      value = safeUrl(value, { load: LOAD_ATTRS.has(key) });
      if (value === null) continue;
    }
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== 'string' && key !== 'list') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** Set textContent of [data-field=name] inside root. */
export function setField(root, name, value) {
  const el = root.querySelector(`[data-field="${name}"]`);
  if (el) el.textContent = value ?? '';
  return el;
}

// -- time, always shown in WIB (Asia/Jakarta) --------------------------------------------------
const TZ = 'Asia/Jakarta';
const fmtTime = new Intl.DateTimeFormat('id-ID', { timeZone: TZ, hour: '2-digit', minute: '2-digit' });
const fmtDay = new Intl.DateTimeFormat('id-ID', { timeZone: TZ, day: 'numeric', month: 'short' });
const fmtDayYear = new Intl.DateTimeFormat('id-ID', { timeZone: TZ, day: 'numeric', month: 'short', year: 'numeric' });
const fmtFull = new Intl.DateTimeFormat('id-ID', { timeZone: TZ, dateStyle: 'medium', timeStyle: 'short' });
const fmtKey = new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit' });

export const dayKey = (iso) => fmtKey.format(new Date(iso));
export const formatTime = (iso) => (iso ? fmtTime.format(new Date(iso)) : '');
export const formatFull = (iso) => (iso ? `${fmtFull.format(new Date(iso))} WIB` : '');

/** Whether ``incoming`` is at least as recent as ``existing`` (by ``updated_at``): events can arrive
 * late, and an older copy must never replace a newer one. Parsed, not compared as text:
 * "…:06Z" must not sort after "…:06.5Z". */
export function notOlder(incoming, existing) {
  return (Date.parse(incoming.updated_at) || 0) >= (Date.parse(existing.updated_at) || 0);
}

/** "14.05" today, "3 Mei" this year, else with the year: the conversation list's time column. */
export function formatShort(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  const now = new Date();
  if (dayKey(date) === dayKey(now)) return fmtTime.format(date);
  if (fmtKey.format(date).slice(0, 4) === fmtKey.format(now).slice(0, 4)) return fmtDay.format(date);
  return fmtDayYear.format(date);
}

export function formatDay(iso) {
  const key = dayKey(iso);
  const today = dayKey(new Date());
  const yesterday = dayKey(new Date(Date.now() - 86400000));
  if (key === today) return 'Today';
  if (key === yesterday) return 'Yesterday';
  return fmtDayYear.format(new Date(iso));
}

/** <input type=datetime-local> value (WIB wall time) ⇄ UTC ISO instant. */
export function localInputToIso(value) {
  if (!value) return null;
  return new Date(`${value}:00+07:00`).toISOString();
}
export function isoToLocalInput(iso) {
  if (!iso) return '';
  const shifted = new Date(new Date(iso).getTime() + 7 * 3600000);
  return shifted.toISOString().slice(0, 16);
}

// -- feedback ----------------------------------------------------------------------------------
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const item = h('div', { class: `toast toast-${kind}`, text: message });
  box.append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 7000 : 3500);
}

/** Show an ApiError on a form: field messages next to inputs, the rest in .form-error. */
export function showFormError(form, err) {
  clearFormError(form);
  const box = form.querySelector('.form-error');
  const leftovers = [];
  for (const item of err.errors || []) {
    const input = form.elements.namedItem(item.field);
    if (input && input.insertAdjacentElement) {
      input.setAttribute('aria-invalid', 'true');
      const msg = h('p', { class: 'field-error', text: `${labelOf(form, input) || item.field} ${item.message}` });
      msg.id = `${input.id || item.field}-error`;
      input.setAttribute('aria-describedby', msg.id);
      input.insertAdjacentElement('afterend', msg);
    } else {
      leftovers.push(`${item.field}: ${item.message}`);
    }
  }
  const text = leftovers.length ? leftovers.join('; ') : (err.errors || []).length ? '' : err.message;
  if (box && text) {
    box.textContent = text;
    box.hidden = false;
  } else if (!box && text) {
    toast(text, 'error');
  }
}

function labelOf(form, input) {
  const label = input.id ? form.querySelector(`label[for="${CSS.escape(input.id)}"]`) : null;
  return label ? label.textContent.trim() : '';
}

export function clearFormError(form) {
  for (const el of form.querySelectorAll('.field-error')) el.remove();
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const box = form.querySelector('.form-error');
  if (box) box.hidden = true;
}

/** Run an async submit with the submit button disabled; errors land on the form. */
export async function busy(form, fn) {
  const buttons = Array.from(form.querySelectorAll('button[type=submit], button:not([type])'));
  buttons.forEach((b) => (b.disabled = true));
  clearFormError(form);
  try {
    return await fn();
  } catch (err) {
    showFormError(form, err);
    return undefined;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

export const LEAD_LABELS = {
  prospect: 'Prospect', hot_lead: 'Hot lead', cold_lead: 'Cold lead', client: 'Client', student: 'Student', alumni: 'Alumni', lost: 'Lost',
};

export function displayName(contact) {
  if (!contact) return '';
  return contact.name || contact.profile_name || handle(contact) || contact.phone || '';
}

// The customer's WhatsApp @username ('' when they have none).
export function handle(contact) {
  return contact && contact.username ? `@${contact.username}` : '';
}

// How to reach the customer, as shown next to their name: phone and/or @username (a customer who
// uses a WhatsApp username may hide their number).
export function contactAddress(contact) {
  if (!contact) return '';
  return [contact.phone, handle(contact)].filter(Boolean).join(' · ');
}

export function initials(contact) {
  const name = displayName(contact).replace(/^\+/, '');
  return (name[0] || '?').toUpperCase();
}
