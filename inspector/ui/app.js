// The inspector's page: the list follows api/events (Server-Sent Events);
// the detail comes from api/exchanges/{id}. Everything recorded is put in
// the page as text (textContent), never as HTML.
'use strict';

const state = {
  rows: new Map(),   // id -> summary
  fresh: new Map(),  // id -> when it arrived, for rows that arrived while the page was open
  selected: 0,
  snapshotSeen: false,
};

const $ = (sel) => document.querySelector(sel);

// el builds an element: attributes from an object, children from strings
// (as text) or nodes.
function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') n.className = v;
    else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

function pad(n, w) { return String(n).padStart(w, '0'); }
function clock(iso) {
  const d = new Date(iso);
  return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
}
function duration(s) {
  if (!s.done) return '…';
  const v = s.duration_ms;
  return v < 1 ? `${Math.round(v * 1000)} µs` : v < 1000 ? `${v.toFixed(v < 10 ? 2 : 1)} ms` : `${(v / 1000).toFixed(2)} s`;
}
function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}
function statusClass(code) { return 's' + Math.floor(code / 100); }

// Filters, the same rules as the API's: a class (2xx) or a code, and a
// substring of the request target.
function filters() {
  return { cls: $('#f-class').value, code: $('#f-code').value.trim(), path: $('#f-path').value };
}
function matches(s, f) {
  if (f.path && !s.url.includes(f.path)) return false;
  if (f.code && String(s.status) !== f.code) return false;
  if (f.cls && Math.floor(s.status / 100) !== Number(f.cls[0])) return false;
  return true;
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; renderList(); });
}

function renderList() {
  const f = filters();
  const list = [...state.rows.values()].filter((s) => matches(s, f)).sort((a, b) => b.id - a.id);
  const now = performance.now();
  for (const [id, at] of state.fresh) if (now - at > highlightMS) state.fresh.delete(id);
  $('#rows').replaceChildren(...list.map(row));
  $('#empty').hidden = list.length > 0;
  if (state.rows.size > 0 && list.length === 0) $('#empty').textContent = 'No request matches the filters.';
  else $('#empty').textContent = 'No requests yet. They appear here as they arrive.';
  if (list.length === 0) $('#empty').hidden = false;
}

// highlightMS is how long a new row stays highlighted (the fresh
// animation in style.css).
const highlightMS = 1200;

function row(s) {
  const badges = [];
  if (s.kind !== 'http') badges.push(el('span', { class: `badge ${s.kind}` }, s.kind === 'websocket' ? 'ws' : 'sse'));
  if (s.replay_of) badges.push(el('span', { class: 'badge replay', title: `replay of #${s.replay_of}` }, 'replay'));
  const tr = el('tr', {
    'data-id': s.id,
    class: [s.id === state.selected ? 'selected' : '', state.fresh.has(s.id) ? 'fresh' : ''].join(' ').trim() || undefined,
    onclick: () => { location.hash = `#${s.id}`; },
  },
  el('td', { class: 'time' }, clock(s.start)),
  el('td', { class: 'method' }, s.method),
  el('td', { class: 'url', title: s.url }, badges, s.url),
  el('td', { class: `status ${statusClass(s.status)}` }, s.status ? String(s.status) : '…'),
  el('td', { class: 'num' }, duration(s)),
  el('td', { class: 'num' }, bytes(s.response_size)));
  if (state.fresh.has(s.id)) {
    // Rows are rebuilt on each change: the highlight goes on where it was.
    tr.style.animationDelay = `-${Math.round(performance.now() - state.fresh.get(s.id))}ms`;
  }
  return tr;
}

// The live list.
function connect() {
  const es = new EventSource('api/events');
  const conn = $('#conn');
  es.addEventListener('open', () => { conn.dataset.state = 'live'; conn.textContent = 'live'; });
  es.addEventListener('error', () => { conn.dataset.state = 'lost'; conn.textContent = 'reconnecting'; });
  es.addEventListener('snapshot', (e) => {
    const d = JSON.parse(e.data);
    state.rows.clear();
    for (const s of d.exchanges) state.rows.set(s.id, s);
    state.snapshotSeen = true;
    scheduleRender();
    if (state.selected && !state.rows.has(state.selected)) showGone();
  });
  es.addEventListener('exchange', (e) => {
    const s = JSON.parse(e.data);
    if (!state.rows.has(s.id) && state.snapshotSeen) state.fresh.set(s.id, performance.now());
    state.rows.set(s.id, s);
    scheduleRender();
    if (s.id === state.selected) refreshDetail(s.id);
  });
  es.addEventListener('evict', (e) => {
    const d = JSON.parse(e.data);
    for (const id of [...state.rows.keys()]) if (id < d.first_id) state.rows.delete(id);
    scheduleRender();
  });
}

// The detail view.
let detailSeq = 0;
let refreshTimer = 0;
function refreshDetail(id) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { if (state.selected === id) showDetail(id, true); }, 150);
}

function showGone() {
  $('#detail').replaceChildren(el('p', { class: 'hint' }, `Request #${state.selected} is no longer kept.`));
}

async function showDetail(id, keepEdit) {
  const seq = ++detailSeq;
  const resp = await fetch(`api/exchanges/${id}`);
  if (seq !== detailSeq) return;
  if (!resp.ok) { showGone(); return; }
  const d = await resp.json();
  if (seq !== detailSeq) return;
  const open = keepEdit && $('#edit') && !$('#edit').hidden;
  renderDetail(d);
  if (open) toggleEdit(d, true);
}

function headerTable(h) {
  const names = Object.keys(h || {}).sort();
  if (names.length === 0) return el('p', { class: 'note' }, 'none');
  return el('table', { class: 'headers' }, el('tbody', {},
    names.flatMap((k) => h[k].map((v) => el('tr', {}, el('td', {}, k), el('td', {}, v))))));
}

function bodyView(b, id) {
  const meta = [];
  if (b.kind === 'empty' && b.size === 0) return el('p', { class: 'note', id }, 'empty');
  meta.push(bytes(b.size));
  if (b.content_type) meta.push(b.content_type);
  if (b.decoded) meta.push(`shown ${b.decoded}-decoded`);
  if (b.truncated) meta.push(`first ${bytes(b.kept)} kept`);
  if (!b.complete) meta.push('incomplete');
  const text = b.kind === 'binary' ? b.hex : (b.text || '');
  return [el('p', { class: 'bodymeta' }, meta.join(' · ')), el('pre', { class: `body ${b.kind}`, id }, text)];
}

function renderDetail(d) {
  const badges = [];
  if (d.kind !== 'http') badges.push(el('span', { class: `badge ${d.kind}` }, d.kind === 'websocket' ? 'websocket' : 'event stream'));
  if (d.replay_of) badges.push(el('a', { class: 'badge replay', href: `#${d.replay_of}` }, `replay of #${d.replay_of}`));
  const parts = [
    el('h2', {}, `${d.method} ${d.url}`),
    el('div', { class: 'summary' },
      el('span', { class: `status ${statusClass(d.status)}` }, d.status ? String(d.status) : 'pending'),
      badges,
      el('span', { class: 'note' }, `#${d.id} · ${d.proto} · ${d.host}`)),
  ];
  const actions = el('div', { class: 'actions' });
  if (d.replay) {
    actions.append(
      el('button', { id: 'replay', class: 'primary', type: 'button', disabled: !d.replayable, title: d.replay_note || 'Send this request again to the local service', onclick: () => replay(d.id, null) }, 'Replay'),
      el('button', { id: 'edit-replay', type: 'button', disabled: d.kind === 'websocket', onclick: () => toggleEdit(d) }, 'Edit and replay'),
      el('span', { id: 'replay-result', class: 'result' }, d.replayable ? '' : d.replay_note || ''));
  }
  parts.push(actions, el('div', { id: 'edit-slot' }));

  parts.push(el('h3', {}, 'Timings'), el('dl', { class: 'timings' },
    el('dt', {}, 'Started'), el('dd', {}, new Date(d.start).toLocaleString()),
    el('dt', {}, 'To response headers'), el('dd', {}, d.status ? `${d.header_ms.toFixed(2)} ms` : '…'),
    el('dt', {}, 'Total'), el('dd', {}, d.done ? `${d.duration_ms.toFixed(2)} ms` : 'in progress'),
    el('dt', {}, 'Client'), el('dd', {}, d.remote_addr)));

  parts.push(el('h3', {}, 'Request headers'), headerTable(d.request_headers));
  parts.push(el('h3', {}, 'Request body'), bodyView(d.request_body, 'req-body'));
  parts.push(el('h3', {}, 'Response headers'), headerTable(d.response_headers));
  if (d.kind === 'websocket') {
    parts.push(el('h3', {}, `WebSocket frames (${d.frame_count || 0})`), frames(d));
  } else {
    if (d.kind === 'sse') parts.push(el('h3', {}, `Events (${d.event_count || 0})`), events(d));
    parts.push(el('h3', {}, 'Response body'), bodyView(d.response_body, 'resp-body'));
  }
  const detail = $('#detail');
  detail.dataset.id = d.id;
  detail.replaceChildren(...parts.flat());
}

function frames(d) {
  if (!d.frames || d.frames.length === 0) return el('p', { class: 'note' }, 'none kept');
  return el('table', { class: 'frames', id: 'frames' },
    el('thead', {}, el('tr', {}, el('th', {}, 'At'), el('th', {}, ''), el('th', {}, 'Opcode'), el('th', { class: 'num' }, 'Length'), el('th', {}, 'Payload'))),
    el('tbody', {}, d.frames.map((f) => el('tr', {},
      el('td', { class: 'num' }, `${f.offset_ms.toFixed(1)} ms`),
      el('td', { class: f.from_client ? 'dir-client' : 'dir-server', title: f.from_client ? 'from the client' : 'from the server' }, f.from_client ? '→' : '←'),
      el('td', {}, f.opcode + (f.fin ? '' : ' (more)') + (f.close_code ? ` ${f.close_code}` : '')),
      el('td', { class: 'num' }, bytes(f.length)),
      el('td', { class: 'payload' }, f.text !== undefined ? f.text : (f.hex || ''))))));
}

function events(d) {
  if (!d.events || d.events.length === 0) return el('p', { class: 'note' }, 'none kept');
  return el('table', { class: 'frames', id: 'events' },
    el('thead', {}, el('tr', {}, el('th', {}, 'At'), el('th', {}, 'Event'), el('th', {}, 'ID'), el('th', {}, 'Data'))),
    el('tbody', {}, d.events.map((e) => el('tr', {},
      el('td', { class: 'num' }, `${e.offset_ms.toFixed(1)} ms`),
      el('td', {}, e.type || 'message'),
      el('td', {}, e.id || ''),
      el('td', { class: 'payload' }, e.data + (e.truncated ? ' …' : ''))))));
}

// The edit form: method, path, headers (one "Name: value" a line) and
// body, prefilled with what was captured. Masked values were never kept:
// their headers are left out, to be typed in.
async function toggleEdit(d, forceOpen) {
  const slot = $('#edit-slot');
  if (slot.firstChild && !forceOpen) { slot.replaceChildren(); return; }
  const masked = [];
  const lines = [];
  for (const k of Object.keys(d.request_headers || {}).sort()) {
    for (const v of d.request_headers[k]) {
      if (v.includes('[masked]')) masked.push(k); else lines.push(`${k}: ${v}`);
    }
  }
  // A binary body cannot be edited as text: it is sent as captured.
  const bodyEditable = d.request_body.kind !== 'binary';
  let body = '';
  if (bodyEditable && d.request_body.kept > 0) {
    const r = await fetch(`api/exchanges/${d.id}/request/body`);
    body = r.ok ? await r.text() : '';
  }
  const form = el('form', { class: 'edit', id: 'edit' },
    el('label', { for: 'e-method' }, 'Method'), el('input', { id: 'e-method', value: d.method }),
    el('label', { for: 'e-path' }, 'Path'), el('input', { id: 'e-path', value: d.url }),
    el('label', { for: 'e-headers' }, 'Headers'), el('textarea', { id: 'e-headers', spellcheck: 'false' }),
    el('label', { for: 'e-body' }, 'Body'), el('textarea', { id: 'e-body', spellcheck: 'false', disabled: !bodyEditable }),
    el('div', { class: 'row' },
      el('button', { class: 'primary', type: 'submit', id: 'e-send' }, 'Send'),
      el('span', { class: 'note' }, masked.length ? `Masked headers left out: ${[...new Set(masked)].join(', ')}.` : '')));
  form.querySelector('#e-headers').value = lines.join('\n');
  form.querySelector('#e-body').value = bodyEditable ? body : '(binary body: sent as captured)';
  const origHeaders = lines.join('\n');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const edit = { method: $('#e-method').value.trim(), path: $('#e-path').value.trim() };
    const h = $('#e-headers').value;
    if (h !== origHeaders || masked.length) {
      edit.headers = {};
      for (const line of h.split('\n')) {
        const i = line.indexOf(':');
        if (i <= 0) continue;
        const k = line.slice(0, i).trim();
        (edit.headers[k] = edit.headers[k] || []).push(line.slice(i + 1).trim());
      }
    }
    if (bodyEditable && $('#e-body').value !== body) edit.body = $('#e-body').value;
    replay(d.id, edit);
  });
  slot.replaceChildren(form);
}

async function replay(id, edit) {
  const out = $('#replay-result');
  out.className = 'result';
  out.textContent = 'Replaying…';
  const init = { method: 'POST' };
  if (edit) { init.headers = { 'Content-Type': 'application/json' }; init.body = JSON.stringify(edit); }
  try {
    const resp = await fetch(`api/exchanges/${id}/replay`, init);
    const d = await resp.json();
    if (!resp.ok) throw new Error(d.message || resp.statusText);
    location.hash = `#${d.id}`;
  } catch (err) {
    const o = $('#replay-result');
    if (o) { o.className = 'result error'; o.textContent = `Replay failed: ${err.message}`; }
  }
}

function select() {
  const id = Number(location.hash.slice(1)) || 0;
  state.selected = id;
  scheduleRender();
  if (id) showDetail(id, false);
  else $('#detail').replaceChildren(el('p', { class: 'hint' }, 'Select a request to see its headers, bodies and timings.'));
}

document.addEventListener('DOMContentLoaded', () => {
  for (const id of ['#f-class', '#f-code', '#f-path']) $(id).addEventListener('input', scheduleRender);
  $('#filters').addEventListener('submit', (e) => e.preventDefault());
  $('#clear').addEventListener('click', () => fetch('api/exchanges', { method: 'DELETE' }));
  window.addEventListener('hashchange', select);
  connect();
  select();
});
