// The contact panel (inbox side pane, contacts drawer): fields, tags, lead, ARI breakdown, notes
// and tasks, history, merge. Built from the <template id="contact-panel-template"> markup.
import { api, ApiError, wsBase } from './api.js';
import {
  $, busy, clear, contactAddress, displayName, formatFull, h, localInputToIso, notOlder, setField, toast,
} from './dom.js';
import { fillMemberSelects, memberName, workspace } from './shell.js';

export class ContactPanel {
  /** container: the <aside>; onClose(): called by the close button; onMerged(contact) after a merge. */
  constructor(container, { onClose, onMerged } = {}) {
    this.container = container;
    this.onClose = onClose;
    this.onMerged = onMerged;
    this.contact = null;
    this.conversationId = null;
    this.tags = [];
    this.dirty = false;
    this.root = null;
  }

  get contactId() {
    return this.contact?.id || null;
  }

  async show(contactId, { conversationId = null } = {}) {
    this.conversationId = conversationId;
    this.build();
    this.container.hidden = false;
    this.container.setAttribute('aria-busy', 'true');
    // A contact.updated event that arrives while the contact loads is kept and wins if newer.
    this.loading = contactId;
    this.early = null;
    try {
      const contact = await api('GET', `${wsBase}/contacts/${encodeURIComponent(contactId)}`);
      const early = this.loading === contactId ? this.early : null;
      this.loading = null;
      this.fill(early && notOlder(early, contact) ? { ...contact, ...early } : contact);
      await Promise.all([this.loadNotes(), this.loadAri()]);
    } catch (err) {
      clear(this.container).append(h('p', { class: 'form-error', role: 'alert', text: err.message }));
    } finally {
      this.container.removeAttribute('aria-busy');
    }
  }

  hide() {
    this.container.hidden = true;
    this.contact = null;
  }

  build() {
    const template = document.getElementById('contact-panel-template');
    clear(this.container).append(template.content.cloneNode(true));
    const root = this.container.firstElementChild;
    this.root = root;
    this.form = $('[data-form=contact]', root);
    this.noteForm = $('[data-form=note]', root);
    this.mergeForm = $('[data-form=merge-search]', root);
    fillMemberSelects(root);
    workspace().then((w) => {
      const list = $('datalist', root);
      for (const tag of w?.settings?.contact_tags || []) list.append(h('option', { value: tag }));
    }).catch(() => {});

    $('[data-action=close-panel]', root).addEventListener('click', () => this.onClose?.());
    this.form.addEventListener('input', () => { this.dirty = true; });
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(this.form, () => this.save());
    });
    const tagInput = $('[data-tag-input]', root);
    const addTag = () => {
      const value = tagInput.value.trim();
      if (value && !this.tags.includes(value)) {
        this.tags.push(value);
        this.renderTags();
        this.dirty = true;
      }
      tagInput.value = '';
      tagInput.focus();
    };
    $('[data-action=add-tag]', root).addEventListener('click', addTag);
    tagInput.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        addTag();
      }
    });
    this.noteForm.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(this.noteForm, () => this.addNote());
    });
    const mergeInput = this.mergeForm.elements.q;
    let timer;
    mergeInput.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.searchMerge(mergeInput.value.trim()), 250);
    });
    this.mergeForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.searchMerge(mergeInput.value.trim());
    });
  }

  fill(contact) {
    this.contact = contact;
    this.dirty = false;
    const root = this.root;
    setField(root, 'title', displayName(contact));
    setField(root, 'phone', contactAddress(contact));
    setField(root, 'since', contact.first_contact_at ? `first contact ${formatFull(contact.first_contact_at)}` : `added ${formatFull(contact.created_at)}`);
    const f = this.form.elements;
    f.name.value = contact.name || '';
    f.email.value = contact.email || '';
    f.lead_status.value = contact.lead_status;
    f.lead_score.value = contact.lead_score;
    f.assignee_id.value = contact.assignee_id || '';
    // The member list arrives async; set again once it is there.
    fillMemberSelects(root).then(() => { if (!this.dirty) f.assignee_id.value = contact.assignee_id || ''; });
    this.tags = [...(contact.tags || [])];
    this.renderTags();
    this.renderHistory();
  }

  /** A contact.updated event: refresh unless the user is editing the form. */
  applyContact(contact) {
    if (this.loading === contact.id) {
      if (!this.early || notOlder(contact, this.early)) this.early = contact;
      return;
    }
    if (!this.contact || contact.id !== this.contact.id || !notOlder(contact, this.contact)) return;
    if (this.dirty) {
      this.contact = { ...this.contact, ...contact };
      return;
    }
    this.fill({ ...this.contact, ...contact });
  }

  renderTags() {
    const list = $('[data-field=tags]', this.root);
    clear(list);
    for (const tag of this.tags) {
      list.append(h('li', { class: 'chip' }, h('span', { text: tag }),
        h('button', {
          type: 'button', 'aria-label': `Remove tag ${tag}`, text: '✕',
          onclick: () => {
            this.tags = this.tags.filter((t) => t !== tag);
            this.dirty = true;
            this.renderTags();
          },
        })));
    }
    if (!this.tags.length) list.append(h('li', { class: 'muted small', text: 'No tags' }));
  }

  async renderHistory() {
    const dl = $('[data-field=history]', this.root);
    const c = this.contact;
    const rows = [
      ['First contact', formatFull(c.first_contact_at) || '—'],
      ['Last interaction', formatFull(c.last_interaction_at) || '—'],
      ['Returning customer', c.is_returning ? 'Yes' : 'No'],
      ['Source', c.source || '—'],
      ['Assigned to', (await memberName(c.assignee_id)) || 'Nobody'],
    ];
    clear(dl);
    for (const [k, v] of rows) dl.append(h('dt', { text: k }), h('dd', { text: v }));
    if (this.conversationId || !c.phone) return; // the thread is right beside the panel; by-phone needs a phone
    // Outside the inbox: the latest messages, and a way into the chat.
    const box = dl.parentElement;
    box.querySelector('.recent')?.remove();
    const recent = h('div', { class: 'recent' },
      h('p', {}, h('a', { href: `/w/${document.body.dataset.wsSlug}/inbox?q=${encodeURIComponent(c.phone)}`, text: 'Open the chat in the inbox →' })));
    box.append(recent);
    try {
      const context = await api('GET', `${wsBase}/contacts/by-phone`, { query: { phone: c.phone } });
      const messages = (context.recent_messages || []).slice(0, 5);
      if (messages.length) {
        recent.append(h('ul', { class: 'notes' }, messages.map((m) => h('li', { class: 'note' },
          h('p', { class: 'note-text', text: m.text || `[${m.type}]` }),
          h('div', { class: 'note-meta' }, h('span', { text: `${m.direction === 'inbound' ? 'Customer' : 'Us'} · ${formatFull(m.created_at)}` }))))));
      }
    } catch { /* the link is enough */ }
  }

  async save() {
    const f = this.form.elements;
    const score = f.lead_score.value === '' ? 0 : Number(f.lead_score.value);
    const body = {
      name: f.name.value.trim() || null,
      email: f.email.value.trim() || null,
      lead_status: f.lead_status.value,
      lead_score: score,
      assignee_id: f.assignee_id.value || null,
      tags: this.tags,
    };
    const saved = await api('PATCH', `${wsBase}/contacts/${this.contact.id}`, { json: body });
    this.dirty = false;
    this.fill(saved);
    toast('Contact saved');
  }

  // -- notes and tasks -------------------------------------------------------------------------

  async loadNotes() {
    if (!this.contact) return;
    const list = $('[data-field=notes]', this.root);
    const notes = (await api('GET', `${wsBase}/contacts/${this.contact.id}/notes`, { query: { limit: 100 } })).data || [];
    clear(list);
    if (!notes.length) list.append(h('li', { class: 'muted small', text: 'No notes yet.' }));
    for (const note of notes) list.append(this.renderNote(note));
  }

  renderNote(note) {
    const done = Boolean(note.completed_at);
    const item = h('li', { class: `note${done ? ' done' : ''}`, dataset: { id: note.id } });
    const meta = h('div', { class: 'note-meta' });
    const when = h('span', { text: `${note.author_type === 'bot' ? 'ARI · ' : ''}${formatFull(note.created_at)}` });
    meta.append(when);
    if (note.due_at) {
      const overdue = !done && new Date(note.due_at) < new Date();
      meta.append(h('span', { class: `note-due${overdue ? ' overdue' : ''}`, text: `${overdue ? 'Overdue' : 'Due'} ${formatFull(note.due_at)}` }));
      const box = h('input', { type: 'checkbox', checked: done, 'aria-label': 'Task done' });
      box.addEventListener('change', async () => {
        try {
          await api('PATCH', `${wsBase}/contacts/${this.contact.id}/notes/${note.id}`, { json: { completed_at: box.checked ? new Date().toISOString() : null } });
          await this.loadNotes();
        } catch (err) {
          toast(err.message, 'error');
          box.checked = !box.checked;
        }
      });
      meta.append(h('label', { class: 'check' }, box, ' Done'));
    }
    meta.append(h('button', {
      type: 'button', class: 'btn btn-small btn-ghost', text: 'Delete', 'aria-label': 'Delete note',
      onclick: async () => {
        if (!window.confirm('Delete this note?')) return;
        try {
          await api('DELETE', `${wsBase}/contacts/${this.contact.id}/notes/${note.id}`);
          await this.loadNotes();
        } catch (err) {
          toast(err.message, 'error');
        }
      },
    }));
    item.append(h('p', { class: 'note-text', text: note.content }), meta);
    return item;
  }

  async addNote() {
    const f = this.noteForm.elements;
    const content = f.content.value.trim();
    if (!content) throw new ApiError(422, { errors: [{ field: 'content', message: 'must not be empty' }] });
    await api('POST', `${wsBase}/contacts/${this.contact.id}/notes`, { json: { content, due_at: localInputToIso(f.due_at.value) } });
    this.noteForm.reset();
    await this.loadNotes();
  }

  // -- ARI -------------------------------------------------------------------------------------

  async loadAri() {
    const box = $('[data-section=ari]', this.root);
    box.hidden = true;
    if (!this.conversationId) return;
    let ari;
    try {
      ari = await api('GET', `${wsBase}/conversations/${this.conversationId}/ari`);
    } catch (err) {
      return; // 404: ARI has not talked to this customer
    }
    if (!ari || (!ari.state && ari.lead_score == null)) return;
    box.hidden = false;
    const temp = setField(box, 'ari-temperature', ari.lead_temperature || '—');
    temp.className = `pill pill-${ari.lead_temperature || ''}`;
    setField(box, 'ari-score', ari.lead_score != null ? `score ${ari.lead_score}/100` : '');
    setField(box, 'ari-state', ari.state || '—');
    setField(box, 'ari-handoff', ari.handoff_reason ? `Handed over: ${ari.handoff_reason}` : ari.model ? `Model: ${ari.model}` : '');
    const list = $('[data-field=ari-breakdown]', box);
    clear(list);
    const breakdown = ari.score_breakdown || {};
    const maxima = { basic: 25, qualification: 35, documents: 30, document: 30, engagement: 10 };
    for (const [key, value] of Object.entries(breakdown)) {
      if (key === 'total' || typeof value !== 'number') continue;
      const name = key.replace(/_score$/, '');
      const max = maxima[name] || 100;
      const bar = h('span');
      bar.style.width = `${Math.max(0, Math.min(100, (value / max) * 100))}%`;
      list.append(h('li', {}, h('span', { text: name }), h('span', { class: 'bar', 'aria-hidden': 'true' }, bar), h('span', { text: `${value}/${max}` })));
    }
  }

  // -- merge -----------------------------------------------------------------------------------

  async searchMerge(q) {
    const list = $('[data-field=merge-results]', this.root);
    clear(list);
    if (q.length < 2) return;
    try {
      const found = (await api('GET', `${wsBase}/contacts`, { query: { q, limit: 8 } })).data.filter((c) => c.id !== this.contact.id);
      if (!found.length) list.append(h('li', { class: 'muted small', text: 'No other contact matches.' }));
      for (const other of found) {
        list.append(h('li', {},
          h('span', {}, h('strong', { text: displayName(other) }), ' ', h('span', { class: 'muted small', text: contactAddress(other) })),
          h('button', { type: 'button', class: 'btn btn-small', text: 'Merge into this', onclick: () => this.merge(other) })));
      }
    } catch (err) {
      list.append(h('li', { class: 'form-error', text: err.message }));
    }
  }

  async merge(other) {
    const message = `Merge “${displayName(other)}” (${contactAddress(other)}) into “${displayName(this.contact)}”? `
      + `${displayName(other)} will be deleted; its conversation and notes move here.`;
    if (!window.confirm(message)) return;
    try {
      const merged = await api('POST', `${wsBase}/contacts/merge`, { json: { keep_id: this.contact.id, merge_id: other.id } });
      const contact = merged.contact || merged;
      toast('Contacts merged');
      this.fill(contact);
      clear($('[data-field=merge-results]', this.root));
      this.mergeForm.reset();
      await this.loadNotes();
      this.onMerged?.(contact, other);
    } catch (err) {
      toast(err.message, 'error');
    }
  }
}
