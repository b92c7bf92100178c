// The operator dashboard: services with live status, lifecycle buttons, log tail, live ticks and
// the settings editor. Plain JavaScript, no build step, no third-party code. Every piece of
// server data reaches the DOM through textContent (never as HTML). Protocol: docs/PROTOCOL.md.
'use strict';

(() => {
  // ---------------------------------------------------------------- constants and texts

  const TOKEN_KEY = 'orchestrator.token';
  const REQUEST_TIMEOUT_MS = 15000;
  const ACTION_TIMEOUT_MS = 60000; // a stop waits up to stop_timeout_ms before SIGKILL
  const SERVICES_REFRESH_MS = 15000; // counters (restarts, checks) change without a status event
  const LOG_REFRESH_MS = 2000;
  const PING_EVERY_MS = 20000;
  const PONG_DEADLINE_MS = 10000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const MAX_TICK_TOPICS = 100; // beyond this, subscribe to every tick (the hub allows 128 topics)
  const MAX_LOG_LINE = 4000;

  const STATUS_TEXT = {
    stopped: 'Leállítva',
    starting: 'Indul…',
    online: 'Működik',
    offline: 'Nem elérhető',
    error: 'Hiba',
  };
  const SUB_STATE_TEXT = {
    backoff: 'újraindításra vár',
    stopping: 'leállítás folyamatban',
    crash_loop: 'ismétlődő összeomlás',
    port_conflict: 'a port foglalt',
    adopted: 'átvett folyamat',
  };
  const KIND_TEXT = { managed: 'felügyelt', external: 'külső', adopted: 'átvett' };
  const ACTION_TEXT = { start: 'Indítás', stop: 'Leállítás', restart: 'Újraindítás' };
  const ACTION_DONE = {
    start: (n) => `${n}: indítás elküldve.`,
    stop: (n) => `${n} leállítva.`,
    restart: (n) => `${n}: újraindítás elküldve.`,
  };
  const SETTING_TEXT = {
    symbols: 'Kereskedett szimbólumok, vesszővel elválasztva (1–200 db).',
    timeframes: 'Használt idősíkok, vesszővel elválasztva (pl. M1, M5, H1).',
    default_timeframe: 'Alapértelmezett idősík; szerepelnie kell az idősíkok között.',
    'risk.max_volume': 'Egy megbízás legnagyobb mérete lotban (0 < x ≤ 100).',
    'ui.language': 'A felület nyelve: hu vagy en.',
  };
  const SETTING_ORDER = ['symbols', 'timeframes', 'default_timeframe', 'risk.max_volume', 'ui.language'];

  // ---------------------------------------------------------------- small helpers

  const $ = (id) => document.getElementById(id);

  /** Creates an element; `attrs` keys starting with `on` become listeners, others attributes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
      else if (key === 'text') node.textContent = value;
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setText(node, text) {
    const value = text === undefined || text === null ? '' : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function formatDuration(ms) {
    if (!Number.isFinite(ms) || ms < 0) return '–';
    let s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (d > 0) return `${d} nap ${h} óra`;
    if (h > 0) return `${h} óra ${m} perc`;
    if (m > 0) return `${m} perc ${s} mp`;
    return `${s} mp`;
  }

  function formatClock(value, withMs) {
    const date = value instanceof Date ? value : new Date(value);
    if (Number.isNaN(date.getTime())) return '–';
    const pad = (n, w = 2) => String(n).padStart(w, '0');
    const base = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
    return withMs ? `${base}.${pad(date.getMilliseconds(), 3)}` : base;
  }

  function priceDigits(price) {
    if (price >= 1000) return 2;
    if (price >= 20) return 3;
    return 5;
  }

  /**
   * Wraps an async loader so calls never overlap: a call made while one runs schedules exactly
   * one more run after it (so the newest request always gets a fresh answer).
   */
  function coalesced(load) {
    let running = false;
    let again = false;
    const run = async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          await load();
        } while (again && started);
      } finally {
        running = false;
      }
    };
    return run;
  }

  function storageGet() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }

  function storageSet(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage disabled: the token then lives in memory for this page only.
    }
  }

  // ---------------------------------------------------------------- notices

  let noticeTimer = null;

  function showNotice(text, kind = 'error') {
    clearTimeout(noticeTimer);
    const box = $('notice');
    box.dataset.kind = kind;
    setText($('notice-text'), text);
    box.hidden = false;
    noticeTimer = setTimeout(hideNotice, kind === 'error' ? 12000 : 5000);
  }

  function hideNotice() {
    clearTimeout(noticeTimer);
    $('notice').hidden = true;
  }

  // ---------------------------------------------------------------- token and REST

  let token = null;

  /** Takes `#token=…` from the address, keeps it in sessionStorage and removes it from the bar. */
  function tokenFromFragment() {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!match) return null;
    let value = '';
    try {
      value = decodeURIComponent(match[1]).trim();
    } catch {
      value = '';
    }
    history.replaceState(null, '', location.pathname + location.search);
    return value || null;
  }

  /** One API call; always resolves to `{ok, status, data, error, code, etag}`, never throws. */
  async function api(method, path, { body, headers = {}, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const allHeaders = { Accept: 'application/json', 'Accept-Language': 'hu', ...headers };
    if (token) allHeaders.Authorization = `Bearer ${token}`;
    const init = { method, headers: allHeaders, signal: controller.signal, cache: 'no-store' };
    if (body !== undefined) {
      allHeaders['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    try {
      const res = await fetch(path, init);
      let envelope = null;
      try {
        envelope = await res.json();
      } catch {
        envelope = null;
      }
      if (res.status === 401 && token) onUnauthorized();
      if (envelope && typeof envelope === 'object' && 'success' in envelope) {
        return {
          ok: res.ok && envelope.success === true,
          status: res.status,
          data: envelope.data,
          error: envelope.error,
          code: envelope.code,
          etag: res.headers.get('ETag'),
        };
      }
      return { ok: false, status: res.status, data: null, error: `Váratlan válasz a kiszolgálótól (HTTP ${res.status}).`, code: null };
    } catch (e) {
      const timedOut = e && e.name === 'AbortError';
      return {
        ok: false,
        status: 0,
        data: null,
        error: timedOut ? 'A kiszolgáló nem válaszolt időben.' : 'A kiszolgáló nem érhető el.',
        code: timedOut ? 'timeout' : 'network',
      };
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------------------------------------------------------------- login / logout

  let started = false;

  function showLogin(message) {
    stopAll();
    $('main').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    setText($('login-error'), message || '');
    $('token-input').setAttribute('aria-invalid', message ? 'true' : 'false');
    setConn('idle', 'Nincs kapcsolat');
    $('token-input').focus();
  }

  function onUnauthorized() {
    token = null;
    storageSet(null);
    showLogin('A token érvénytelen vagy visszavonták. Adjon meg egy érvényes tokent.');
  }

  async function onLoginSubmit(event) {
    event.preventDefault();
    const value = $('token-input').value.trim();
    if (!value) {
      setText($('login-error'), 'Adja meg a tokent.');
      $('token-input').setAttribute('aria-invalid', 'true');
      return;
    }
    token = value;
    const check = await api('GET', '/api/services');
    if (!check.ok) {
      if (check.status !== 401) {
        token = null;
        setText($('login-error'), check.error || 'A belépés nem sikerült.');
      }
      return;
    }
    storageSet(value);
    $('token-input').value = '';
    start();
  }

  function logout() {
    token = null;
    storageSet(null);
    showLogin('');
  }

  // ---------------------------------------------------------------- connection indicator

  function setConn(state, text) {
    const box = $('conn');
    box.dataset.state = state;
    setText($('conn-text'), text);
    $('conn-retry').hidden = state !== 'retrying';
  }

  // ---------------------------------------------------------------- services

  /** name -> {entry, row parts, onlineSince, lastEventAt, busy} */
  const services = new Map();
  let servicesLoadedOnce = false;

  function serviceRow(name) {
    const nameCell = el('td', {}, el('div', { class: 'svc-name' }), el('div', { class: 'svc-meta' }));
    const badge = el('span', { class: 'badge', 'data-role': 'status' });
    const subState = el('span', { class: 'substate' });
    const statusCell = el('td', {}, badge, subState);
    const uptimeCell = el('td', { 'data-role': 'uptime' });
    const restartsCell = el('td', { class: 'num', 'data-role': 'restarts' });
    const errorCell = el('td', { class: 'svc-error', 'data-role': 'last-error' });
    const buttons = {};
    for (const action of ['start', 'stop', 'restart']) {
      buttons[action] = el('button', {
        type: 'button',
        class: action === 'stop' ? 'danger small' : action === 'start' ? 'small' : 'secondary small',
        'data-action': action,
        text: ACTION_TEXT[action],
        onclick: () => runAction(name, action),
      });
    }
    const logButton = el('button', {
      type: 'button',
      class: 'secondary small',
      'data-action': 'logs',
      text: 'Napló',
      onclick: () => showLogsOf(name),
    });
    const actionsCell = el('td', { class: 'svc-actions' }, buttons.start, buttons.stop, buttons.restart, logButton);
    const tr = el('tr', { 'data-service': name }, nameCell, statusCell, uptimeCell, restartsCell, errorCell, actionsCell);
    return { tr, nameCell, badge, subState, uptimeCell, restartsCell, errorCell, buttons, logButton };
  }

  function ensureService(name) {
    let svc = services.get(name);
    if (!svc) {
      svc = { entry: null, parts: serviceRow(name), onlineSince: null, lastEventAt: 0, busy: false };
      services.set(name, svc);
      const body = $('services-body');
      const placeholder = body.querySelector('tr.placeholder');
      if (placeholder) placeholder.remove();
      body.append(svc.parts.tr);
      const option = el('option', { value: name, text: name });
      $('log-service').append(option);
    }
    return svc;
  }

  /** Applies one service entry (from REST, an action reply or a `service_status` event). */
  function applyEntry(entry, source, requestStartedAt) {
    if (!entry || typeof entry.name !== 'string') return;
    const svc = ensureService(entry.name);
    if (source === 'event') {
      svc.lastEventAt = performance.now();
    } else if (svc.lastEventAt > requestStartedAt) {
      // A live event arrived while this answer was on its way: the event is at least as new.
      return;
    }
    svc.entry = entry;
    svc.onlineSince = entry.status === 'online' && Number.isFinite(entry.uptime_ms) ? Date.now() - entry.uptime_ms : null;
    renderService(svc);
    renderServicesSummary();
  }

  /** The service's OpenAPI contract in a few words (`null`: configured without one). */
  function contractText(c) {
    if (!c) return null;
    if (c.status === 'loaded') return `szerződés: ${c.operations} művelet`;
    if (c.status === 'missing') return 'nincs szerződés';
    if (c.status === 'invalid') return 'hibás szerződés';
    return 'szerződés betöltés alatt';
  }

  function renderService(svc) {
    const e = svc.entry;
    const p = svc.parts;
    const display = e.display_name || e.name;
    setText(p.nameCell.firstChild, display);
    const meta = [e.name, KIND_TEXT[e.kind] || e.kind, `${e.host}:${e.port}`];
    if (e.pid) meta.push(`pid ${e.pid}`);
    const contract = contractText(e.contract);
    if (contract) meta.push(contract);
    setText(p.nameCell.lastChild, meta.join(' · '));
    // The contract's problem, in full, on hover (a missing or broken contract is only a warning).
    if (e.contract && e.contract.error) p.nameCell.lastChild.title = e.contract.error;
    else p.nameCell.lastChild.removeAttribute('title');
    p.tr.dataset.contract = e.contract ? e.contract.status : '';
    p.tr.dataset.status = e.status;
    p.tr.dataset.subState = e.sub_state || '';
    p.badge.dataset.status = e.status;
    setText(p.badge, STATUS_TEXT[e.status] || e.status);
    let sub = e.sub_state ? SUB_STATE_TEXT[e.sub_state] || e.sub_state : '';
    if (e.next_restart_at) {
      const when = new Date(e.next_restart_at);
      const wait = Math.max(0, Math.round((when.getTime() - Date.now()) / 1000));
      sub = `${sub ? `${sub}, ` : ''}újraindítás ${wait} mp múlva`;
    }
    setText(p.subState, sub);
    setText(p.restartsCell, e.restarts ?? 0);
    const lastError = e.last_error || '';
    setText(p.errorCell, lastError.length > 300 ? `${lastError.slice(0, 300)}…` : lastError);
    if (lastError) p.errorCell.title = lastError;
    else p.errorCell.removeAttribute('title');
    renderUptime(svc);
    const managed = e.kind === 'managed';
    const running = e.status === 'online' || e.status === 'starting';
    p.buttons.start.disabled = svc.busy || !managed || (running && e.sub_state !== 'crash_loop');
    p.buttons.stop.disabled = svc.busy || !managed || e.status === 'stopped';
    p.buttons.restart.disabled = svc.busy || !managed || e.status === 'stopped';
    p.logButton.disabled = false;
    const notManaged = managed ? null : 'Ezt a szolgáltatást nem ez az orchestrator indította (külső vagy átvett).';
    for (const [action, button] of Object.entries(p.buttons)) {
      button.setAttribute('aria-label', `${display}: ${ACTION_TEXT[action].toLowerCase()}`);
      if (notManaged) button.title = notManaged;
      else button.removeAttribute('title');
    }
    p.logButton.setAttribute('aria-label', `${display}: napló megjelenítése`);
    if (svc.busy) p.tr.setAttribute('aria-busy', 'true');
    else p.tr.removeAttribute('aria-busy');
  }

  function renderUptime(svc) {
    const text = svc.onlineSince === null ? '–' : formatDuration(Date.now() - svc.onlineSince);
    setText(svc.parts.uptimeCell, text);
  }

  function renderServicesSummary() {
    let online = 0;
    for (const svc of services.values()) if (svc.entry && svc.entry.status === 'online') online += 1;
    setText($('services-summary'), `${online} / ${services.size} működik`);
  }

  const loadServices = coalesced(async () => {
    const startedAt = performance.now();
    const res = await api('GET', '/api/services');
    if (!res.ok) {
      if (res.status !== 401 && !servicesLoadedOnce) showNotice(res.error || 'A szolgáltatások nem tölthetők be.');
      return;
    }
    if (!Array.isArray(res.data)) return;
    for (const entry of res.data) applyEntry(entry, 'rest', startedAt);
    servicesLoadedOnce = true;
    // Rows follow the configuration's order (an event may have created one earlier).
    const body = $('services-body');
    const order = res.data.map((e) => e && e.name).filter((n) => services.has(n));
    const current = [...body.querySelectorAll('tr[data-service]')].map((tr) => tr.dataset.service);
    if (order.join('\n') !== current.join('\n')) for (const name of order) body.append(services.get(name).parts.tr);
    if (services.size === 0) {
      setText(body.querySelector('tr.placeholder td'), 'Nincs beállított szolgáltatás.');
    }
    if (!logState.service && res.data.length > 0) selectLogService(res.data[0].name, false);
  });

  async function runAction(name, action) {
    const svc = services.get(name);
    if (!svc || svc.busy) return;
    const display = (svc.entry && svc.entry.display_name) || name;
    svc.busy = true;
    renderService(svc);
    const startedAt = performance.now();
    const res = await api('POST', `/api/services/${encodeURIComponent(name)}/${action}`, {
      timeoutMs: ACTION_TIMEOUT_MS,
    });
    svc.busy = false;
    if (res.ok) {
      applyEntry(res.data, 'action', startedAt);
      showNotice(ACTION_DONE[action](display), 'info');
    } else if (res.status !== 401) {
      showNotice(res.error || `A művelet nem sikerült (${ACTION_TEXT[action]}).`);
    }
    renderService(svc);
    if (logState.service === name) refreshLogs();
  }

  // ---------------------------------------------------------------- logs

  const logState = { service: null, loading: false, timer: null };

  function selectLogService(name, focus) {
    logState.service = name;
    $('log-service').value = name;
    refreshLogs();
    if (focus) {
      $('log-view').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      $('log-view').focus({ preventScroll: true });
    }
  }

  function showLogsOf(name) {
    selectLogService(name, true);
  }

  async function refreshLogs() {
    const name = logState.service;
    if (!name || logState.loading) return;
    logState.loading = true;
    const tail = Number($('log-tail').value) || 200;
    try {
      const res = await api('GET', `/api/services/${encodeURIComponent(name)}/logs?tail=${tail}`);
      if (name !== logState.service) return;
      if (!res.ok) {
        setText($('log-status'), res.error || 'A napló nem tölthető be.');
        return;
      }
      renderLogs(Array.isArray(res.data && res.data.lines) ? res.data.lines : []);
      setText($('log-status'), `${name} · utolsó ${tail} sor · frissítve ${formatClock(new Date())}`);
    } finally {
      logState.loading = false;
    }
  }

  function renderLogs(lines) {
    const view = $('log-view');
    const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 24;
    const fragment = document.createDocumentFragment();
    for (const item of lines) {
      const line = typeof item.line === 'string' ? item.line : '';
      const text = line.length > MAX_LOG_LINE ? `${line.slice(0, MAX_LOG_LINE)}…` : line;
      const row = el(
        'span',
        { class: item.stream === 'stderr' ? 'err' : undefined },
        el('span', { class: 'at', text: `${formatClock(item.at, true)} ` }),
        text,
        '\n',
      );
      fragment.append(row);
    }
    if (lines.length === 0) fragment.append(el('span', { class: 'at', text: '(még nincs naplósor)' }));
    view.replaceChildren(fragment);
    if (atBottom) view.scrollTop = view.scrollHeight;
  }

  // ---------------------------------------------------------------- ticks

  /** symbol -> {parts, latest, shown, dirty} */
  const ticks = new Map();
  let tickFramePending = false;
  let tickCount = 0;

  function setSymbols(symbols) {
    const body = $('ticks-body');
    const wanted = new Set(symbols);
    for (const [symbol, t] of ticks) {
      if (!wanted.has(symbol)) {
        t.parts.tr.remove();
        ticks.delete(symbol);
      }
    }
    body.querySelectorAll('tr.placeholder').forEach((tr) => tr.remove());
    for (const symbol of symbols) {
      if (ticks.has(symbol)) continue;
      const cells = {
        bid: el('td', { class: 'num', 'data-role': 'bid', text: '–' }),
        ask: el('td', { class: 'num', 'data-role': 'ask', text: '–' }),
        spread: el('td', { class: 'num', 'data-role': 'spread', text: '–' }),
        time: el('td', { class: 'num', 'data-role': 'time', text: 'nincs adat' }),
      };
      const tr = el('tr', { 'data-symbol': symbol }, el('th', { scope: 'row', class: 'sym', text: symbol }), cells.bid, cells.ask, cells.spread, cells.time);
      ticks.set(symbol, { parts: { tr, ...cells }, latest: null, shown: null, dirty: false });
    }
    // Keep the configured order.
    for (const symbol of symbols) body.append(ticks.get(symbol).parts.tr);
    if (symbols.length === 0) body.append(el('tr', { class: 'placeholder' }, el('td', { colspan: 5, text: 'Nincs beállított szimbólum.' })));
    updateTickSubscriptions();
  }

  function onTick(data) {
    if (!data || typeof data.symbol !== 'string') return;
    const t = ticks.get(data.symbol);
    if (!t) return;
    t.latest = data;
    t.dirty = true;
    tickCount += 1;
    if (!tickFramePending) {
      tickFramePending = true;
      // Rendering at most once per frame keeps any tick rate from freezing the page.
      requestAnimationFrame(renderTicks);
    }
  }

  function renderTicks() {
    tickFramePending = false;
    for (const t of ticks.values()) {
      if (!t.dirty || !t.latest) continue;
      t.dirty = false;
      const { bid, ask, time_msc: timeMsc } = t.latest;
      if (!Number.isFinite(bid) || !Number.isFinite(ask)) continue;
      const digits = priceDigits(bid);
      const previous = t.shown;
      setText(t.parts.bid, bid.toFixed(digits));
      setText(t.parts.ask, ask.toFixed(digits));
      setText(t.parts.spread, (ask - bid).toFixed(digits));
      setText(t.parts.time, Number.isFinite(timeMsc) ? formatClock(timeMsc, true) : '–');
      if (previous !== null && bid !== previous) t.parts.bid.className = bid > previous ? 'num up' : 'num down';
      t.parts.tr.dataset.updated = String(timeMsc);
      t.shown = bid;
    }
  }

  const loadSymbols = coalesced(async () => {
    const res = await api('GET', '/api/settings/symbols');
    if (res.ok && res.data && Array.isArray(res.data.value)) {
      setSymbols(res.data.value.filter((s) => typeof s === 'string'));
    } else if (!res.ok && res.status !== 401) {
      showNotice(res.error || 'A szimbólumok nem tölthetők be.');
    }
  });

  // ---------------------------------------------------------------- settings editor

  /** key -> {entry, form parts, shownText, kind} */
  const settingForms = new Map();

  /** How a value is edited: `list` (comma separated strings), `number`, `string`, `bool` or `json`. */
  function editKind(entry) {
    const sample = entry.default !== undefined && entry.default !== null ? entry.default : entry.value;
    if (Array.isArray(sample) && sample.every((v) => typeof v === 'string')) return 'list';
    if (typeof sample === 'number') return 'number';
    if (typeof sample === 'string') return 'string';
    if (typeof sample === 'boolean') return 'bool';
    return 'json';
  }

  function valueToText(kind, value) {
    switch (kind) {
      case 'list':
        return Array.isArray(value) ? value.join(', ') : JSON.stringify(value);
      case 'number':
      case 'string':
        return typeof value === 'string' || typeof value === 'number' ? String(value) : JSON.stringify(value);
      case 'bool':
        return value === true ? 'true' : 'false';
      default:
        return JSON.stringify(value, null, 2);
    }
  }

  /** The JSON value to send, or `{error}` for input the page can tell is not JSON at all. */
  function textToValue(kind, text, checked) {
    switch (kind) {
      case 'list':
        return { value: text.split(',').map((s) => s.trim()).filter((s) => s.length > 0) };
      case 'number': {
        const normalised = text.trim().replace(',', '.');
        const n = Number(normalised);
        // Anything that is not a number goes as text: the server names the problem.
        return { value: normalised !== '' && Number.isFinite(n) ? n : text.trim() };
      }
      case 'string':
        return { value: text.trim() };
      case 'bool':
        return { value: checked };
      default:
        try {
          return { value: JSON.parse(text) };
        } catch (e) {
          return { error: `Érvénytelen JSON: ${e.message}` };
        }
    }
  }

  function settingId(key) {
    return `setting-${key.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  }

  function buildSettingForm(entry) {
    const key = entry.key;
    const kind = editKind(entry);
    const id = settingId(key);
    const errorId = `${id}-error`;
    const descId = `${id}-desc`;
    const input =
      kind === 'json'
        ? el('textarea', { id, name: key, spellcheck: 'false', 'aria-describedby': `${descId} ${errorId}` })
        : kind === 'bool'
          ? el('input', { id, name: key, type: 'checkbox', 'aria-describedby': `${descId} ${errorId}` })
          : el('input', {
              id,
              name: key,
              type: 'text',
              spellcheck: 'false',
              autocomplete: 'off',
              inputmode: kind === 'number' ? 'decimal' : undefined,
              'aria-describedby': `${descId} ${errorId}`,
            });
    const error = el('p', { id: errorId, class: 'field-error', role: 'alert', 'data-role': 'error' });
    const saved = el('span', { class: 'saved', role: 'status', 'data-role': 'saved' });
    const meta = el('span', { class: 'setting-meta', 'data-role': 'meta' });
    const save = el('button', { type: 'submit', class: 'small', text: 'Mentés', 'aria-label': `${key}: mentés` });
    const reset = el('button', {
      type: 'button',
      class: 'secondary small',
      text: 'Alapérték',
      'aria-label': `${key}: visszaállítás alapértékre`,
    });
    const form = el(
      'form',
      { class: 'setting', 'data-key': key, novalidate: true },
      el('div', { class: 'setting-head' }, el('label', { for: id, text: key }), meta),
      el('p', { id: descId, class: 'setting-desc', text: SETTING_TEXT[key] || (key.startsWith('ui.') ? 'Felületi beállítás (szabad JSON).' : '') }),
      el('div', { class: 'setting-row' }, input),
      error,
      el('div', { class: 'setting-actions' }, save, reset, saved),
    );
    const parts = { form, input, error, saved, meta, save, reset };
    const item = { entry, parts, kind, shownText: '' };
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      saveSetting(item);
    });
    reset.addEventListener('click', () => resetSetting(item));
    input.addEventListener('input', () => {
      setText(saved, '');
    });
    return item;
  }

  function currentText(item) {
    return item.kind === 'bool' ? String(item.parts.input.checked) : item.parts.input.value;
  }

  function isDirty(item) {
    return currentText(item) !== item.shownText;
  }

  function renderSetting(item, { force } = {}) {
    const { entry, parts, kind } = item;
    const text = valueToText(kind, entry.value);
    if (force || !isDirty(item)) {
      if (kind === 'bool') parts.input.checked = entry.value === true;
      else parts.input.value = text;
      item.shownText = text;
    }
    const updated = entry.updated_at ? ` · módosítva ${formatClock(entry.updated_at)}` : '';
    const defaultText = `alapérték: ${valueToText(kind, entry.default)}`;
    setText(parts.meta, entry.version > 0 ? `verzió ${entry.version}${updated}` : 'alapértéken');
    parts.meta.title = defaultText;
    parts.form.dataset.version = String(entry.version);
  }

  function setFieldError(item, message) {
    setText(item.parts.error, message || '');
    item.parts.input.setAttribute('aria-invalid', message ? 'true' : 'false');
  }

  async function saveSetting(item) {
    const { parts, kind } = item;
    setText(parts.saved, '');
    const parsed = textToValue(kind, parts.input.value, parts.input.checked);
    if (parsed.error) {
      setFieldError(item, parsed.error);
      parts.input.focus();
      return;
    }
    parts.save.disabled = true;
    parts.reset.disabled = true;
    const res = await api('PUT', `/api/settings/${encodeURIComponent(item.entry.key)}`, {
      body: { value: parsed.value },
      headers: { 'If-Match': `"${item.entry.version}"` },
    });
    parts.save.disabled = false;
    parts.reset.disabled = false;
    if (res.ok && res.data) {
      setFieldError(item, '');
      item.entry = res.data;
      renderSetting(item, { force: true });
      setText(parts.saved, `Mentve (verzió ${res.data.version}).`);
      afterSettingChanged(item.entry.key);
    } else if (res.status === 409 && res.code === 'conflict') {
      // Someone else changed it: take their version, keep what the operator typed.
      const fresh = await api('GET', `/api/settings/${encodeURIComponent(item.entry.key)}`);
      if (fresh.ok && fresh.data) {
        item.entry = fresh.data;
        renderSetting(item);
      }
      setFieldError(item, `${res.error || 'Ütközés.'} A beállítást közben módosították; ellenőrizze, majd mentse újra.`);
    } else if (res.status !== 401) {
      setFieldError(item, res.error || 'A mentés nem sikerült.');
      parts.input.focus();
    }
  }

  async function resetSetting(item) {
    const { parts } = item;
    setText(parts.saved, '');
    parts.save.disabled = true;
    parts.reset.disabled = true;
    const res = await api('DELETE', `/api/settings/${encodeURIComponent(item.entry.key)}`);
    parts.save.disabled = false;
    parts.reset.disabled = false;
    if (res.ok && res.data) {
      setFieldError(item, '');
      item.entry = res.data;
      renderSetting(item, { force: true });
      setText(parts.saved, 'Alapérték visszaállítva.');
      afterSettingChanged(item.entry.key);
    } else if (res.status !== 401) {
      setFieldError(item, res.error || 'A visszaállítás nem sikerült.');
    }
  }

  function afterSettingChanged(key) {
    if (key === 'symbols') loadSymbols();
  }

  const loadSettings = coalesced(async () => {
    const res = await api('GET', '/api/settings');
    const list = $('settings-list');
    if (!res.ok || !res.data || typeof res.data !== 'object') {
      if (res.status !== 401) {
        list.replaceChildren(el('p', { class: 'field-error', text: res.error || 'A beállítások nem tölthetők be.' }));
      }
      return;
    }
    const rank = (key) => (SETTING_ORDER.includes(key) ? SETTING_ORDER.indexOf(key) : SETTING_ORDER.length);
    const keys = Object.keys(res.data).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    if (settingForms.size === 0) list.replaceChildren();
    for (const key of keys) {
      const entry = res.data[key];
      let item = settingForms.get(key);
      if (!item) {
        item = buildSettingForm(entry);
        settingForms.set(key, item);
        list.append(item.parts.form);
      } else if (!isDirty(item)) {
        // A form being edited keeps its version, so saving it reports a conflict instead of
        // silently overwriting the newer value.
        item.entry = entry;
      }
      renderSetting(item);
    }
  });

  async function refreshSettingKeys(keys) {
    for (const key of keys) {
      const item = settingForms.get(key);
      if (!item) {
        loadSettings();
        return;
      }
      const res = await api('GET', `/api/settings/${encodeURIComponent(key)}`);
      // A form the operator is editing keeps its text (and its version: saving reports the conflict).
      if (res.ok && res.data && !isDirty(item) && res.data.version !== item.entry.version) {
        item.entry = res.data;
        renderSetting(item);
      }
    }
  }

  // ---------------------------------------------------------------- real-time connection

  const live = {
    socket: null,
    attempt: 0,
    retryTimer: null,
    countdownTimer: null,
    pingTimer: null,
    pongTimer: null,
    epoch: null, // the hub epoch the seqs below belong to
    lastSeq: new Map(), // topic -> last seq seen (service_status:*, system)
    tickTopics: new Set(), // tick topics currently subscribed
    nextId: 1,
    pending: new Map(), // request id -> what it was
    subscribed: false,
    connectedOnce: false, // a subscription succeeded at least once since login
  };

  function send(message) {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) {
      live.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function request(type, fields, what) {
    const id = live.nextId++;
    live.pending.set(id, what || type);
    return send({ id, type, ...fields }) ? id : null;
  }

  function wantedTickTopics() {
    const symbols = [...ticks.keys()];
    if (symbols.length > MAX_TICK_TOPICS) return new Set(['tick']);
    return new Set(symbols.map((s) => `tick:${s}`));
  }

  function updateTickSubscriptions() {
    if (!live.subscribed) return;
    const wanted = wantedTickTopics();
    const removed = [...live.tickTopics].filter((t) => !wanted.has(t));
    const added = [...wanted].filter((t) => !live.tickTopics.has(t));
    if (removed.length > 0) request('unsubscribe', { topics: removed });
    if (added.length > 0) request('subscribe', { topics: added }, 'subscribe-ticks');
    live.tickTopics = wanted;
  }

  function connect() {
    clearTimeout(live.retryTimer);
    clearInterval(live.countdownTimer);
    if (!token) return;
    if (live.socket) return;
    setConn('connecting', 'Kapcsolódás…');
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
    let socket;
    try {
      socket = new WebSocket(url);
    } catch {
      scheduleReconnect();
      return;
    }
    live.socket = socket;
    live.subscribed = false;
    live.pending.clear();
    socket.addEventListener('open', () => {
      request('auth', { token }, 'auth');
    });
    socket.addEventListener('message', (event) => {
      if (socket !== live.socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn('dashboard: a frame that is not JSON');
        return;
      }
      try {
        onMessage(message);
      } catch (e) {
        console.error('dashboard: handling a frame failed', e);
      }
    });
    socket.addEventListener('close', (event) => {
      if (socket !== live.socket) return;
      onClosed(event.code, event.reason);
    });
  }

  function onMessage(message) {
    if (typeof message.seq === 'number' && typeof message.topic === 'string') {
      onEvent(message);
      return;
    }
    const what = message.id !== undefined ? live.pending.get(message.id) : undefined;
    if (message.id !== undefined) live.pending.delete(message.id);
    switch (message.type) {
      case 'auth_ok':
        onAuthenticated(message);
        break;
      case 'subscribed':
        if (what === 'subscribe-main' || what === 'subscribe-main-replay') onSubscribed(message, what === 'subscribe-main-replay');
        break;
      case 'pong':
        clearTimeout(live.pongTimer);
        live.pongTimer = null;
        break;
      case 'unsubscribed':
        break;
      case 'error':
        console.warn('dashboard: hub error', message.code, message.message);
        if (typeof what === 'string' && what.startsWith('subscribe')) showNotice(message.message || 'A feliratkozás nem sikerült.');
        break;
      default:
        // Targeted messages and future reply types are ignored.
        break;
    }
  }

  function onAuthenticated(message) {
    const sameEpoch = live.epoch !== null && message.epoch === live.epoch;
    if (!sameEpoch) {
      // A new hub (the orchestrator restarted): old seqs mean nothing; reload over REST.
      live.lastSeq.clear();
    }
    live.tickTopics = wantedTickTopics();
    const topics = ['service_status', 'system', ...live.tickTopics];
    const fields = { topics };
    if (sameEpoch) {
      const since = {};
      for (const [topic, seq] of live.lastSeq) since[topic] = seq;
      // Topics never seen in this epoch replay from the start of their ring (seq 0 = nothing seen).
      for (const name of services.keys()) {
        if (!(`service_status:${name}` in since)) since[`service_status:${name}`] = 0;
      }
      if (!('system' in since)) since.system = 0;
      fields.since = since;
      fields.epoch = live.epoch;
    }
    live.epoch = message.epoch || null;
    request('subscribe', fields, sameEpoch ? 'subscribe-main-replay' : 'subscribe-main');
    startKeepalive(message.ping_interval_ms);
  }

  function onSubscribed(message, replayed) {
    live.subscribed = true;
    live.attempt = 0;
    setConn('live', 'Élő kapcsolat');
    const recovered = message.recovered || {};
    const gap = Object.values(recovered).some((ok) => ok === false);
    // How this (re)connection caught up, for the operator (tooltip) and for tests.
    const conn = $('conn');
    const resync = !live.connectedOnce ? 'initial' : replayed && !gap ? 'replay' : 'reload';
    live.connectedOnce = true;
    conn.dataset.resync = resync;
    const at = formatClock(new Date());
    if (resync === 'replay') conn.title = `Újracsatlakozva ${at}; a kimaradt események pótolva.`;
    else if (resync === 'reload') conn.title = `Újracsatlakozva ${at}; az állapot újratöltve.`;
    else conn.title = `Csatlakozva ${at}.`;
    if (!replayed || gap) {
      // First connection, a new epoch or a gap that the ring no longer covers: the REST state
      // is the truth, and live events from here on apply on top of it.
      loadServices();
      loadSettings();
      loadSymbols();
    }
    // Symbols may have changed while the tick list was being built.
    updateTickSubscriptions();
  }

  function onEvent(event) {
    const { topic, seq } = event;
    if (event.type !== 'tick') {
      if (event.epoch && live.epoch && event.epoch !== live.epoch) return;
      const last = live.lastSeq.get(topic);
      if (last !== undefined && seq <= last) return; // already applied (replay overlap)
      const gap = last !== undefined && seq > last + 1;
      live.lastSeq.set(topic, seq);
      if (gap) {
        // Events were lost (should not happen within an epoch): reload the truth.
        loadServices();
        loadSettings();
      }
    }
    switch (event.type) {
      case 'tick':
        onTick(event.data);
        break;
      case 'service_status':
        applyEntry(event.data, 'event', 0);
        if (logState.service === (event.data && event.data.name)) refreshLogs();
        break;
      case 'system':
        onSystemEvent(event.data);
        break;
      default:
        break;
    }
  }

  function onSystemEvent(data) {
    if (!data || typeof data !== 'object') return;
    if (data.kind === 'settings_changed' && Array.isArray(data.keys)) {
      refreshSettingKeys(data.keys.filter((k) => typeof k === 'string'));
      if (data.keys.includes('symbols')) loadSymbols();
    } else if (data.kind === 'service_gave_up') {
      const name = data.display_name || data.service;
      const detail = data.last_error || 'ismeretlen hiba';
      if (data.sub_state === 'crash_loop') {
        showNotice(`${name}: ismétlődő összeomlás, újraindítás csak ritkítva. ${detail}`);
      } else if (data.sub_state === 'port_conflict') {
        showNotice(`${name} nem indítható, mert a portja foglalt. ${detail}`);
      } else {
        showNotice(`${name} nem indult el. ${detail}`);
      }
    }
  }

  function startKeepalive(serverInterval) {
    clearInterval(live.pingTimer);
    const every = Math.min(PING_EVERY_MS, Number(serverInterval) || PING_EVERY_MS);
    live.pingTimer = setInterval(() => {
      if (live.pongTimer) return;
      if (request('ping', {}, 'ping') === null) return;
      live.pongTimer = setTimeout(() => {
        // No answer: the connection is dead even if the browser has not noticed yet.
        abandonSocket();
        scheduleReconnect();
      }, PONG_DEADLINE_MS);
    }, every);
  }

  function abandonSocket() {
    clearInterval(live.pingTimer);
    clearTimeout(live.pongTimer);
    live.pingTimer = null;
    live.pongTimer = null;
    live.subscribed = false;
    const socket = live.socket;
    live.socket = null;
    if (socket && socket.readyState <= WebSocket.OPEN) {
      try {
        socket.close(1000, 'bye');
      } catch {
        // already closing
      }
    }
  }

  function onClosed(code) {
    abandonSocket();
    if (!token) return;
    if (code === 4001) {
      // The token was revoked (or is wrong): asking again is the only way forward.
      onUnauthorized();
      return;
    }
    if (code === 4003) {
      setConn('failed', 'Ez a token nem jogosult az élő eseményekre.');
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    clearTimeout(live.retryTimer);
    clearInterval(live.countdownTimer);
    if (!token) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** live.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    live.attempt += 1;
    const due = Date.now() + delay;
    const show = () => {
      const left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setConn('retrying', `Megszakadt a kapcsolat – újrapróbálás ${left} mp múlva`);
    };
    show();
    live.countdownTimer = setInterval(show, 1000);
    live.retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (!token || live.socket) return;
    live.attempt = 0;
    connect();
  }

  // ---------------------------------------------------------------- lifecycle

  let uptimeTimer = null;
  let servicesTimer = null;
  let logTimer = null;

  function stopAll() {
    started = false;
    live.connectedOnce = false;
    clearInterval(uptimeTimer);
    clearInterval(servicesTimer);
    clearInterval(logTimer);
    clearTimeout(live.retryTimer);
    clearInterval(live.countdownTimer);
    abandonSocket();
  }

  function start() {
    if (started) return;
    started = true;
    $('login').hidden = true;
    $('main').hidden = false;
    $('logout').hidden = false;
    setText($('login-error'), '');
    loadServices();
    loadSymbols();
    loadSettings();
    connect();
    uptimeTimer = setInterval(() => {
      for (const svc of services.values()) {
        if (!svc.entry) continue;
        if (svc.entry.next_restart_at) renderService(svc);
        else renderUptime(svc);
      }
      setText($('ticks-summary'), tickCount > 0 ? `${tickCount} frissítés` : '');
    }, 1000);
    servicesTimer = setInterval(() => {
      if (document.visibilityState === 'visible') loadServices();
    }, SERVICES_REFRESH_MS);
    logTimer = setInterval(() => {
      if (document.visibilityState === 'visible' && $('log-follow').checked) refreshLogs();
    }, LOG_REFRESH_MS);
  }

  function init() {
    $('login-form').addEventListener('submit', onLoginSubmit);
    $('logout').addEventListener('click', logout);
    $('notice-close').addEventListener('click', hideNotice);
    $('conn-retry').addEventListener('click', reconnectNow);
    $('settings-reload').addEventListener('click', () => {
      for (const item of settingForms.values()) setFieldError(item, '');
      settingForms.clear();
      loadSettings();
    });
    $('log-controls').addEventListener('submit', (event) => {
      event.preventDefault();
      refreshLogs();
    });
    $('log-service').addEventListener('change', (event) => selectLogService(event.target.value, false));
    $('log-tail').addEventListener('change', refreshLogs);
    window.addEventListener('online', reconnectNow);
    window.addEventListener('hashchange', () => {
      // A new `#token=…` pasted into this tab replaces the session's token.
      const fresh = tokenFromFragment();
      if (!fresh) return;
      storageSet(fresh);
      stopAll();
      token = fresh;
      start();
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') reconnectNow();
    });

    const fromFragment = tokenFromFragment();
    if (fromFragment) storageSet(fromFragment);
    token = fromFragment || storageGet();
    if (token) start();
    else showLogin('');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
