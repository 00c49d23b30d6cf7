// Dashboard: the /stats numbers as cards, and SVG bar charts by lead status and tag. Live: any
// contact or conversation event re-reads the numbers (debounced).
import { api, wsBase } from './api.js';
import { $, clear, formatFull, h, LEAD_LABELS, toast } from './dom.js';
import { connectLive } from './live.js';

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Horizontal bars: [[label, value]]; scales to the container width through the viewBox. */
function barChart(container, rows) {
  clear(container);
  if (!rows.length) {
    container.append(h('p', { class: 'muted', text: 'No data yet.' }));
    return;
  }
  const width = 600;
  const bar = 22;
  const gap = 10;
  const labelW = 130;
  const max = Math.max(1, ...rows.map(([, v]) => v));
  const height = rows.length * (bar + gap) + gap;
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true', focusable: 'false' });
  rows.forEach(([label, value], i) => {
    const y = gap + i * (bar + gap);
    const w = Math.max(2, ((width - labelW - 60) * value) / max);
    chart.append(
      svg('text', { x: labelW - 8, y: y + bar * 0.7, 'text-anchor': 'end', class: 'bar-label' }, label),
      svg('rect', { x: labelW, y, width: w, height: bar, rx: 4, class: 'bar-rect' }),
      svg('text', { x: labelW + w + 6, y: y + bar * 0.7, class: 'bar-value' }, String(value)));
  });
  container.append(chart);
}

function tableRows(table, rows) {
  const body = table.tBodies[0];
  clear(body);
  for (const [label, value] of rows) body.append(h('tr', {}, h('th', { scope: 'row', text: label }), h('td', { text: String(value) })));
}

async function load() {
  const stats = await api('GET', `${wsBase}/stats`);
  const c = stats.contacts;
  const cards = [
    ['New today', c.today, 'dash-today'],
    ['New this week', c.week, 'dash-week'],
    ['New this month', c.month, 'dash-month'],
    ['All contacts', c.total, 'dash-total'],
    ['Open conversations', stats.conversations.open, 'dash-open'],
    ['Unread conversations', stats.conversations.unread, 'dash-unread'],
  ];
  const list = $('#dash-cards');
  clear(list);
  for (const [label, value, id] of cards) {
    list.append(h('li', { class: 'stat-card', id }, h('span', { class: 'value', text: String(value) }), h('span', { class: 'label', text: label })));
  }
  const lead = Object.keys(LEAD_LABELS).map((k) => [LEAD_LABELS[k], c.by_lead_status?.[k] || 0]);
  barChart($('#chart-lead'), lead);
  tableRows($('#table-lead'), lead);
  const tags = Object.entries(c.by_tag || {}).sort((a, b) => b[1] - a[1]).slice(0, 12).map(([t, v]) => [`#${t}`, v]);
  barChart($('#chart-tag'), tags);
  tableRows($('#table-tag'), tags);
  $('#dash-updated').textContent = `As of ${formatFull(stats.computed_at)} · ${stats.date} (${stats.timezone})`;
}

let timer = null;
function reloadSoon() {
  clearTimeout(timer);
  timer = setTimeout(() => load().catch(() => {}), 1000);
}

load().catch((err) => toast(err.message, 'error'));
connectLive({
  onEvent: (event) => {
    if (event.type.startsWith('contact.') || event.type.startsWith('conversation.')) reloadSoon();
  },
  onResync: reloadSoon,
}).catch(() => {});
