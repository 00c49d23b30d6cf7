// Forms built from small field specs (settings pages), and reading them back as typed JSON.
import { h } from './dom.js';

let uid = 0;

/**
 * spec: {name, label, type: text|email|url|password|number|textarea|select|checkbox|time|datetime,
 *        options: [[value, label]], help, placeholder, required, min, max, step, secret}
 */
export function field(spec, value) {
  const id = `f-${spec.name.replace(/\W/g, '-')}-${++uid}`;
  const type = spec.type || 'text';
  let input;
  if (type === 'textarea') {
    input = h('textarea', { id, name: spec.name, rows: spec.rows || 3, placeholder: spec.placeholder, required: spec.required, maxlength: spec.maxlength });
    input.value = value ?? '';
  } else if (type === 'select') {
    input = h('select', { id, name: spec.name, required: spec.required },
      (spec.options || []).map(([v, label]) => h('option', { value: v, text: label })));
    input.value = value ?? spec.default ?? (spec.options?.[0]?.[0] ?? '');
  } else if (type === 'checkbox') {
    input = h('input', { id, name: spec.name, type: 'checkbox' });
    input.checked = value ?? spec.default ?? false;
    const wrap = h('div', { class: 'field' }, h('label', { class: 'check', for: id }, input, ` ${spec.label}`));
    if (spec.help) wrap.append(h('p', { class: 'muted small', text: spec.help }));
    return wrap;
  } else {
    const htmlType = type === 'datetime' ? 'datetime-local' : type;
    input = h('input', {
      id, name: spec.name, type: htmlType, placeholder: spec.secret && spec.isSet ? '•••••• (unchanged; type to replace)' : spec.placeholder,
      required: spec.required, min: spec.min, max: spec.max, step: spec.step, autocomplete: spec.secret ? 'new-password' : 'off',
      inputmode: type === 'number' ? 'numeric' : undefined,
    });
    input.value = value ?? '';
  }
  input.dataset.type = type;
  if (spec.secret) input.dataset.secret = '1';
  const wrap = h('div', { class: 'field' }, h('label', { for: id, text: spec.label }), input);
  if (spec.help) wrap.append(h('p', { class: 'muted small', text: spec.help }));
  return wrap;
}

/** Values of the named controls in `form`, typed by their spec: numbers, booleans, null for blanks. */
export function readFields(form, specs) {
  const out = {};
  for (const spec of specs) {
    const input = form.elements.namedItem(spec.name);
    if (!input) continue;
    const type = spec.type || 'text';
    if (type === 'checkbox') out[spec.name] = input.checked;
    else if (type === 'number') out[spec.name] = input.value === '' ? null : Number(input.value);
    else {
      const value = type === 'textarea' || type === 'password' ? input.value : input.value.trim();
      if (spec.secret && value === '') continue; // write-only secret left blank = keep it
      out[spec.name] = value === '' ? (spec.blank ?? null) : value;
    }
  }
  return out;
}

/** Nested names: {"llm.model": "x"} → {llm: {model: "x"}}. */
export function nest(flat) {
  const out = {};
  for (const [key, value] of Object.entries(flat)) {
    const parts = key.split('.');
    let node = out;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts[parts.length - 1]] = value;
  }
  return out;
}

export function pick(obj, path) {
  return path.split('.').reduce((node, key) => (node == null ? undefined : node[key]), obj);
}

/** A <form> with the fields, an error box and a submit button. */
export function formOf(specs, values = {}, { submit = 'Save', extra = [], className = 'card stack' } = {}) {
  return h('form', { class: className, novalidate: true },
    specs.map((spec) => field(spec, pick(values, spec.name))),
    extra,
    h('p', { class: 'form-error', role: 'alert', hidden: true }),
    h('div', { class: 'row-end' }, h('button', { type: 'submit', class: 'btn btn-primary', text: submit })),
  );
}
