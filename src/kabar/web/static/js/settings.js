// Settings pages and the account page. Each section loads its JSON, builds its forms, saves via the API.
import { api, ApiError, wsBase } from './api.js';
import { busy, clear, formatFull, h, toast } from './dom.js';
import { formOf, nest, pick, readFields } from './forms.js';
import { isManager, me, members, workspace } from './shell.js';

const root = document.getElementById('settings-content');
const section = document.getElementById('settings')?.dataset.section;

// -- small building blocks ---------------------------------------------------------------------

function onSubmit(form, fn) {
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, () => fn(form));
  });
  return form;
}

function secretOnce(label, secret, note) {
  const box = h('div', { class: 'secret-box', role: 'status' },
    h('strong', { text: label }), h('br'),
    h('code', { class: 'secret-value', text: secret }), h('br'),
    h('span', { class: 'small', text: note || 'Copy it now: it will not be shown again.' }), ' ',
    h('button', { type: 'button', class: 'btn btn-small', text: 'Copy', onclick: () => navigator.clipboard?.writeText(secret).then(() => toast('Copied')) }));
  return box;
}

function listOf(response) {
  if (Array.isArray(response)) return response;
  return response?.data ?? response?.items ?? [];
}

async function loadOrNull(path) {
  try {
    return await api('GET', path);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

function errorBox(err) {
  return h('p', { class: 'form-error', role: 'alert', text: err.message });
}

/**
 * A list of items with an edit form each, and an add form: flow stages, knowledge, slots.
 * opts: {path, fields, title(item), subtitle(item), addLabel, toBody(values), empty}
 */
async function crudList(opts) {
  const container = h('div', { class: 'stack' });
  const list = h('ul', { class: 'item-list' });
  const toBody = opts.toBody || ((v) => v);

  async function refresh() {
    const items = listOf(await api('GET', opts.path));
    clear(list);
    if (!items.length) list.append(h('li', { class: 'muted', text: opts.empty || 'Nothing here yet.' }));
    for (const item of items) list.append(renderItem(item));
  }

  function renderItem(item) {
    const edit = onSubmit(formOf(opts.fields, item, { submit: 'Save', className: 'stack' }), async (form) => {
      await api('PATCH', `${opts.path}/${encodeURIComponent(item.id)}`, { json: toBody(nest(readFields(form, opts.fields))) });
      toast('Saved');
      await refresh();
    });
    const remove = h('button', {
      type: 'button', class: 'btn btn-small btn-danger', text: 'Delete',
      onclick: async () => {
        if (!window.confirm(`Delete “${opts.title(item)}”?`)) return;
        try {
          await api('DELETE', `${opts.path}/${encodeURIComponent(item.id)}`);
          toast('Deleted');
          await refresh();
        } catch (err) {
          toast(err.message, 'error');
        }
      },
    });
    return h('li', {},
      h('div', { class: 'item-head' },
        h('span', {}, h('span', { class: 'item-title', text: opts.title(item) }), ' ',
          h('span', { class: 'muted small', text: opts.subtitle ? opts.subtitle(item) : '' })),
        isManager ? remove : null),
      isManager ? h('details', {}, h('summary', { text: 'Edit' }), edit) : null);
  }

  container.append(list);
  if (isManager) {
    const add = onSubmit(formOf(opts.fields, opts.defaults || {}, { submit: opts.addLabel || 'Add' }), async (form) => {
      await api('POST', opts.path, { json: toBody(nest(readFields(form, opts.fields))) });
      form.reset();
      toast('Added');
      await refresh();
    });
    container.append(h('h2', { text: opts.addLabel || 'Add' }), add);
  }
  await refresh();
  return container;
}

/** One object loaded with GET and saved with PUT (ARI config, scoring). */
async function objectForm({ path, fields, method = 'PUT', toBody = (v) => v, submit = 'Save', after }) {
  const current = (await loadOrNull(path)) || {};
  const form = onSubmit(formOf(fields.map((f) => (f.secret ? { ...f, isSet: Boolean(pick(current, f.setFlag || `${f.name}_set`)) } : f)), current, { submit }), async () => {
    const saved = await api(method, path, { json: toBody(nest(readFields(form, fields)), current) });
    toast('Saved');
    if (after) after(saved, form);
  });
  if (!isManager) for (const el of form.elements) el.disabled = true;
  return form;
}

// -- sections ----------------------------------------------------------------------------------

async function renderWorkspace() {
  const wsData = await workspace({ refresh: true });
  const settings = wsData.settings || {};
  const base = [
    { name: 'name', label: 'Workspace name', required: true },
    { name: 'slug', label: 'URL name (slug)', help: 'Lowercase letters, digits and dashes; used in page links.', required: true },
  ];
  const quick = repeatEditor('Quick replies', 'quick-replies', settings.quick_replies || [], [
    { name: 'label', label: 'Label', placeholder: 'Salam pembuka' },
    { name: 'text', label: 'Text', type: 'textarea', placeholder: 'Halo kak, terima kasih sudah menghubungi kami 😊' },
  ], 'Add quick reply');
  const templates = repeatEditor('WhatsApp templates', 'message-templates', settings.message_templates || [], [
    { name: 'name', label: 'Template name', placeholder: 'follow_up_1' },
    { name: 'language', label: 'Language', placeholder: 'id' },
    { name: 'description', label: 'What it says', placeholder: 'Halo {{1}}, apakah masih tertarik…' },
  ], 'Add template');
  const tagField = { name: 'contact_tags', label: 'Suggested contact tags', type: 'textarea', rows: 2, help: 'Comma or line separated; offered when tagging contacts and in inbox filters.' };
  const form = formOf([...base, tagField], { ...wsData, contact_tags: (settings.contact_tags || []).join(', ') }, { submit: 'Save workspace', extra: [quick.el, templates.el] });
  form.id = 'workspace-form';
  onSubmit(form, async () => {
    const values = readFields(form, base);
    const tags = form.elements.contact_tags.value.split(/[\n,]/).map((t) => t.trim()).filter(Boolean);
    const next = {
      ...settings,
      quick_replies: quick.read().filter((r) => r.text).map((r, i) => ({ id: r.id || `qr${i + 1}`, label: r.label || r.text.slice(0, 30), text: r.text })),
      contact_tags: [...new Set(tags)],
      message_templates: templates.read().filter((r) => r.name).map((r) => ({ name: r.name, language: r.language || 'id', description: r.description || '' })),
    };
    await api('PATCH', wsBase, { json: { name: values.name, slug: values.slug, settings: next } });
    toast('Workspace saved');
    if (values.slug !== document.body.dataset.wsSlug) window.location.assign(`/w/${values.slug}/settings/workspace`);
  });
  if (!isManager) for (const el of form.elements) el.disabled = true;
  return form;
}

/** Rows of small inputs with add/remove (quick replies, templates); read() gives the objects. */
function repeatEditor(title, key, rows, fields, addLabel) {
  const list = h('div', { class: 'repeat-list' });
  const addRow = (row = {}) => {
    const inputs = fields.map((f) => {
      const input = f.type === 'textarea'
        ? h('textarea', { rows: 2, placeholder: f.placeholder, 'aria-label': f.label, dataset: { key: f.name } })
        : h('input', { placeholder: f.placeholder, 'aria-label': f.label, dataset: { key: f.name } });
      input.value = row[f.name] ?? '';
      return input;
    });
    const line = h('div', { class: 'repeat-row', dataset: { id: row.id || '' } }, inputs,
      h('button', { type: 'button', class: 'btn btn-small btn-danger', text: 'Remove', onclick: () => line.remove() }));
    list.append(line);
  };
  rows.forEach(addRow);
  const el = h('fieldset', { class: `repeat ${key}` }, h('legend', { text: title }), list,
    h('button', { type: 'button', class: 'btn btn-small', text: addLabel, onclick: () => addRow() }));
  return {
    el,
    read: () => Array.from(list.children).map((line) => {
      const out = { id: line.dataset.id || undefined };
      for (const input of line.querySelectorAll('[data-key]')) out[input.dataset.key] = input.value.trim();
      return out;
    }),
  };
}

const CHANNEL_FIELDS = [
  { name: 'provider', label: 'Provider', type: 'select', options: [['kapso', 'Kapso'], ['meta', 'Meta Cloud API'], ['fake', 'Fake (demo/testing)']] },
  { name: 'phone_number_id', label: 'Phone number ID', required: true },
  { name: 'display_phone_number', label: 'Display phone number', placeholder: '+62 812…' },
  { name: 'api_base_url', label: 'API base URL (optional)', type: 'url', placeholder: 'https://api.kapso.ai' },
  { name: 'api_key', label: 'API key / access token', type: 'password', secret: true },
  { name: 'webhook_secret', label: 'Webhook secret (Kapso)', type: 'password', secret: true },
  { name: 'app_secret', label: 'App secret (Meta)', type: 'password', secret: true },
  { name: 'verify_token', label: 'Verify token (Meta)', type: 'password', secret: true },
];

async function renderChannel() {
  const current = (await loadOrNull(`${wsBase}/channel`)) || {};
  const fields = CHANNEL_FIELDS.map((f) => (f.secret ? { ...f, isSet: Boolean(current[`has_${f.name}`]) } : f));
  const form = onSubmit(formOf(fields, current, { submit: 'Save channel' }), async () => {
    const saved = await api('PUT', `${wsBase}/channel`, { json: readFields(form, fields) });
    toast('Channel saved');
    status.textContent = describeChannel(saved);
  });
  form.id = 'channel-form';
  const status = h('p', { class: 'muted', text: current.phone_number_id ? describeChannel(current) : 'No WhatsApp number connected yet.' });
  const webhookUrl = `${location.origin}${current.webhook_path || `/webhooks/${current.provider === 'meta' ? 'meta' : 'kapso'}`}`;
  const test = onSubmit(formOf([
    { name: 'to', label: 'Send a test message to (phone)', required: true, placeholder: '0812…', type: 'tel' },
    { name: 'text', label: 'Text', placeholder: 'Tes dari Kabar ✅' },
  ], {}, { submit: 'Send test message' }), async (f) => {
    const body = readFields(f, [{ name: 'to' }, { name: 'text' }]);
    clear(testResult);
    testResult.className = 'small';
    try {
      const result = await api('POST', `${wsBase}/channel/test`, { json: { to: body.to || '', text: body.text || undefined } });
      toast('Test message sent');
      testResult.classList.add('test-ok');
      testResult.append(`✓ Accepted by the provider for ${result.to} (message id ${result.provider_message_id}). `);
      if (result.conversation_id) {
        testResult.append(h('a', { href: `/w/${encodeURIComponent(document.body.dataset.wsSlug)}/inbox?c=${encodeURIComponent(result.conversation_id)}`, text: 'See its delivery in the inbox' }));
      }
    } catch (err) {
      const pe = err instanceof ApiError ? err.problem.provider_error : null;
      testResult.classList.add('test-failed');
      testResult.append(h('strong', { text: err instanceof ApiError ? err.problem.title || 'Not sent' : 'Not sent' }), h('br'), err.message);
      if (pe) testResult.append(h('br'), h('span', { class: 'muted', text: `Provider error ${pe.code}${pe.http_status ? ` · HTTP ${pe.http_status}` : ''}: ${pe.title}` }));
    }
  });
  test.id = 'channel-test-form';
  const testResult = h('p', { class: 'small', id: 'channel-test-result', role: 'status' });
  return h('div', { class: 'stack' }, status,
    h('p', { class: 'small' }, 'Webhook URL to configure at your provider: ', h('code', { text: webhookUrl })),
    form, h('h2', { text: 'Check the connection' }), test, testResult);
}

function describeChannel(ch) {
  return `Connected: ${ch.provider} · ${ch.display_phone_number || ch.phone_number_id}`;
}

async function renderMembers() {
  const container = h('div', { class: 'stack' });
  const table = h('table', { class: 'table', id: 'members-table' },
    h('thead', {}, h('tr', {}, ['Name', 'Email', 'Role', ''].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody'));
  const invitations = h('ul', { class: 'item-list', id: 'invitation-list' });

  async function refresh() {
    const list = (await api('GET', `${wsBase}/members`)).data;
    const body = table.tBodies[0];
    clear(body);
    for (const m of list) {
      let roleCell = h('span', { class: 'pill', text: m.role });
      if (isManager && m.role !== 'owner' && m.user_id !== me.id) {
        const select = h('select', { 'aria-label': `Role of ${m.name || m.email}` },
          [['admin', 'Admin'], ['member', 'Member']].map(([v, l]) => h('option', { value: v, text: l })));
        select.value = m.role;
        select.addEventListener('change', async () => {
          try {
            await api('PATCH', `${wsBase}/members/${m.user_id}`, { json: { role: select.value } });
            toast('Role changed');
          } catch (err) {
            toast(err.message, 'error');
            select.value = m.role;
          }
        });
        roleCell = select;
      }
      const remove = isManager && m.role !== 'owner'
        ? h('button', {
          type: 'button', class: 'btn btn-small btn-danger', text: m.user_id === me.id ? 'Leave' : 'Remove',
          onclick: async () => {
            if (!window.confirm(`Remove ${m.name || m.email} from this workspace?`)) return;
            try {
              await api('DELETE', `${wsBase}/members/${m.user_id}`);
              await refresh();
            } catch (err) {
              toast(err.message, 'error');
            }
          },
        }) : null;
      body.append(h('tr', {}, h('td', { text: m.name }), h('td', { text: m.email }), h('td', {}, roleCell), h('td', {}, remove)));
    }
    if (isManager) {
      const pending = (await api('GET', `${wsBase}/invitations`)).data.filter((i) => i.status === 'pending');
      clear(invitations);
      if (!pending.length) invitations.append(h('li', { class: 'muted', text: 'No pending invitations.' }));
      for (const inv of pending) {
        invitations.append(h('li', { class: 'item-head' },
          h('span', {}, h('span', { class: 'item-title', text: inv.email }), ' ', h('span', { class: 'muted small', text: `${inv.role} · expires ${formatFull(inv.expires_at)}` })),
          h('button', {
            type: 'button', class: 'btn btn-small btn-danger', text: 'Revoke',
            onclick: async () => {
              try {
                await api('DELETE', `${wsBase}/invitations/${inv.id}`);
                await refresh();
              } catch (err) {
                toast(err.message, 'error');
              }
            },
          })));
      }
    }
  }

  container.append(h('div', { class: 'table-wrap' }, table));
  if (isManager) {
    const inviteFields = [
      { name: 'email', label: 'Email', type: 'email', required: true },
      { name: 'name', label: 'Name (optional)' },
      { name: 'role', label: 'Role', type: 'select', options: [['member', 'Member: works the inbox, sees own and unassigned chats'], ['admin', 'Admin: everything but deleting the workspace']] },
    ];
    const linkBox = h('div', { role: 'status' });
    const invite = onSubmit(formOf(inviteFields, {}, { submit: 'Create invitation' }), async (form) => {
      const inv = await api('POST', `${wsBase}/invitations`, { json: readFields(form, inviteFields) });
      form.reset();
      // The link goes to their mailbox; a development server without SMTP also returns it here.
      clear(linkBox).append(h('p', { class: 'notice', text: `Invitation mailed to ${inv.email} (valid 7 days).` }));
      if (inv.url) {
        linkBox.append(h('p', { class: 'muted', text: 'No mail server is configured: send them this link yourself (shown once).' }),
          h('input', { type: 'text', readonly: true, value: inv.url, class: 'invite-link', 'aria-label': 'Invitation link' }));
      }
      await refresh();
    });
    invite.id = 'invite-form';
    container.append(h('h2', { text: 'Invite someone' }), invite, linkBox, h('h2', { text: 'Pending invitations' }), invitations);
  }
  await refresh();
  return container;
}

async function renderApiKeys() {
  const container = h('div', { class: 'stack' });
  const list = h('ul', { class: 'item-list', id: 'api-key-list' });
  const secretBox = h('div');
  async function refresh() {
    const keys = (await api('GET', `${wsBase}/api-keys`)).data;
    clear(list);
    if (!keys.length) list.append(h('li', { class: 'muted', text: 'No API keys yet.' }));
    for (const key of keys) {
      const state = key.revoked_at ? `revoked ${formatFull(key.revoked_at)}` : key.last_used_at ? `last used ${formatFull(key.last_used_at)}` : 'never used';
      list.append(h('li', { class: 'item-head' },
        h('span', {}, h('span', { class: 'item-title', text: key.name }), ' ', h('code', { text: `…${key.hint}` }), ' ', h('span', { class: 'muted small', text: state })),
        key.revoked_at ? null : h('button', {
          type: 'button', class: 'btn btn-small btn-danger', text: 'Revoke',
          onclick: async () => {
            if (!window.confirm(`Revoke the key “${key.name}”? Integrations using it stop working.`)) return;
            await api('DELETE', `${wsBase}/api-keys/${key.id}`);
            await refresh();
          },
        })));
    }
  }
  const fields = [{ name: 'name', label: 'Key name', required: true, placeholder: 'e.g. n8n bot' }];
  const form = onSubmit(formOf(fields, {}, { submit: 'Create API key' }), async (f) => {
    const key = await api('POST', `${wsBase}/api-keys`, { json: readFields(f, fields) });
    f.reset();
    clear(secretBox).append(secretOnce(`API key “${key.name}”`, key.secret));
    await refresh();
  });
  form.id = 'api-key-form';
  container.append(h('p', { class: 'muted', text: 'API keys let bots and integrations use this workspace: send “Authorization: Bearer <key>”.' }), form, secretBox, list);
  await refresh();
  return container;
}

const EVENT_TYPES = ['message.created', 'message.updated', 'conversation.created', 'conversation.updated', 'contact.created', 'contact.updated', 'contact.deleted', 'contact.merged', 'note.created', 'ari.handoff', 'appointment.created', 'appointment.updated'];

async function renderWebhooks() {
  const container = h('div', { class: 'stack' });
  const list = h('ul', { class: 'item-list', id: 'webhook-list' });
  const secretBox = h('div');
  async function refresh() {
    const hooks = listOf(await api('GET', `${wsBase}/webhooks`));
    clear(list);
    if (!hooks.length) list.append(h('li', { class: 'muted', text: 'No webhooks yet.' }));
    for (const hook of hooks) list.append(renderHook(hook));
  }
  function renderHook(hook) {
    const active = h('input', { type: 'checkbox', checked: Boolean(hook.active) });
    active.addEventListener('change', async () => {
      try {
        await api('PATCH', `${wsBase}/webhooks/${hook.id}`, { json: { active: active.checked } });
        toast(active.checked ? 'Webhook on' : 'Webhook paused');
      } catch (err) {
        toast(err.message, 'error');
        active.checked = !active.checked;
      }
    });
    const deliveries = h('ul', { class: 'small' });
    const details = h('details', {}, h('summary', { text: 'Recent deliveries' }), deliveries);
    details.addEventListener('toggle', async () => {
      if (!details.open) return;
      clear(deliveries);
      try {
        const rows = listOf(await api('GET', `${wsBase}/webhooks/${hook.id}/deliveries`, { query: { limit: 20 } }));
        if (!rows.length) deliveries.append(h('li', { class: 'muted', text: 'No deliveries yet.' }));
        for (const d of rows) {
          deliveries.append(h('li', {},
            `${formatFull(d.created_at)} · #${d.event_seq} ${d.event_type} · ${d.status}${d.last_status_code ? ` (HTTP ${d.last_status_code})` : ''}${d.last_error ? ` · ${d.last_error}` : ''} `,
            h('button', {
              type: 'button', class: 'btn btn-small', text: 'Redeliver',
              onclick: async () => {
                try {
                  await api('POST', `${wsBase}/webhooks/${hook.id}/deliveries/${d.id}/redeliver`);
                  toast('Queued for redelivery');
                } catch (err) {
                  toast(err.message, 'error');
                }
              },
            })));
        }
      } catch (err) {
        deliveries.append(h('li', { class: 'form-error', text: err.message }));
      }
    });
    return h('li', {},
      h('div', { class: 'item-head' },
        h('span', {}, h('span', { class: 'item-title', text: hook.url }), ' ', h('span', { class: `pill${hook.status === 'active' ? ' pill-client' : ' pill-hot_lead'}`, text: hook.status }),
          h('br'), h('span', { class: 'muted small', text: (hook.events || []).join(', ') }),
          hook.disabled_reason ? h('span', { class: 'msg-error', text: ` ${hook.disabled_reason}` }) : null),
        h('span', { class: 'row-end' },
          h('button', {
            type: 'button', class: 'btn btn-small', text: 'Send test event',
            onclick: async () => {
              try {
                const result = await api('POST', `${wsBase}/webhooks/${hook.id}/test`);
                toast(result.delivered ? `Delivered (HTTP ${result.status_code}, ${result.duration_ms} ms)` : `Not delivered: ${result.error || `HTTP ${result.status_code}`}`, result.delivered ? 'info' : 'error');
              } catch (err) {
                toast(err.message, 'error');
              }
            },
          }),
          h('label', { class: 'check' }, active, ' Active'),
          h('button', {
            type: 'button', class: 'btn btn-small btn-danger', text: 'Delete',
            onclick: async () => {
              if (!window.confirm(`Delete the webhook to ${hook.url}?`)) return;
              await api('DELETE', `${wsBase}/webhooks/${hook.id}`);
              await refresh();
            },
          }))),
      details);
  }
  const eventBoxes = h('fieldset', {}, h('legend', { text: 'Events (none ticked = all events)' }),
    h('div', { class: 'check-list' }, EVENT_TYPES.map((type) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'events', value: type }), ` ${type}`))));
  const fields = [{ name: 'url', label: 'Endpoint URL', type: 'url', required: true, placeholder: 'https://example.com/kabar-hook' }];
  const form = onSubmit(formOf(fields, {}, { submit: 'Add webhook', extra: [eventBoxes] }), async (f) => {
    const events = Array.from(f.querySelectorAll('input[name=events]:checked')).map((i) => i.value);
    const hook = await api('POST', `${wsBase}/webhooks`, { json: { url: readFields(f, fields).url, events: events.length ? events : ['*'], active: true } });
    f.reset();
    clear(secretBox).append(secretOnce('Signing secret', hook.secret, 'Verify X-Kabar-Signature with it. Shown only once.'));
    await refresh();
  });
  form.id = 'webhook-form';
  container.append(h('p', { class: 'muted', text: 'Kabar POSTs each event to your URL, signed with HMAC-SHA256 (X-Kabar-Signature), and retries failures.' }), form, secretBox, list);
  await refresh();
  return container;
}

async function renderAri() {
  const fields = [
    { name: 'enabled', label: 'ARI answers customers automatically', type: 'checkbox' },
    { name: 'bot_name', label: 'Bot name', placeholder: 'ARI', required: true },
    { name: 'language', label: 'Language', type: 'select', options: [['id', 'Bahasa Indonesia'], ['en', 'English']] },
    { name: 'greeting_style', label: 'Greeting style', type: 'select', options: [['professional', 'Professional'], ['casual', 'Casual'], ['formal', 'Formal']] },
    { name: 'tone.description', label: 'Tone and persona', type: 'textarea', placeholder: 'Ramah, jelas, dan mendukung…' },
    { name: 'tone.greeting_template', label: 'Greeting template', type: 'textarea', rows: 2, placeholder: 'Selamat {waktu}, kak! Saya {bot}…' },
    { name: 'community_link', label: 'Community link', type: 'url', placeholder: 'https://chat.whatsapp.com/…' },
    { name: 'reply_delay_ms', label: 'Wait before answering (ms, answers a burst of messages once)', type: 'number', min: 0, max: 60000 },
    { name: 'handoff_after_messages', label: 'Hand over to a human after this many messages without progress', type: 'number', min: 2, max: 200 },
    { name: 'llm.provider', label: 'LLM provider', type: 'select', options: [['', 'None: rule-based replies'], ['openai', 'OpenAI'], ['grok', 'Grok'], ['sealion', 'Sea-Lion'], ['ollama', 'Ollama'], ['custom', 'Other OpenAI-compatible']] },
    { name: 'llm.base_url', label: 'LLM base URL', type: 'url', placeholder: 'https://api.openai.com/v1' },
    { name: 'llm.model', label: 'Model' },
    { name: 'llm.api_key', label: 'LLM API key', type: 'password', secret: true, setFlag: 'llm.api_key_set' },
    { name: 'llm.ab_split', label: 'A/B split: % of contacts on this model', type: 'number', min: 0, max: 100 },
  ];
  const form = await objectForm({
    path: `${wsBase}/ari/config`,
    fields,
    toBody: (values, current) => {
      const body = {
        enabled: values.enabled,
        bot_name: values.bot_name,
        language: values.language,
        greeting_style: values.greeting_style,
        tone: { ...(current.tone || {}), ...(values.tone || {}) },
        community_link: values.community_link,
      };
      if (values.reply_delay_ms != null) body.reply_delay_ms = values.reply_delay_ms;
      if (values.handoff_after_messages != null) body.handoff_after_messages = values.handoff_after_messages;
      const llm = values.llm || {};
      if (!llm.provider || !llm.model) {
        body.llm = null;
      } else {
        body.llm = { provider: llm.provider, model: llm.model, base_url: llm.base_url, ab_split: llm.ab_split ?? 100 };
        if (llm.api_key) body.llm.api_key = llm.api_key;
      }
      return body;
    },
  });
  const mode = h('p', { class: 'muted small', text: 'Without an LLM, ARI answers with its rule-based Indonesian replies.' });
  form.prepend(mode);
  return form;
}

async function renderScoring() {
  const weightNames = ['basic', 'qualification', 'documents', 'engagement'];
  const fields = [
    { name: 'hot_threshold', label: 'Hot lead from score', type: 'number', min: 1, max: 100 },
    { name: 'warm_threshold', label: 'Warm lead from score', type: 'number', min: 0, max: 99 },
    ...weightNames.map((w) => ({ name: `weights.${w}`, label: `Weight: ${w}`, type: 'number', min: 0, max: 100 })),
  ];
  const form = await objectForm({ path: `${wsBase}/ari/scoring`, fields });
  const sum = h('p', { class: 'small', role: 'status' });
  const update = () => {
    const total = weightNames.reduce((acc, w) => acc + Number(form.elements.namedItem(`weights.${w}`).value || 0), 0);
    sum.textContent = `Weights add up to ${total}${total === 100 ? ' ✓' : ' (must be 100)'}`;
  };
  form.addEventListener('input', update);
  form.querySelector('.form-error').before(sum);
  update();
  return form;
}

function renderFlow() {
  return crudList({
    path: `${wsBase}/ari/flow-stages`,
    title: (s) => `${s.stage_order ?? s.order ?? ''}${s.stage_order != null || s.order != null ? '. ' : ''}${s.name}`,
    subtitle: (s) => `${s.is_active === false ? '(off) ' : ''}${s.goal || ''}`,
    fields: [
      { name: 'name', label: 'Stage name', required: true },
      { name: 'goal', label: 'Goal', type: 'textarea', rows: 2, required: true },
      { name: 'sample_script', label: 'Sample script', type: 'textarea', rows: 2 },
      { name: 'exit_criteria', label: 'Exit criteria', type: 'textarea', rows: 2 },
      { name: 'is_active', label: 'Active', type: 'checkbox', default: true },
    ],
    defaults: { is_active: true },
    addLabel: 'Add stage',
    empty: 'No stages: ARI uses its default flow (greeting, qualifying, scoring, booking, handoff).',
  });
}

function renderKnowledge() {
  return crudList({
    path: `${wsBase}/ari/knowledge`,
    title: (k) => k.title,
    subtitle: (k) => `${k.is_active === false ? '(off) ' : ''}${k.category || ''}`,
    fields: [
      { name: 'title', label: 'Title', required: true },
      { name: 'category', label: 'Category' },
      { name: 'content', label: 'Content', type: 'textarea', rows: 5, required: true },
      { name: 'is_active', label: 'ARI may use this', type: 'checkbox', default: true },
    ],
    defaults: { is_active: true },
    addLabel: 'Add knowledge entry',
  });
}

// ari_slots.day_of_week follows Python's weekday(): 0 = Monday … 6 = Sunday.
const DAYS = [['0', 'Senin (Mon)'], ['1', 'Selasa (Tue)'], ['2', 'Rabu (Wed)'], ['3', 'Kamis (Thu)'], ['4', 'Jumat (Fri)'], ['5', 'Sabtu (Sat)'], ['6', 'Minggu (Sun)']];

async function renderSlots() {
  const people = await members();
  return crudList({
    path: `${wsBase}/ari/slots`,
    title: (s) => `${(DAYS.find(([d]) => Number(d) === s.day_of_week) || ['', '?'])[1]} ${String(s.start_time).slice(0, 5)}–${String(s.end_time).slice(0, 5)} WIB`,
    subtitle: (s) => `${s.duration_minutes} min${s.is_active === false ? ' · off' : ''}`,
    fields: [
      { name: 'day_of_week', label: 'Day', type: 'select', options: DAYS },
      { name: 'start_time', label: 'From (WIB)', type: 'time', required: true },
      { name: 'end_time', label: 'Until (WIB)', type: 'time', required: true },
      { name: 'duration_minutes', label: 'Minutes per consultation', type: 'number', min: 5, max: 480 },
      { name: 'consultant_id', label: 'Consultant', type: 'select', options: [['', 'Anyone'], ...people.map((m) => [m.user_id, m.name || m.email])] },
      { name: 'is_active', label: 'Bookable', type: 'checkbox', default: true },
    ],
    defaults: { is_active: true, duration_minutes: 60, day_of_week: '1' },
    toBody: (v) => ({ ...v, day_of_week: Number(v.day_of_week) }),
    addLabel: 'Add slot',
  });
}

const RENDERERS = {
  workspace: renderWorkspace,
  channel: renderChannel,
  members: renderMembers,
  'api-keys': renderApiKeys,
  webhooks: renderWebhooks,
  ari: renderAri,
  'ari-scoring': renderScoring,
  'ari-flow': renderFlow,
  'ari-knowledge': renderKnowledge,
  'ari-slots': renderSlots,
};

async function main() {
  if (root && section) {
    try {
      const content = await RENDERERS[section]();
      clear(root).append(content);
    } catch (err) {
      clear(root).append(errorBox(err));
    }
  }
  const resend = document.getElementById('resend-verification');
  if (resend) {
    resend.addEventListener('click', async () => {
      resend.disabled = true;
      try {
        await api('POST', '/v1/auth/verify-email/resend');
        toast('A new confirmation link is on its way to your mailbox');
      } catch (err) {
        toast(err.message);
      } finally {
        resend.disabled = false;
      }
    });
  }
  const identity = document.getElementById('identity-form');
  if (identity) {
    onSubmit(identity, async (form) => {
      await api('POST', '/v1/me/identities', { json: { token: form.elements.token.value.trim() } });
      form.reset();
      toast('Sign-in linked');
    });
  }
  const password = document.getElementById('password-form');
  if (password) {
    onSubmit(password, async (form) => {
      await api('POST', '/v1/auth/password', {
        json: { current_password: form.elements.current_password.value, new_password: form.elements.new_password.value },
      });
      form.reset();
      toast('Password changed');
    });
  }
}

main();
