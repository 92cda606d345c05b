// posagent diagnostics console. Plain script, no dependencies: the terminal serves it with a
// CSP that allows only this file, so nothing here may use inline handlers or styles.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const S = {session: null, csrf: '', timer: 0, polls: 0, lastInput: Date.now(), status: null, params: []};

  // Labels and hints of the actions, in the order the server lists them.
  const ACTIONS = {
    'selftest': ['Run self-test', 'Every device in turn'],
    'test.print': ['Test print', 'A test page on the receipt printer'],
    'test.card': ['Read a card', 'Masked number and entry mode only'],
    'test.pinpad': ['PIN pad test', 'Text on the display and a beep'],
    'test.led': ['LED test', 'Status LED pattern'],
    'test.buzzer': ['Buzzer test', 'Buzzer pattern'],
    'test.drawer': ['Open cash drawer', 'Pulse the drawer'],
    'echo.tms': ['Echo TMS', 'Round trip to the TMS broker'],
    'echo.host': ['Echo host', 'ISO 8583 echo to the acquirer'],
    'terminal.lock': ['Lock terminal', 'Take it out of service'],
    'terminal.unlock': ['Unlock terminal', 'Back in service, sign in to the host'],
    'settle': ['Settle batch', 'Close the business day now'],
    'bundle': ['Download bundle', 'Logs and state, no secrets'],
    'params.set': ['Set parameter', ''],
    'ecr.approve': ['Approve', ''],
    'ecr.reject': ['Reject', ''],
    'audit.verify': ['Verify chain', ''],
  };
  // These have their own controls; the others get a tile in #actions.
  const OWN = new Set(['params.set', 'ecr.approve', 'ecr.reject', 'audit.verify']);
  // A second tap within a few seconds confirms these.
  const CONFIRM = new Set(['terminal.lock', 'settle', 'test.drawer']);

  // How a device's state is shown. Boards report readings as states, and a normal reading
  // need not be "ok": a dock sensor says docked or undocked, both fine. "warning" wants
  // attention soon (paper running low), "fault" stops the device, "neutral" is nothing to
  // judge (no such device, not asked yet). A state not listed is shown as a warning: the
  // console cannot tell, and red would cry wolf. Sources: board (ok, fault, absent, unknown),
  // the boards' sensors, agent/hardware (gone, error) and the printer's status.
  const DEVICE_STATES = new Map([
    ['ok', 'ok'], ['ready', 'ok'], ['connected', 'ok'], ['online', 'ok'], ['idle', 'ok'], ['closed', 'ok'],
    ['docked', 'ok'], ['undocked', 'ok'],
    ['low', 'warning'], ['paper-near-end', 'warning'],
    ['fault', 'fault'], ['error', 'fault'], ['gone', 'fault'], ['offline', 'fault'], ['paper-out', 'fault'], ['cover-open', 'fault'],
    ['absent', 'neutral'], ['unknown', 'neutral'], ['disabled', 'neutral'],
  ]);
  const LEVEL_CLASS = {ok: 'ok', warning: 'warn', fault: 'bad', neutral: ''};
  function deviceLevel(state) { return state ? DEVICE_STATES.get(String(state).toLowerCase()) || 'warning' : 'neutral'; }

  // ---- DOM helpers -------------------------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v === true ? '' : v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function setText(id, v) { const e = $(id); if (e) e.textContent = v === undefined || v === null || v === '' ? '—' : String(v); }
  function kv(id, rows) {
    const dl = $(id);
    dl.replaceChildren();
    for (const [k, v] of rows) {
      if (v === undefined || v === null || v === '') continue;
      dl.append(el('dt', {text: k}), el('dd', {text: String(v)}));
    }
  }
  function pick(o, ...names) { for (const n of names) if (o && o[n] !== undefined) return o[n]; return undefined; }

  // ---- formatting --------------------------------------------------------------------------
  function bytes(n) {
    if (!n && n !== 0) return '';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + u[i];
  }
  function dur(s) {
    s = Math.max(0, Math.floor(s || 0));
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    return m + 'm ' + (s % 60) + 's';
  }
  function when(t) {
    if (!t || t.startsWith('0001-')) return '';
    const d = new Date(t);
    return isNaN(d) ? t : d.toLocaleString();
  }
  function clock(t) {
    const d = new Date(t);
    return isNaN(d) ? '' : d.toLocaleTimeString();
  }
  function money(minor, cur) { return (Number(minor || 0) / 100).toFixed(2) + (cur ? ' ' + cur : ''); }

  // ---- API ---------------------------------------------------------------------------------
  class APIError extends Error {
    constructor(status, body) {
      super((body && body.message) || ('HTTP ' + status));
      this.status = status; this.code = body && body.error; this.body = body || {};
    }
  }
  // bg marks a refresh the console made on its own timer: the server then checks the session
  // without counting it as activity, so its idle timeout still ends a page nobody uses.
  async function api(method, path, body, bg) {
    const opt = {method, headers: {}, credentials: 'same-origin', cache: 'no-store'};
    if (bg) opt.headers['X-Diag-Background'] = '1';
    if (method === 'POST') {
      opt.headers['X-CSRF-Token'] = S.csrf;
      if (body !== undefined) { opt.headers['Content-Type'] = 'application/json'; opt.body = JSON.stringify(body); }
    }
    const r = await fetch(path, opt);
    const ct = r.headers.get('Content-Type') || '';
    const data = ct.includes('application/json') ? await r.json().catch(() => null) : null;
    if (!r.ok) {
      const e = new APIError(r.status, data);
      if (r.status === 401 && path !== '/api/login') signedOut(e.code === 'session_expired' ? 'Your session has ended. Sign in again.' : 'Please sign in.');
      throw e;
    }
    return data;
  }

  // ---- sign-in -----------------------------------------------------------------------------
  function busy(btn, on) {
    if (!btn) return;
    btn.classList.toggle('busy', on);
    btn.disabled = on;
  }
  function showLogin(msg) {
    stopPolling();
    S.session = null; S.csrf = '';
    $('app').hidden = true; $('nav').hidden = true; $('who-box').hidden = true;
    $('page-login').hidden = false;
    const err = $('login-error');
    err.textContent = msg || ''; err.hidden = !msg;
  }
  function signedOut(msg) { if (S.session) showLogin(msg); }

  async function login(ev) {
    ev.preventDefault();
    const token = $('login-token').value.trim(), password = $('login-password').value;
    const err = $('login-error');
    if (!token && !password) { err.textContent = 'Enter a technician token or the administrator password.'; err.hidden = false; return; }
    err.hidden = true;
    const btn = $('login-submit');
    busy(btn, true);
    try {
      const s = await api('POST', '/api/login', token ? {token} : {password});
      $('login-token').value = ''; $('login-password').value = '';
      start(s);
    } catch (e) {
      let m = e.message;
      if (e.code === 'locked_out' && e.body.until) m += ' until ' + when(e.body.until);
      err.textContent = m; err.hidden = false;
    } finally { busy(btn, false); }
  }

  async function logout(msg) {
    try { await api('POST', '/api/logout'); } catch (e) { /* signed out either way */ }
    showLogin(typeof msg === 'string' ? msg : 'Signed out.');
  }

  function start(s) {
    S.session = s; S.csrf = s.csrf; S.lastInput = Date.now();
    $('page-login').hidden = true;
    $('app').hidden = false; $('nav').hidden = false; $('who-box').hidden = false;
    $('whoami').textContent = (s.name || s.technician) + ' · ' + s.role;
    $('whoami').title = s.technician + ' (' + s.method + '), session until ' + when(s.expires);
    buildActions(s.actions || []);
    refreshAll();
    startPolling();
    // A reload keeps the section the technician was looking at.
    const target = location.hash && document.getElementById(location.hash.slice(1));
    if (target) requestAnimationFrame(() => target.scrollIntoView({behavior: 'instant'}));
  }

  // ---- polling -----------------------------------------------------------------------------
  function stopPolling() { clearTimeout(S.timer); S.timer = 0; }
  function startPolling() {
    stopPolling();
    const every = (S.session && S.session.pollIntervalMs) || 1000;
    const tick = async () => {
      if (!S.session) return;
      if (idleTooLong()) { await logout('Signed out after a period without activity.'); return; }
      if (document.visibilityState === 'visible') {
        S.polls++;
        await refreshStatus(true);
        if (S.polls % 10 === 0) refreshHistory(true);
        if (S.polls % 5 === 0) refreshLogs(true);
        if (S.polls % 15 === 0) refreshAudit(true);
      }
      if (S.session) S.timer = setTimeout(tick, every);
    };
    S.timer = setTimeout(tick, every);
  }
  // The server ends a session after the policy's idle time without a request of the
  // technician (the timed polls do not count); the console ends it too, on the same clock of
  // taps, keys and scrolls, so the page goes back to sign-in rather than sit on a dead session.
  function idleTooLong() {
    const idle = S.session && S.session.idleTimeoutSec;
    return idle > 0 && Date.now() - S.lastInput > idle * 1000;
  }
  for (const t of ['pointerdown', 'keydown', 'wheel', 'touchstart']) {
    addEventListener(t, () => { S.lastInput = Date.now(); }, {passive: true});
  }
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && S.session) { refreshStatus(); refreshHistory(); }
  });

  function refreshAll() { refreshStatus(); refreshHistory(); refreshLogs(); refreshAudit(); }

  async function refreshStatus(bg) {
    try {
      const st = await api('GET', '/api/status', undefined, bg);
      S.status = st;
      renderStatus(st);
      $('live').className = 'live on';
    } catch (e) {
      if (e.status !== 401) $('live').className = 'live err';
    }
  }

  // ---- status ------------------------------------------------------------------------------
  function renderStatus(st) {
    setText('status-time', 'at ' + clock(st.time));
    const id = st.identity || {};
    setText('status-serial', id.serial);
    kv('identity', [['Model', [id.vendor, id.model].filter(Boolean).join(' ')], ['Board', id.board],
      ['Device id', id.deviceId], ['Terminal id', id.terminalId], ['Merchant id', id.merchantId], ['Merchant', id.merchantName]]);

    const tms = st.tms || {}, host = st.host || {};
    const ts = $('tms-state');
    ts.textContent = tms.connected ? 'connected' : 'disconnected';
    ts.className = 'pill ' + (tms.connected ? 'ok' : 'bad');
    const hs = $('host-state');
    hs.textContent = host.configured ? (host.state || 'unknown') : 'not configured';
    hs.className = 'pill ' + (!host.configured ? '' : host.state === 'normal' ? 'ok' : host.state === 'locked' ? 'bad' : 'warn');
    kv('conn-detail', [['Broker', tms.broker], ['Connected since', tms.connected ? when(tms.connectedAt) : ''],
      ['Connects / failures', (tms.connects || 0) + ' / ' + (tms.failures || 0)], ['Last error', tms.lastError],
      ['Host', host.address ? host.address + (host.test ? ' (test)' : '') : ''],
      ['Reversals owed', host.reversals || ''], ['Held for manual handling', host.held || '']]);

    const ag = st.agent || {}, ota = st.ota || {};
    setText('status-version', ag.version);
    const comps = Object.entries(ota.components || {}).map(([k, v]) => k + ' ' + v).join(', ');
    kv('software', [['Commit', ag.commit], ['Target', ag.target], ['Slot', ag.slot || ota.slot], ['Uptime', dur(ag.uptimeS)],
      ['Last trial', ag.lastTrial || ota.lastTrial], ['Components', comps], ['Configuration', 'version ' + ((st.config || {}).version || 0)]]);

    const stage = ota.stage || '';
    const pct = Math.max(0, Math.min(100, ota.progress || 0));
    setText('ota-stage', stage || 'idle');
    $('ota-pct').textContent = stage ? pct + ' %' : '';
    const bar = $('ota-bar');
    bar.value = stage ? pct : 0;
    bar.setAttribute('data-stage', stage);
    kv('ota-detail', [['Job', ota.job]]);

    renderDevices($('hardware'), (st.hardware || []).map((d) => {
      const level = deviceLevel(d.state);
      return {name: d.name, kind: d.kind, detail: d.detail, label: d.state, cls: LEVEL_CLASS[level],
        attrs: {'data-device': d.name, 'data-state': d.state, 'data-level': level}};
    }));

    const r = st.resources || {};
    kv('resources', [['Heap', bytes(r.heapBytes)], ['Goroutines', r.goroutines],
      ['Disk free', r.diskTotal ? bytes(r.diskFree) + ' of ' + bytes(r.diskTotal) : '']]);
    const dm = $('disk-meter');
    dm.hidden = !r.diskTotal;
    if (r.diskTotal) { dm.value = 1 - r.diskFree / r.diskTotal; dm.title = 'disk used'; }
    $('cpu-now').textContent = r.cpuPercent !== undefined ? r.cpuPercent.toFixed(1) + ' %' : '';
    $('rss-now').textContent = bytes(r.rssBytes);

    const b = st.batch || {};
    kv('batch', [['Batch', b.number], ['Transactions', b.count], ['Settling', b.settling ? 'yes' : '']]);
    const tt = $('totals');
    tt.replaceChildren();
    if ((b.totals || []).length) {
      tt.append(el('tr', {}, el('th', {text: 'Currency'}), el('th', {text: 'Sales'}), el('th', {text: 'Refunds'})));
      for (const t of b.totals) {
        tt.append(el('tr', {}, el('td', {text: t.currency}),
          el('td', {class: 'num', text: t.salesCount + ' · ' + money(t.salesAmount)}),
          el('td', {class: 'num', text: t.refundCount + ' · ' + money(t.refundAmount)})));
      }
    }

    const ob = st.outbox || {};
    const streams = Object.entries(ob.streams || {}).map(([k, v]) => k + ': ' + v).join(', ');
    kv('outbox', [['Records', ob.records], ['Size', bytes(ob.bytes)], ['Alarm', ob.alarm ? 'queue nearly full' : ''], ['Streams', streams]]);

    const keys = $('keys');
    keys.replaceChildren();
    if ((st.keys || []).length) {
      keys.append(el('tr', {}, el('th', {text: 'Key'}), el('th', {text: 'Alg'}), el('th', {text: 'KCV'})));
      for (const k of st.keys) keys.append(el('tr', {title: when(k.loadedAt)}, el('td', {text: k.role}), el('td', {text: k.alg}), el('td', {class: 'mono', text: k.kcv})));
    } else keys.append(el('tr', {}, el('td', {class: 'muted', text: 'No keys loaded'})));
    const lic = st.license || {};
    kv('license', [['Licence', lic.state + (lic.id ? ' (' + lic.id + ')' : '')], ['Expires', when(lic.expires)],
      ['Features', (lic.features || []).join(', ')], ['Reason', lic.reason]]);

    const ecr = st.ecr || {};
    kv('ecr', [['Listens on', ecr.listen || 'off'], ['Protected mode', ecr.protected ? 'on' : 'off'], ['Waiting approval', (ecr.pending || []).length]]);
    const pend = $('ecr-pending');
    pend.replaceChildren(...(ecr.pending || []).map((p) => el('li', {text: (p.name || p.id) + (p.remote ? ' from ' + p.remote : '') + ', ' + when(p.requested)})));
    renderECRForm(ecr.pending || []);

    S.params = st.params || [];
    kv('params', S.params.map((p) => [p.name, p.value + (p.pending ? ' (at next start)' : '')]));
    renderParamsForm();

    const svc = st.services || [];
    $('services-card').hidden = !svc.length;
    $('services').replaceChildren(...svc.map((s) => el('li', {text: s.name + ': ' + s.state + (s.restarts ? ', ' + s.restarts + ' restarts' : '') + (s.lastError ? ' — ' + s.lastError : '')})));
  }

  function renderDevices(ul, items) {
    ul.replaceChildren(...items.map((d) => el('li', d.attrs,
      el('span', {class: 'dot ' + d.cls}),
      el('div', {class: 'grow'}, el('div', {class: 'name', text: d.name + (d.kind && d.kind !== d.name ? ' · ' + d.kind : '')}),
        d.detail ? el('div', {class: 'detail', text: d.detail}) : null),
      el('span', {class: 'pill ' + d.cls, text: d.label}))));
  }

  // ---- charts ------------------------------------------------------------------------------
  async function refreshHistory(bg) {
    try {
      const h = await api('GET', '/api/history', undefined, bg);
      chart($('chart-cpu'), h.map((s) => s.cpuPercent || 0), (v) => v.toFixed(0) + ' %', 10);
      chart($('chart-rss'), h.map((s) => s.rssBytes || 0), bytes, 0);
    } catch (e) { /* the next poll retries */ }
  }
  function chart(box, vals, fmt, floor) {
    const W = 300, H = 70, pad = 4;
    box.replaceChildren();
    for (const y of [H / 3, 2 * H / 3]) box.append(svg('line', {class: 'grid-line', x1: 0, x2: W, y1: y, y2: y}));
    if (vals.length < 2) {
      const t = svg('text', {class: 'empty', x: 8, y: H / 2 + 4});
      t.textContent = 'collecting samples…';
      box.append(t);
      return;
    }
    const max = Math.max(floor || 0, ...vals) * 1.1 || 1;
    const pts = vals.map((v, i) => [i * W / (vals.length - 1), H - pad - (v / max) * (H - 2 * pad)]);
    const line = pts.map((p) => p[0].toFixed(1) + ',' + p[1].toFixed(1)).join(' ');
    box.append(svg('polygon', {class: 'area', points: '0,' + H + ' ' + line + ' ' + W + ',' + H}));
    box.append(svg('polyline', {class: 'line', points: line}));
    const title = svg('title');
    title.textContent = 'max ' + fmt(Math.max(...vals)) + ', last ' + fmt(vals[vals.length - 1]);
    box.append(title);
  }

  // ---- events, logs, audit -----------------------------------------------------------------
  async function refreshLogs(bg) {
    try {
      const [ev, logs] = await Promise.all([api('GET', '/api/events?n=100', undefined, bg), api('GET', '/api/logs?n=200', undefined, bg)]);
      $('events').replaceChildren(...ev.slice().reverse().map((e) => el('li', {'data-kind': e.kind},
        el('span', {class: 't', text: clock(e.time)}), el('span', {class: 'k', text: e.kind}),
        el('span', {class: 'f', text: Object.entries(e.fields || {}).map(([k, v]) => k + '=' + (typeof v === 'object' ? JSON.stringify(v) : v)).join(' ')}))));
      if (!ev.length) $('events').append(el('li', {class: 'muted', text: 'No events yet.'}));
      const pre = $('logs');
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.textContent = logs.join('\n') || 'No log lines.';
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    } catch (e) { /* the next poll retries */ }
  }

  async function refreshAudit(bg) {
    try {
      const es = await api('GET', '/api/audit?n=100', undefined, bg);
      $('audit-list').replaceChildren(...es.slice().reverse().map((e) => el('li', {'data-seq': e.seq, 'data-outcome': e.outcome},
        el('span', {class: 'seq', text: '#' + e.seq}),
        el('span', {class: 't', text: when(e.time)}),
        el('span', {class: 'a', text: e.action}), ' ',
        el('span', {text: e.outcome + ' · ' + e.source + (e.actor ? ' · ' + e.actor : '')}),
        el('div', {class: 'muted small', text: Object.entries(e.fields || {}).map(([k, v]) => k + '=' + v).join(' ')}))));
    } catch (e) { /* the next poll retries */ }
  }

  // ---- actions -----------------------------------------------------------------------------
  function buildActions(allowed) {
    const box = $('actions');
    box.replaceChildren();
    const can = new Set(allowed);
    for (const a of allowed) {
      if (OWN.has(a)) continue;
      const [label, hint] = ACTIONS[a] || [a, ''];
      const btn = el('button', {type: 'button', class: 'btn' + (a === 'selftest' ? ' primary' : ''), 'data-action': a},
        el('span', {class: 'spin', 'aria-hidden': 'true'}), el('span', {class: 'label', text: label}));
      const tile = el('div', {class: 'act'}, btn, hint ? el('span', {class: 'hint', text: hint}) : null);
      if (a === 'test.card') {
        tile.append(el('label', {}, 'Wait', el('input', {id: 'card-timeout', type: 'number', min: 5, max: 120, value: 30}), 's'));
      }
      box.append(tile);
    }
    $('no-actions').hidden = box.children.length > 0 || can.size > 0;
    $('params-card').hidden = !can.has('params.set');
    $('ecr-card').hidden = !(can.has('ecr.approve') || can.has('ecr.reject'));
    for (const b of document.querySelectorAll('#ecr-form button[data-action]')) b.hidden = !can.has(b.getAttribute('data-action'));
    $('audit-verify').hidden = !can.has('audit.verify');
    $('selftest-card').hidden = true;
    const res = $('action-result');
    res.textContent = 'No action run yet.';
    res.hidden = !can.size;
    res.removeAttribute('data-ok'); res.removeAttribute('data-action'); res.className = 'result';
  }

  function paramsFor(action) {
    switch (action) {
      case 'test.card': return {timeoutSec: Number(($('card-timeout') || {}).value) || 30};
      case 'ecr.approve': case 'ecr.reject': return {id: $('ecr-id').value};
      case 'params.set': {
        const choice = $('param-choice');
        return {name: $('param-name').value, value: choice.hidden ? $('param-value').value : choice.value};
      }
    }
    return undefined;
  }

  // A first tap arms a destructive action; a second within four seconds runs it.
  function armed(btn, action) {
    if (!CONFIRM.has(action)) return true;
    if (btn.classList.contains('confirm')) { clearTimeout(btn._t); btn.classList.remove('confirm'); btn.querySelector('.label').textContent = ACTIONS[action][0]; return true; }
    btn.classList.add('confirm');
    const label = btn.querySelector('.label');
    label.textContent = 'Tap again to confirm';
    btn._t = setTimeout(() => { btn.classList.remove('confirm'); label.textContent = ACTIONS[action][0]; }, 4000);
    return false;
  }

  async function runAction(btn) {
    const action = btn.getAttribute('data-action');
    if (!action || btn.disabled || !armed(btn, action)) return;
    const res = $('action-result');
    const name = (ACTIONS[action] || [action])[0];
    res.removeAttribute('data-ok'); res.removeAttribute('data-action');
    res.className = 'result running';
    res.textContent = name + ': running…';
    busy(btn, true);
    let ok = false, text = '';
    try {
      if (action === 'bundle') {
        text = await download();
        ok = true;
      } else {
        const r = await api('POST', '/api/actions/' + encodeURIComponent(action), paramsFor(action));
        ok = !!r.ok;
        text = describe(action, r);
        afterAction(action, r);
      }
    } catch (e) {
      text = e.message;
    } finally { busy(btn, false); }
    res.className = 'result';
    res.textContent = (ok ? '✓ ' : '✗ ') + name + ' — ' + text;
    res.setAttribute('data-action', action);
    res.setAttribute('data-ok', ok ? 'true' : 'false');
    if (action === 'audit.verify') $('audit-verify-result').textContent = (ok ? '✓ ' : '✗ ') + text;
  }

  function describe(action, r) {
    const x = r.result || {};
    if (action === 'selftest') {
      const rs = pick(x, 'results', 'Results') || [];
      const n = (k) => rs.filter(k).length;
      const summary = n((d) => pick(d, 'ok', 'OK') && !pick(d, 'skipped', 'Skipped')) + ' passed, ' +
        n((d) => pick(d, 'skipped', 'Skipped')) + ' skipped, ' + n((d) => !pick(d, 'ok', 'OK') && !pick(d, 'skipped', 'Skipped')) + ' failed';
      return (r.ok ? 'passed: ' : (r.error ? r.error + ': ' : 'failed: ')) + summary;
    }
    if (!r.ok) return r.error || 'failed';
    if (x.rttMs !== undefined) return 'round trip ' + x.rttMs + ' ms';
    if (x.pan) return 'card ' + x.pan + (x.entryMode ? ' (' + x.entryMode + ')' : '');
    if (action === 'audit.verify') return x.count + ' entries verify (#' + x.first + '–#' + x.last + ')';
    const scalars = typeof x === 'object' ? Object.entries(x).filter(([, v]) => v !== null && typeof v !== 'object') : [['result', x]];
    return scalars.length ? scalars.map(([k, v]) => k + ': ' + v).join(', ') : 'done';
  }

  function afterAction(action, r) {
    if (action === 'selftest') {
      const rs = pick(r.result || {}, 'results', 'Results') || [];
      $('selftest-card').hidden = false;
      renderDevices($('selftest-results'), rs.map((d) => {
        const ok = !!pick(d, 'ok', 'OK'), skip = !!pick(d, 'skipped', 'Skipped');
        const name = pick(d, 'device', 'Device') || '?';
        return {name, kind: pick(d, 'kind', 'Kind'), detail: pick(d, 'detail', 'Detail'),
          label: skip ? 'skipped' : ok ? 'ok' : 'failed', cls: skip ? 'warn' : ok ? 'ok' : 'bad',
          attrs: {'data-device': name, 'data-ok': ok ? 'true' : 'false'}};
      }));
    }
    if (action === 'audit.verify') refreshAudit();
    refreshStatus();
  }

  async function download() {
    const r = await fetch('/api/bundle', {credentials: 'same-origin', cache: 'no-store'});
    if (!r.ok) {
      const body = await r.json().catch(() => null);
      const e = new APIError(r.status, body);
      if (r.status === 401) signedOut('Your session has ended. Sign in again.');
      throw e;
    }
    const blob = await r.blob();
    const cd = r.headers.get('Content-Disposition') || '';
    const m = /filename="([^"]+)"/.exec(cd);
    const a = el('a', {href: URL.createObjectURL(blob), download: m ? m[1] : 'posagent-diag.tar.gz'});
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    return bytes(blob.size) + ' downloaded';
  }

  // ---- parameter and registration forms -----------------------------------------------------
  function renderParamsForm() {
    const sel = $('param-name');
    const cur = sel.value;
    const names = S.params.map((p) => p.name).join('\n');
    if (sel._names !== names) {
      sel._names = names;
      sel.replaceChildren(...S.params.map((p) => el('option', {value: p.name, text: p.name})));
      if (cur) sel.value = cur;
      paramChanged();
    }
  }
  function paramChanged() {
    const p = S.params.find((x) => x.name === $('param-name').value);
    $('param-desc').textContent = p ? p.description : '';
    const choice = $('param-choice'), input = $('param-value');
    const has = !!(p && p.choices && p.choices.length);
    choice.hidden = !has; input.hidden = has;
    if (has) { choice.replaceChildren(...p.choices.map((c) => el('option', {value: c, text: c}))); choice.value = p.value; }
    else input.value = p ? p.value : '';
  }
  function renderECRForm(pending) {
    const sel = $('ecr-id');
    const ids = pending.map((p) => p.id).join('\n');
    if (sel._ids === ids) return;
    sel._ids = ids;
    const cur = sel.value;
    sel.replaceChildren(...pending.map((p) => el('option', {value: p.id, text: (p.name || p.id) + (p.remote ? ' — ' + p.remote : '')})));
    if (!pending.length) sel.append(el('option', {value: '', text: 'No request waiting'}));
    if (cur) sel.value = cur;
    for (const b of document.querySelectorAll('#ecr-form button')) b.disabled = !pending.length;
  }

  // ---- wiring ------------------------------------------------------------------------------
  async function init() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('logs-refresh').addEventListener('click', () => { refreshLogs(); refreshAudit(); });
    $('param-name').addEventListener('change', paramChanged);
    $('params-form').addEventListener('submit', (ev) => { ev.preventDefault(); runAction(ev.target.querySelector('button[data-action]')); });
    document.addEventListener('click', (ev) => {
      const btn = ev.target.closest('button[data-action]');
      if (btn && btn.type !== 'submit') runAction(btn);
    });
    try {
      start(await api('GET', '/api/session'));
    } catch (e) {
      showLogin('');
    }
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
