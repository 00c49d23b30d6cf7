// Contacts: searchable, filterable table with the contact drawer; new contact; CSV import preview
// and commit (the import page). Export is a plain link to the CSV endpoint.
import { api, wsBase } from './api.js';
import { $, busy, clear, contactAddress, displayName, formatShort, h, LEAD_LABELS, toast } from './dom.js';
import { ContactPanel } from './contact-panel.js';
import { fillMemberSelects, me, workspace } from './shell.js';

// -- table ------------------------------------------------------------------------------------

function contactsPage() {
  const page = $('#contacts-page');
  if (!page) return;
  const table = $('#contacts-table tbody');
  const filters = $('#contact-filters');
  const more = $('#contacts-more');
  const empty = $('#contacts-empty');
  const count = $('#contacts-count');
  const drawer = $('#contact-panel');
  const panel = new ContactPanel(drawer, {
    onClose: () => {
      panel.hide();
      lastOpener?.focus();
    },
    onMerged: () => load({ reset: true }),
  });
  let cursor = null;
  let controller = null;
  let lastOpener = null;
  let shown = 0;

  function query() {
    const f = filters.elements;
    return {
      q: f.q.value.trim() || undefined,
      lead_status: f.lead_status.value || undefined,
      tag: f.tag.value.trim() || undefined,
      assignee_id: f.assignee_id.value || undefined,
    };
  }

  async function load({ reset = false } = {}) {
    if (reset) {
      controller?.abort();
      cursor = null;
      shown = 0;
    }
    controller = new AbortController();
    try {
      const result = await api('GET', `${wsBase}/contacts`, { query: { ...query(), cursor, limit: 50 }, signal: controller.signal });
      if (reset) clear(table);
      for (const contact of result.data) table.append(row(contact));
      shown += result.data.length;
      cursor = result.next_cursor;
      more.hidden = !cursor;
      empty.hidden = shown > 0;
      count.textContent = `(${shown}${cursor ? '+' : ''} shown)`;
    } catch (err) {
      if (err.name !== 'AbortError') toast(err.message, 'error');
    }
  }

  function row(contact) {
    const open = h('button', {
      type: 'button', class: 'row-link', text: displayName(contact),
      onclick: (event) => {
        lastOpener = event.currentTarget;
        panel.show(contact.id);
      },
    });
    return h('tr', { dataset: { id: contact.id } },
      h('td', {}, open),
      h('td', { text: contactAddress(contact) }),
      h('td', { class: 'hide-narrow', text: contact.email || '' }),
      h('td', {}, h('span', { class: `pill pill-${contact.lead_status}`, text: LEAD_LABELS[contact.lead_status] || contact.lead_status })),
      h('td', { class: 'hide-narrow', text: String(contact.lead_score) }),
      h('td', { class: 'hide-narrow' }, (contact.tags || []).map((t) => h('span', { class: 'pill', text: `#${t}` }))),
      h('td', { class: 'hide-narrow', text: formatShort(contact.last_interaction_at || contact.created_at) }));
  }

  let timer;
  filters.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => load({ reset: true }), 250);
  });
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    load({ reset: true });
  });
  more.addEventListener('click', () => load());

  const newForm = $('#new-contact-form');
  const newButton = $('[data-action=new-contact]');
  newButton.addEventListener('click', () => {
    newForm.hidden = !newForm.hidden;
    newButton.setAttribute('aria-expanded', String(!newForm.hidden));
    if (!newForm.hidden) newForm.elements.phone.focus();
  });
  newForm.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(newForm, async () => {
      const f = newForm.elements;
      const body = { phone: f.phone.value.trim(), name: f.name.value.trim() || null, email: f.email.value.trim() || null };
      if (me.role === 'member') body.assignee_id = me.id;
      const contact = await api('POST', `${wsBase}/contacts`, { json: body });
      newForm.reset();
      newForm.hidden = true;
      newButton.setAttribute('aria-expanded', 'false');
      toast(`Contact ${displayName(contact)} created`);
      await load({ reset: true });
      panel.show(contact.id);
    });
  });

  fillMemberSelects(page);
  workspace().then((w) => {
    const list = $('#cf-tag-list');
    for (const tag of w?.settings?.contact_tags || []) list.append(h('option', { value: tag }));
  }).catch(() => {});
  const initial = new URLSearchParams(location.search);
  if (initial.get('q')) filters.elements.q.value = initial.get('q');
  load({ reset: true });
}

// -- CSV import -------------------------------------------------------------------------------

const RESULT_TEXT = { create: 'New contact', update: 'Updates existing', duplicate: 'Duplicate in file (skipped)', invalid: 'Error (skipped)' };

function importPage() {
  const page = $('#import-page');
  if (!page) return;
  const form = $('#import-form');
  const preview = $('#import-preview');
  const summary = $('#import-summary');
  const rows = $('#import-rows tbody');
  const commit = $('#import-commit');
  const done = $('#import-done');
  let file = null;

  async function send(dryRun) {
    const data = new FormData();
    data.append('file', file, file.name);
    return api('POST', `${wsBase}/contacts/import`, { form: data, query: { dry_run: dryRun ? 'true' : 'false' } });
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, async () => {
      file = form.elements.file.files[0];
      if (!file) throw Object.assign(new Error('Choose a CSV file first.'), { errors: [] });
      const result = await send(true);
      showPreview(result);
    });
  });

  function showPreview(result) {
    done.hidden = true;
    clear(summary).append(
      h('li', {}, h('strong', { text: String(result.total_rows) }), ' rows'),
      h('li', {}, h('strong', { text: String(result.created) }), ' new'),
      h('li', {}, h('strong', { text: String(result.updated) }), ' updates'),
      h('li', {}, h('strong', { text: String(result.invalid_rows) }), ' with errors'),
      h('li', {}, h('strong', { text: String(result.duplicates_in_file) }), ' duplicates in file'));
    clear(rows);
    // Problems first: they are what a person needs to fix.
    const ordered = [...result.rows].sort((a, b) => Number(b.status === 'invalid' || b.status === 'duplicate') - Number(a.status === 'invalid' || a.status === 'duplicate') || a.row - b.row);
    for (const r of ordered.slice(0, 500)) {
      const bad = r.status === 'invalid' || r.status === 'duplicate';
      const details = bad
        ? r.errors.map((e) => `${e.field}: ${e.message}`).join('; ')
        : r.status === 'update' ? (r.changes?.length ? `changes ${r.changes.join(', ')}` : 'nothing changes') : '';
      rows.append(h('tr', { class: bad ? 'row-invalid' : '', dataset: { status: r.status } },
        h('td', { text: String(r.line) }), h('td', { text: r.phone || '' }),
        h('td', { text: RESULT_TEXT[r.status] || r.status }), h('td', { text: details })));
    }
    if (result.rows.length > 500) rows.append(h('tr', {}, h('td', { colspan: 4, class: 'muted', text: `…and ${result.rows.length - 500} more rows` })));
    const applicable = result.created + result.updated;
    commit.disabled = applicable === 0;
    commit.textContent = applicable ? `Import ${applicable} contact${applicable === 1 ? '' : 's'}` : 'Nothing to import';
    preview.hidden = false;
    preview.scrollIntoView({ block: 'start' });
  }

  commit.addEventListener('click', async () => {
    commit.disabled = true;
    try {
      const result = await send(false);
      preview.hidden = true;
      clear(done).append(
        h('h2', { text: 'Import finished' }),
        h('p', { text: `${result.created} created, ${result.updated} updated${result.unchanged ? ` (${result.unchanged} unchanged)` : ''}, ${result.invalid_rows + result.duplicates_in_file} skipped.` }),
        h('a', { class: 'btn btn-primary', href: `/w/${document.body.dataset.wsSlug}/contacts`, text: 'See contacts' }));
      done.hidden = false;
      form.reset();
      done.focus?.();
    } catch (err) {
      toast(err.message, 'error');
      commit.disabled = false;
    }
  });
  page.querySelector('[data-action=import-reset]').addEventListener('click', () => {
    preview.hidden = true;
    form.reset();
    form.elements.file.focus();
  });
}

contactsPage();
importPage();
