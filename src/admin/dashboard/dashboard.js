// switchyard dashboard. Reads GET /api/v1/stream (server-sent events read
// through fetch, so that the token goes in a header), falls back to polling
// GET /api/v1/status when the stream is unavailable, and says when it has
// lost the proxy. No cookie, no other host, nothing inline.
'use strict';

const POOLS = ['blue', 'green'];
const HISTORY_MS = 15 * 60 * 1000;
const SILENCE_MS = 5000; // no message for this long: the stream is dead
const TOKEN_KEY = 'switchyard-admin-token';
const $ = (id) => document.getElementById(id);

const state = {
  status: null,
  events: [],
  samples: [], // {time, blue: {rps, error_rate, p99_ms}, green: {...}}
  mirrorRates: [], // [time, mismatch rate] from each status while the page is open
  mode: 'connecting', // live | polling | lost
  lostSince: null,
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  tokenWaiters: [],
  weightDirty: false,
  streamAbort: null, // the open stream's AbortController
};

// ---- small helpers ----------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function poolLabel(pool) {
  return pool ? el('span', { class: 'pool-name ' + pool, text: pool }) : document.createTextNode('—');
}

const pct = (n) => (Math.round(n * 100) / 100) + '%';
const fixed = (n, d) => (n == null ? '—' : Number(n).toFixed(d));

function duration(ms) {
  if (ms <= 0) return '0 s';
  const s = Math.ceil(ms / 1000);
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + (s % 60) + ' s';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}

function clock(t) {
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleTimeString();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the admin API ----------------------------------------------------

function headers(json) {
  const h = {};
  if (state.token) h.Authorization = 'Bearer ' + state.token;
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
  });
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (resp.status === 401) askToken('The proxy refused that token. Type it again.');
  return { status: resp.status, ok: resp.ok, data };
}

// ---- the token --------------------------------------------------------

function askToken(why) {
  const d = $('token-dialog');
  $('token-why').textContent = why || 'Kept in this tab only and sent as a bearer header.';
  if (!d.open) d.showModal();
  $('token-input').focus();
}

function tokenEntered() {
  return new Promise((resolve) => state.tokenWaiters.push(resolve));
}

function useToken() {
  state.token = $('token-input').value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $('token-input').value = '';
  $('token-dialog').close();
  const waiters = state.tokenWaiters.splice(0);
  waiters.forEach((w) => w());
}

// ---- connection: stream, else polling, else "lost" --------------------

function setMode(mode) {
  state.mode = mode;
  if (mode === 'lost') {
    if (!state.lostSince) state.lostSince = Date.now();
  } else {
    state.lostSince = null;
  }
  renderConnection();
}

function renderConnection() {
  const c = $('conn');
  const words = { connecting: 'connecting', live: '● live', polling: '◐ polling', lost: '✕ disconnected' };
  c.textContent = words[state.mode];
  c.className = 'pill ' + state.mode;
  const b = $('banner');
  if (state.lostSince) {
    b.hidden = false;
    b.textContent = 'Disconnected from the proxy since ' + clock(state.lostSince) + ' (' +
      duration(Date.now() - state.lostSince) + ' ago). Retrying every second; what you see is as it was then.';
  } else {
    b.hidden = true;
  }
}

function handleMessage(event, data) {
  let v;
  try { v = JSON.parse(data); } catch (_) { return; }
  if (event === 'status') renderStatus(v);
  else if (event === 'events') { state.events = v; renderEvents(); }
  else if (event === 'event') addEvent(v);
  else if (event === 'sample') addSample(v);
}

// One stream, until it ends. Returns why it ended.
async function streamOnce() {
  const abort = new AbortController();
  state.streamAbort = abort;
  let resp;
  try {
    resp = await fetch('/api/v1/stream', { headers: headers(false), cache: 'no-store', credentials: 'omit', signal: abort.signal });
  } catch (_) {
    return 'unreachable';
  }
  if (resp.status === 401) return 'unauthorized';
  if (!resp.ok || !resp.body) return 'refused';
  setMode('live');
  loadHistory();
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let last = Date.now();
  const watchdog = setInterval(() => { if (Date.now() - last > SILENCE_MS) abort.abort(); }, 1000);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'ended';
      last = Date.now();
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data.push(line.slice(6));
        }
        handleMessage(event, data.join('\n'));
      }
    }
  } catch (_) {
    return 'ended';
  } finally {
    clearInterval(watchdog);
  }
}

async function pollOnce() {
  try {
    const s = await api('GET', '/api/v1/status');
    if (s.status === 401) return 'unauthorized';
    if (!s.ok) return 'lost';
    renderStatus(s.data);
    const e = await api('GET', '/api/v1/events?limit=100');
    if (e.ok) { state.events = e.data.events; renderEvents(); }
    return 'ok';
  } catch (_) {
    return 'lost';
  }
}

async function run() {
  if (document.body.dataset.token === 'required' && !state.token) {
    askToken('This proxy needs its admin token.');
    await tokenEntered();
  }
  for (;;) {
    const why = await streamOnce();
    if (why === 'unauthorized') {
      askToken(state.token ? 'The proxy refused that token. Type it again.' : 'This proxy needs its admin token.');
      await tokenEntered();
      continue;
    }
    // The stream is gone or refused: poll, a few rounds when the API
    // answers (then try the stream again), one when it does not.
    const rounds = why === 'refused' ? 5 : 1;
    for (let i = 0; i < rounds; i++) {
      const r = await pollOnce();
      if (r === 'unauthorized') break;
      setMode(r === 'ok' ? 'polling' : 'lost');
      if (r === 'ok' && i % 5 === 4) loadHistory();
      await sleep(1000);
    }
  }
}

// ---- status -----------------------------------------------------------

function renderStatus(s) {
  state.status = s;
  $('generation').textContent = 'generation ' + s.generation;
  $('phase').textContent = s.phase + (s.shutting_down ? ' (shutting down)' : '');
  $('live').replaceChildren(poolLabel(s.live));
  $('candidate').replaceChildren(poolLabel(s.candidate));
  $('armed').textContent = s.rollback_armed ? 'armed' : 'not armed';
  renderSplit(s.weights);
  renderLock(s.rollback_lock);
  renderHold(s);
  renderGate(s.gate);
  renderRollout(s);
  renderPools(s);
  renderFleet(s.fleet);
  renderMirror(s.mirror);
  const ce = s.config && s.config.last_error;
  $('config-error').hidden = !ce;
  if (ce) $('config-error').textContent = 'Last config reload failed at line ' + ce.line + ', column ' + ce.column + ': ' + ce.message;
}

function renderSplit(w) {
  $('split-blue').style.width = w.blue + '%';
  $('split-green').style.width = w.green + '%';
  $('split-text').textContent = 'blue ' + pct(w.blue) + ' · green ' + pct(w.green);
  if (!state.weightDirty) {
    $('weight-green').value = Math.round(w.green);
    showSlider();
  }
}

function showSlider() {
  const g = Number($('weight-green').value);
  $('weight-out').textContent = 'blue ' + (100 - g) + '% · green ' + g + '%';
}

function renderLock(lock) {
  $('lock').hidden = !lock;
  if (!lock) return;
  $('lock-pool').replaceChildren(poolLabel(lock.pool));
  $('lock-since').textContent = clock(lock.since);
  $('lock-reason').textContent = lock.reason;
}

function renderHold(s) {
  const h = s.hold;
  $('hold').hidden = !h;
  if (!h) return;
  const held = s.held_requests == null ? 0 : s.held_requests;
  $('hold-text').textContent = h.kind + ' ' + h.from + ' → ' + h.to + ' by ' + h.actor +
    (h.coordinator ? ' (coordinated by ' + h.coordinator + ')' : '') + ': ' + held +
    ' write' + (held === 1 ? '' : 's') + ' held here, ' + duration(Date.now() - h.started_unix_ms) +
    ' so far, aborts in ' + duration(h.deadline_unix_ms - Date.now());
  // Fleet mode: every member expected to hold and settle its writes.
  $('hold-members').replaceChildren(...(h.expected || []).map((m) =>
    el('li', { text: 'member holding writes: ' + m })));
}

// The PostgreSQL gate of the switch in flight, else of the last one
// (SPEC.md section 13): LSNs, the lag over time, the promotion.
function bytes(n) {
  if (n == null) return '—';
  if (n < 1024) return n + ' B';
  if (n < 1048576) return fixed(n / 1024, 1) + ' KiB';
  return fixed(n / 1048576, 1) + ' MiB';
}

function renderGate(g) {
  $('gate').hidden = !g;
  if (!g) return;
  const waiting = g.state === 'waiting' || g.state === 'connecting' || g.state === 'promoting';
  $('gate').className = 'notice' + (g.state === 'failed' ? ' bad' : waiting ? ' warn' : '');
  let text = g.state.replace('_', ' ') + ' · primary ' + (g.primary_lsn || '—') + ' · replica ' +
    (g.replay_lsn || '—') + ' · lag ' + bytes(g.lag_bytes) + ' (max ' + bytes(g.max_lag_bytes) + ')';
  if (g.promote) {
    text += g.promoted ? ' · promoted in ' + g.promote_ms + ' ms'
      : g.state === 'promoting' ? ' · promoting the replica' : ' · will promote the replica';
  }
  if (g.max_hold_exceeded_ms != null) text += ' · ' + g.max_hold_exceeded_ms + ' ms past max_hold';
  if (g.error) text += ' · ' + g.error;
  $('gate-text').textContent = text;
  const lag = g.lag || [];
  const maxMs = Math.max(1, ...lag.map((p) => p.ms));
  const maxB = Math.max(1, ...lag.map((p) => p.bytes));
  $('gate-lag').querySelector('polyline').setAttribute('points',
    lag.map((p) => fixed(p.ms / maxMs * 300, 1) + ',' + fixed(39 - p.bytes / maxB * 38, 1)).join(' '));
}

function renderRollout(s) {
  const r = s.rollout;
  $('rollout-none').hidden = !!r;
  const steps = r ? r.steps : [];
  $('steps').replaceChildren(...steps.map((p, i) => {
    const n = i + 1;
    const cls = n < r.step ? 'done' : n === r.step ? 'current' : '';
    const li = el('li', { class: cls, text: pct(p) + (n === r.step ? ' (current)' : n < r.step ? ' ✓' : '') });
    if (n === r.step) li.setAttribute('aria-current', 'step');
    return li;
  }));
  renderClocks();
}

// Countdowns move every second between updates.
function renderClocks() {
  const s = state.status;
  if (!s) return;
  const r = s.rollout;
  let text = '';
  if (r) {
    text = 'Rollout to ' + r.to + ', step ' + r.step + ' of ' + r.steps.length + ' (' + pct(r.percent) + '). ';
    if (r.paused) text += 'Paused.';
    else if (r.next_step_at) text += 'Next step in ' + duration(Date.parse(r.next_step_at) - Date.now()) + '.';
    else text += 'Waiting for promote.';
  }
  $('countdown').textContent = text;
  $('bake').textContent = s.bake ? 'Baking ' + s.bake.pool + ': ' + duration(Date.parse(s.bake.until) - Date.now()) + ' left, automatic rollback armed.' : '';
  if (s.hold) renderHold(s);
}

// ---- pools and charts -------------------------------------------------

const SERIES = [
  { key: 'rps', name: 'requests/s', fmt: (v) => fixed(v, 1) },
  { key: 'error_rate', name: 'error rate', fmt: (v) => fixed(v * 100, 2) + '%' },
  { key: 'p99_ms', name: 'p99', fmt: (v) => (v == null ? '—' : fixed(v, 1) + ' ms') },
];
const SVG = 'http://www.w3.org/2000/svg';

function poolCard(pool) {
  let card = $('pool-' + pool);
  if (card) return card;
  card = el('article', { class: 'card pool', id: 'pool-' + pool, 'aria-labelledby': 'h-pool-' + pool });
  const charts = el('div', { class: 'charts pool-' + pool + '-chart' });
  for (const s of SERIES) {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 900 100');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', pool + ' ' + s.name + ', last 15 minutes');
    svg.id = 'chart-' + pool + '-' + s.key;
    const base = document.createElementNS(SVG, 'line');
    base.setAttribute('x1', '0'); base.setAttribute('x2', '900');
    base.setAttribute('y1', '99'); base.setAttribute('y2', '99');
    svg.append(base, document.createElementNS(SVG, 'polyline'));
    charts.append(el('div', { class: 'chart' },
      el('div', { class: 'label' }, el('span', { text: s.name + ' (15 min)' }),
        el('span', {}, 'now ', el('b', { id: 'now-' + pool + '-' + s.key, text: '—' }),
          ' · max ', el('span', { id: 'max-' + pool + '-' + s.key, text: '—' }))),
      svg));
  }
  card.append(
    el('h3', { id: 'h-pool-' + pool }, poolLabel(pool), el('span', { id: 'role-' + pool, class: 'muted' })),
    el('p', { id: 'figures-' + pool }),
    charts,
    el('div', { class: 'scroll' }, el('table', {},
      el('thead', {}, el('tr', {}, ...['Endpoint', 'State', 'In flight', 'Last check'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', { id: 'endpoints-' + pool }))),
  );
  $('pools').append(card);
  return card;
}

const STATE_MARK = { healthy: '✓', unhealthy: '✗', ejected: '⊘', draining: '↓', unknown: '?' };

function renderPools(s) {
  for (const pool of POOLS) {
    poolCard(pool);
    const p = s.pools[pool];
    const role = pool === s.live ? ' — live' : ' — candidate';
    $('role-' + pool).textContent = role + ', ' + pct(s.weights[pool]) + ' of traffic';
    const st = p.stats;
    $('figures-' + pool).textContent = p.healthy + ' of ' + p.endpoints.length + ' endpoints healthy · ' +
      p.inflight + ' in flight · over the rollback window: ' + fixed(st.rps, 1) + ' req/s, ' +
      fixed(st.error_rate * 100, 2) + '% errors, p99 ' + (st.p99_ms == null ? '—' : fixed(st.p99_ms, 1) + ' ms') +
      (p.failing_over ? ' · FAILING OVER to the other pool' : '') +
      (p.draining ? ' · draining' : '');
    $('endpoints-' + pool).replaceChildren(...p.endpoints.map((e) => el('tr', {},
      el('td', { text: e.address }),
      el('td', { class: 'state-' + e.state, text: (STATE_MARK[e.state] || '') + ' ' + e.state + (e.probation ? ' (probation)' : '') }),
      el('td', { text: String(e.inflight) }),
      el('td', { text: e.last_check ? clock(e.last_check) + (e.last_check_result ? ' · ' + e.last_check_result : '') : '—' }),
    )));
  }
}

function addSample(v) {
  state.samples.push(v);
  trimSamples();
  renderCharts();
}

function trimSamples() {
  const newest = state.samples.length ? state.samples[state.samples.length - 1].time : 0;
  while (state.samples.length && (state.samples[0].time < newest - HISTORY_MS || state.samples.length > 900)) state.samples.shift();
}

async function loadHistory() {
  try {
    const h = await api('GET', '/api/v1/history');
    if (!h.ok) return;
    state.samples = h.data.samples;
    trimSamples();
    renderCharts();
  } catch (_) { /* the next round tries again */ }
}

// Draw [time ms, value] points as the last 15 minutes up to `newest`
// (one x unit a second); returns the largest value.
function drawLine(svg, pts, newest) {
  const max = pts.reduce((m, p) => Math.max(m, p[1]), 0);
  const top = max > 0 ? max * 1.1 : 1;
  const line = pts.map((p) => {
    const x = 900 - (newest - p[0]) / 1000;
    const y = 99 - (p[1] / top) * 95;
    return x.toFixed(1) + ',' + y.toFixed(1);
  }).join(' ');
  svg.querySelector('polyline').setAttribute('points', line);
  return max;
}

function renderCharts() {
  if (!state.samples.length) return;
  const newest = state.samples[state.samples.length - 1].time;
  for (const pool of POOLS) {
    poolCard(pool);
    for (const s of SERIES) {
      const pts = state.samples.map((x) => [x.time, x[pool][s.key]]).filter((p) => p[1] != null);
      const max = drawLine($('chart-' + pool + '-' + s.key), pts, newest);
      const last = state.samples[state.samples.length - 1][pool][s.key];
      $('now-' + pool + '-' + s.key).textContent = s.fmt(last);
      $('max-' + pool + '-' + s.key).textContent = pts.length ? s.fmt(max) : '—';
    }
  }
}

// ---- fleet and mirror -------------------------------------------------

function renderFleet(f) {
  $('fleet').hidden = !f;
  if (!f) return;
  $('fleet-summary').textContent = 'This member: ' + f.member_id + ' · etcd ' +
    (f.connected ? 'connected' : 'OUT OF TOUCH') + ' · leader: ' + (f.leader || 'none') +
    ' · ' + f.members.length + ' member' + (f.members.length === 1 ? '' : 's');
  $('fleet-members').replaceChildren(...f.members.map((m) => el('tr', {},
    el('td', { text: m.id + (m.id === f.leader ? ' (leader)' : '') + (m.id === f.member_id ? ' (this one)' : '') }),
    el('td', { text: m.admin }),
    el('td', { text: String(m.generation) }),
    el('td', { text: (m.connected ? '✓ connected' : '✗ out of touch') + (m.fenced ? ', writes fenced' : '') }),
    el('td', { text: m.healthy.blue + ' / ' + m.healthy.green }),
    el('td', { text: fixed(m.rps, 1) }),
    el('td', { text: fixed(m.error_rate * 100, 2) + '%' }),
    el('td', { text: clock(m.last_seen) }),
  )));
}

// status.mirror (SPEC.md section 12): shown once mirroring is on or has
// sent copies.
function renderMirror(m) {
  const copies = m ? m.match + m.mismatch + m.error + m.dropped : 0;
  const show = !!m && (m.enabled || copies > 0);
  $('mirror').hidden = !show;
  if (!show) return;
  $('mirror-summary').textContent = m.enabled
    ? 'Copying ' + m.percent + '% of ' + m.methods.join(', ') + ' requests to the candidate, ' + m.to +
      (m.compare ? ', and comparing its answers with the live ones.' : ' (answers not compared).')
    : 'Mirroring is off; the figures are those of earlier copies.';
  const limit = m.max_mismatch_rate;
  $('mirror-refusing').hidden = !m.refusing;
  $('mirror-refusing').textContent = 'Mismatch rate above max_mismatch_rate (' + fixed(limit * 100, 2) +
    '%): a rollout or switch to ' + m.to + ' is refused.';
  const rate = m.mismatch_rate == null ? '—' : fixed(m.mismatch_rate * 100, 2) + '%';
  const facts = [
    ['Mismatch rate (last ' + Math.round(m.window_s) + ' s)', rate + ' of ' + m.window_compared + ' compared'],
    ['Limit', limit == null ? 'none' : fixed(limit * 100, 2) + '%' + (m.refusing ? ' ✗ exceeded' : ' ✓ within')],
    ['Copies since start', m.match + ' match · ' + m.mismatch + ' mismatch · ' + m.error + ' error · ' + m.dropped + ' dropped'],
    ['In flight', m.inflight + ' of ' + m.max_inflight],
    ['Candidate p99 (copies)', m.p99_ms == null ? '—' : fixed(m.p99_ms, 1) + ' ms'],
  ];
  $('mirror-facts').replaceChildren(...facts.map(([k, v]) => el('div', {}, el('dt', { text: k }), el('dd', { text: v }))));
  $('mirror-noise').textContent = m.learned_noise && m.learned_noise.length
    ? 'Learned noise, left out of comparisons: ' + m.learned_noise.join(', ') : '';
  if (m.mismatch_rate != null) {
    state.mirrorRates.push([Date.now(), m.mismatch_rate]);
    while (state.mirrorRates.length > 900) state.mirrorRates.shift();
  }
  const pts = state.mirrorRates;
  const max = drawLine($('chart-mirror'), pts, Date.now());
  $('now-mirror').textContent = rate;
  $('max-mirror').textContent = pts.length ? fixed(max * 100, 2) + '%' : '—';
}

async function loadMirrorDiffs() {
  const r = await api('GET', '/api/v1/mirror/diffs?limit=10');
  if (!r.ok) {
    $('mirror-diffs').replaceChildren(el('li', { text: 'diffs: ' + r.status + (r.data && r.data.error ? ' ' + r.data.error.message : '') }));
    return;
  }
  const diffs = r.data.diffs;
  $('mirror-diffs').replaceChildren(...(diffs.length ? diffs.map((x) => el('li', { class: 'diff' },
    el('span', { class: 'when', text: clock(x.time) + ' · ' }), el('span', { class: 'kind', text: x.request }),
    el('table', {}, el('thead', {}, el('tr', {}, ...['Field', 'Live', 'Candidate'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, ...x.fields.map((f) => el('tr', {}, el('td', { text: f.field }), el('td', { text: f.live }), el('td', { text: f.candidate })))))))
    : [el('li', { text: 'No mismatch kept.' })]));
}

// ---- events -----------------------------------------------------------

function addEvent(e) {
  if (state.events.some((x) => x.id === e.id)) return;
  state.events.unshift(e);
  state.events.length = Math.min(state.events.length, 200);
  renderEvents();
}

// The shapes events carry, in words: weights, a rollout, an endpoint.
function describeValue(v) {
  if (v == null) return '—';
  if (typeof v !== 'object') return String(v);
  if ('blue' in v && 'green' in v && Object.keys(v).length === 2) return 'blue ' + pct(v.blue) + ' / green ' + pct(v.green);
  if (Array.isArray(v.steps)) {
    return 'rollout to ' + v.to + ', step ' + v.step + ' of ' + v.steps.length + ' (' + pct(v.percent) + ')' +
      (v.step_interval ? ' every ' + v.step_interval : '') + (v.paused ? ', paused' : '');
  }
  if (v.endpoint) return v.pool + ' endpoint ' + v.endpoint + (v.state ? ': ' + v.state : '');
  return Object.entries(v).filter(([, x]) => x != null)
    .map(([k, x]) => k.replace(/_/g, ' ') + ' ' + (typeof x === 'object' ? JSON.stringify(x) : x)).join(', ');
}

function figure(v) {
  if (v == null) return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Math.round(v * 10000) / 10000);
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function evidence(stats) {
  const rows = Object.entries(stats).map(([k, v]) => el('tr', {},
    el('th', { scope: 'row', text: k.replace(/_/g, ' ') }),
    el('td', { text: figure(v) })));
  return el('details', { class: 'evidence', open: '' }, el('summary', { text: 'evidence' }), el('table', {}, el('tbody', {}, ...rows)));
}

function renderEvents() {
  $('timeline').replaceChildren(...state.events.map((e) => {
    const cls = (e.actor === 'auto' ? 'auto ' : '') + (e.kind === 'rollback' ? 'rollback' : '');
    const li = el('li', { class: cls, 'data-kind': e.kind, 'data-id': String(e.id) },
      el('span', { class: 'when', text: clock(e.time) + ' · #' + e.id + ' · ' }),
      el('span', { class: 'kind', text: e.kind.replace(/_/g, ' ') }),
      el('span', { text: ' by ' + e.actor + (e.member ? ' (' + e.member + ')' : '') }));
    const detail = [];
    if (e.from != null && e.to != null) detail.push(describeValue(e.from) + ' → ' + describeValue(e.to));
    else if (e.to != null) detail.push(describeValue(e.to));
    else if (e.from != null) detail.push('from ' + describeValue(e.from));
    if (e.weights) detail.push('weights ' + describeValue(e.weights));
    if (detail.length) li.append(el('div', { text: detail.join(' · ') }));
    if (e.reason) li.append(el('div', { class: 'reason', text: e.reason }));
    if (e.stats && typeof e.stats === 'object') li.append(evidence(e.stats));
    return li;
  }));
}

// ---- actions ----------------------------------------------------------

function withGeneration(body) {
  const b = body || {};
  if (state.status) b.if_generation = state.status.generation;
  return b;
}

const ACTIONS = {
  weights() {
    const g = Number($('weight-green').value);
    return { ask: 'Set the weights to blue ' + (100 - g) + '% and green ' + g + '%?', method: 'PUT', path: '/api/v1/weights', body: { blue: 100 - g, green: g } };
  },
  'switch-blue': () => ({ ask: 'Switch all traffic to blue now?', method: 'POST', path: '/api/v1/switch', body: { to: 'blue' } }),
  'switch-green': () => ({ ask: 'Switch all traffic to green now?', method: 'POST', path: '/api/v1/switch', body: { to: 'green' } }),
  rollout() {
    const body = { to: $('rollout-to').value };
    const steps = $('rollout-steps').value.trim();
    if (steps) body.steps = steps.split(/[\s,]+/).filter(Boolean).map(Number);
    const every = $('rollout-interval').value.trim();
    if (every) body.step_interval = every;
    return { ask: 'Start a rollout to ' + body.to + (body.steps ? ' in steps ' + body.steps.join(', ') : '') + (every ? ' every ' + every : '') + '?', method: 'POST', path: '/api/v1/rollout', body };
  },
  pause: () => ({ ask: 'Pause the rollout?', method: 'POST', path: '/api/v1/rollout/pause' }),
  resume: () => ({ ask: 'Resume the rollout?', method: 'POST', path: '/api/v1/rollout/resume' }),
  promote: () => ({ ask: 'Promote: go to the next step now?', method: 'POST', path: '/api/v1/rollout/promote' }),
  abort: () => ({ ask: 'Abort the rollout and roll back?', method: 'POST', path: '/api/v1/rollout/abort' }),
  rollback() {
    const reason = $('rollback-reason').value.trim();
    return { ask: 'Roll everything back to the previous live pool now?', method: 'POST', path: '/api/v1/rollback', body: reason ? { reason } : {} };
  },
  rearm: () => ({ ask: 'Clear the rollback lock?', method: 'POST', path: '/api/v1/rearm' }),
};

let pending = null;

function confirmAction(name) {
  pending = ACTIONS[name]();
  pending.name = name;
  pending.body = withGeneration(pending.body);
  $('confirm-text').textContent = pending.ask;
  $('confirm').showModal();
  $('confirm-ok').focus();
}

async function doPending() {
  const a = pending;
  pending = null;
  $('confirm').close();
  if (!a) return;
  const r = $('result');
  r.className = 'result';
  r.textContent = a.name + ': sending…';
  try {
    const res = await api(a.method, a.path, a.body);
    if (res.ok) {
      if (a.name === 'weights') state.weightDirty = false;
      r.className = 'result ok';
      r.textContent = a.name + ': ' + res.status + ' done' + summary(res.data);
      if (res.data && res.data.generation != null && state.mode !== 'live') pollOnce();
    } else {
      const err = res.data && res.data.error;
      r.className = 'result bad';
      r.textContent = a.name + ': ' + res.status + ' ' + (err ? err.code + ': ' + err.message : 'refused');
    }
  } catch (e) {
    r.className = 'result bad';
    r.textContent = a.name + ': the proxy did not answer (' + e.message + ')';
  }
}

function summary(d) {
  if (!d) return '';
  const parts = [];
  if (d.phase) parts.push('phase ' + d.phase);
  if (d.weights) parts.push('weights ' + describeValue(d.weights));
  if (d.held_requests != null) parts.push(d.held_requests + ' writes held');
  if (d.hold_ms != null) parts.push('hold ' + d.hold_ms + ' ms');
  if (d.outcome) parts.push(String(d.outcome));
  return parts.length ? ' (' + parts.join(', ') + ')' : '';
}

// ---- start ------------------------------------------------------------

function start() {
  document.addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-action]');
    if (b) confirmAction(b.dataset.action);
  });
  $('confirm-ok').addEventListener('click', doPending);
  $('confirm-cancel').addEventListener('click', () => { pending = null; $('confirm').close(); });
  // Never submitted anywhere (the policy forbids it): the token stays here.
  $('token-form').addEventListener('submit', (ev) => { ev.preventDefault(); useToken(); });
  $('token-button').addEventListener('click', () => askToken());
  $('mirror-diffs-button').addEventListener('click', loadMirrorDiffs);
  $('weight-green').addEventListener('input', () => { state.weightDirty = true; showSlider(); });
  // Leaving the page ends its stream: Chromium otherwise keeps reading it
  // after a reload or a navigation, and each such stream keeps one of the
  // proxy's 64 places.
  window.addEventListener('pagehide', () => { if (state.streamAbort) state.streamAbort.abort(); });
  setInterval(() => { renderConnection(); renderClocks(); }, 1000);
  for (const pool of POOLS) poolCard(pool);
  run();
}

start();
