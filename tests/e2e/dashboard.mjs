// End-to-end test of the built-in dashboard (`GET /`) in Debian's headless Chromium, driven by
// playwright-core. Starts the real orchestrator binary with the four simulated services on free
// ports and a temporary data directory, opens the dashboard URL the orchestrator logs at start,
// and checks what an operator sees and does. Run it with `cargo xtask e2e` (which builds the
// binary and installs this folder's node_modules); it is not part of `cargo test`.
//
// Environment: ORCHESTRATOR_BIN (default target/debug/orchestrator), E2E_OUT (default target/e2e:
// screenshots and the orchestrator's log), CHROMIUM (default /usr/bin/chromium).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const BIN = process.env.ORCHESTRATOR_BIN || path.join(root, 'target', 'debug', 'orchestrator');
const OUT = process.env.E2E_OUT || path.join(root, 'target', 'e2e');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WATCHDOG_MS = 240_000;
const STEP_TIMEOUT_MS = 30_000;

// The timers the black-box tests use (tests/common FAST): supervision reacts in milliseconds.
const FAST = {
  ORCHESTRATOR_HEALTH_INTERVAL_MS: '200',
  ORCHESTRATOR_HEALTH_TIMEOUT_MS: '300',
  ORCHESTRATOR_HEALTH_FAILURE_THRESHOLD: '2',
  ORCHESTRATOR_HEALTH_STARTUP_TIMEOUT_MS: '10000',
  ORCHESTRATOR_BACKOFF_INITIAL_MS: '50',
  ORCHESTRATOR_BACKOFF_MAX_MS: '400',
  ORCHESTRATOR_SERVICE_STOP_TIMEOUT_MS: '1500',
};

// Debian's chromium on a machine with a closed network: no background connections, no sandbox
// (we run as root), a fresh profile (launchPersistentContext gets a new empty directory).
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const ROLES = [
  { name: 'data', display: 'Data Service', routes: ['ticks', 'ohlc', 'symbols'], keys: ['symbols', 'timeframes'] },
  { name: 'mt5', display: 'MT5 Service', routes: ['account', 'positions', 'orders'], keys: ['symbols', 'risk.max_volume'] },
  { name: 'strategy', display: 'Strategy Service', routes: ['strategies', 'signals'], keys: ['symbols', 'timeframes'] },
  { name: 'pattern', display: 'Pattern Service', routes: ['patterns'], keys: ['symbols'] },
];

// ------------------------------------------------------------------ helpers

function log(message) {
  process.stdout.write(`[e2e ${new Date().toISOString().slice(11, 23)}] ${message}\n`);
}

// `count` distinct free ports: every listener stays open until all are known, so no port is
// handed out twice.
async function freePorts(count) {
  const servers = [];
  try {
    for (let i = 0; i < count; i += 1) {
      const server = net.createServer();
      servers.push(server);
      await new Promise((resolve, reject) => {
        server.on('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((server) => server.address().port);
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(() => resolve()))));
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await sleep(50);
  }
}

const tomlString = (s) => JSON.stringify(s); // TOML basic strings accept JSON's escapes
const tomlList = (items) => `[${items.map(tomlString).join(', ')}]`;

function configToml(ports) {
  return ROLES.map((role, i) =>
    [
      '[[service]]',
      `name = ${tomlString(role.name)}`,
      `display_name = ${tomlString(role.display)}`,
      `routes = ${tomlList(role.routes)}`,
      `port = ${ports[i]}`,
      `command = ${tomlList([BIN, 'sim', role.name, '--port', String(ports[i])])}`,
      'events_path = "/events"',
      'settings_path = "/settings"',
      `settings_keys = ${tomlList(role.keys)}`,
      'autostart = true',
      '',
    ].join('\n'),
  ).join('\n');
}

// ------------------------------------------------------------------ the orchestrator under test

class Orchestrator {
  constructor(dir, port, logPath) {
    this.dir = dir;
    this.port = port;
    this.logPath = logPath;
    this.config = path.join(dir, 'orchestrator.toml');
    this.dataDir = path.join(dir, 'data');
    this.child = null;
  }

  base() {
    return `http://127.0.0.1:${this.port}`;
  }

  logText() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  async start() {
    const logFd = fs.openSync(this.logPath, 'a');
    const before = this.logText().length;
    this.child = spawn(
      BIN,
      ['--config', this.config, '--bind', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir],
      { env: { ...process.env, ...FAST, RUST_LOG: 'info' }, stdio: ['ignore', logFd, logFd] },
    );
    fs.closeSync(logFd);
    const child = this.child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    await until('the orchestrator to answer /api/health', 20_000, async () => {
      if (child.exitCode !== null) throw new Error(`orchestrator exited with ${child.exitCode}`);
      const res = await fetch(`${this.base()}/api/health`).catch(() => null);
      return res !== null && res.ok;
    });
    // The URL the operator copies from the log: with the token fragment at the first start only
    // (later starts name the token file instead and log no secret).
    const first = before === 0;
    return until('the dashboard URL in the log', 5_000, () => {
      const pattern = first ? /dashboard: (http:\/\/\S+#token=\S+)/ : /dashboard: (http:\/\/\S+)/;
      const match = pattern.exec(this.logText().slice(before));
      return match ? match[1] : null;
    });
  }

  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
  }

  async api(method, apiPath, body) {
    const token = fs.readFileSync(path.join(this.dataDir, 'admin.token'), 'utf8').trim();
    const res = await fetch(`${this.base()}${apiPath}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }
}

// ------------------------------------------------------------------ a cuttable network path

/**
 * A TCP proxy between the browser and the orchestrator that can drop every connection at once
 * and refuse new ones: a network outage that leaves the orchestrator (and its hub epoch) running.
 */
class NetworkPath {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.sockets = new Set();
    this.down = false;
  }

  async listen() {
    this.server = net.createServer((client) => {
      if (this.down) {
        client.destroy();
        return;
      }
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => {});
      }
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = this.server.address().port;
  }

  cut() {
    this.down = true;
    for (const socket of this.sockets) socket.destroy();
  }

  restore() {
    this.down = false;
  }

  close() {
    this.cut();
    this.server?.close();
  }
}

// ------------------------------------------------------------------ page checks

async function waitInPage(page, what, fn, arg, timeout = STEP_TIMEOUT_MS) {
  try {
    return await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    throw new Error(`${what}: ${e.message.split('\n')[0]}`);
  }
}

async function serviceStatus(page, name) {
  return page.evaluate((n) => {
    const tr = document.querySelector(`tr[data-service="${n}"]`);
    return tr ? { status: tr.dataset.status, badge: tr.querySelector('[data-role="status"]').textContent } : null;
  }, name);
}

async function waitServiceStatus(page, name, status, timeout = STEP_TIMEOUT_MS) {
  await waitInPage(
    page,
    `${name} shown as ${status}`,
    ([n, s]) => document.querySelector(`tr[data-service="${n}"]`)?.dataset.status === s,
    [name, status],
    timeout,
  );
}

async function tickStamp(page, symbol) {
  return page.evaluate((s) => {
    const tr = document.querySelector(`tr[data-symbol="${s}"]`);
    if (!tr) return null;
    return { updated: tr.dataset.updated || null, bid: tr.querySelector('[data-role="bid"]').textContent };
  }, symbol);
}

async function waitTicksMoving(page, symbol) {
  const first = await until(`a first tick of ${symbol}`, STEP_TIMEOUT_MS, async () => {
    const t = await tickStamp(page, symbol);
    return t && t.updated ? t : null;
  });
  assert.match(first.bid, /^\d+\.\d+$/, `${symbol} bid is a price`);
  const next = await until(`the tick of ${symbol} to update`, STEP_TIMEOUT_MS, async () => {
    const t = await tickStamp(page, symbol);
    return t && t.updated && t.updated !== first.updated ? t : null;
  });
  return [first, next];
}

/** A full-page screenshot from the top (so the sticky header sits where it belongs). */
async function screenshot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(OUT, name), fullPage: true });
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  for (const f of fs.readdirSync(OUT)) if (f.endsWith('.png') || f === 'orchestrator.log') fs.rmSync(path.join(OUT, f));
  assert.ok(fs.existsSync(BIN), `the orchestrator binary ${BIN} exists (cargo build -p orchestrator)`);
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} exists (apt-get install -y chromium)`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'orchestrator-e2e-'));
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'orchestrator-e2e-chromium-'));
  const [gatewayPort, ...ports] = await freePorts(ROLES.length + 1);
  const orchestrator = new Orchestrator(dir, gatewayPort, path.join(OUT, 'orchestrator.log'));
  fs.writeFileSync(orchestrator.config, configToml(ports));

  let context = null;
  let page = null;
  let network = null;
  const pageErrors = [];
  let allowNetworkErrors = false;
  const watchdog = setTimeout(() => {
    log(`watchdog: the test took longer than ${WATCHDOG_MS} ms`);
    orchestrator.child?.kill('SIGKILL');
    process.exit(1);
  }, WATCHDOG_MS);
  process.on('exit', () => orchestrator.child?.kill('SIGKILL'));

  try {
    log(`starting ${BIN} on port ${orchestrator.port}`);
    const logged = await orchestrator.start();
    assert.ok(logged.startsWith(`${orchestrator.base()}/#token=`), logged);
    // The browser reaches the orchestrator through a path the test can cut.
    network = new NetworkPath(orchestrator.port);
    await network.listen();
    const url = logged.replace(`:${orchestrator.port}/`, `:${network.port}/`);

    log(`launching ${CHROMIUM}`);
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
      locale: 'hu-HU',
    });
    page = context.pages()[0] || (await context.newPage());
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const text = msg.text();
      // While the orchestrator restarts, refused connections are expected.
      if (allowNetworkErrors && /net::ERR_|WebSocket connection|Failed to load resource/.test(text)) return;
      // The page handles API errors itself (the invalid setting's 400); Chromium still logs them.
      if (/the server responded with a status of 400/.test(text)) return;
      pageErrors.push(`console: ${text}`);
    });
    page.on('pageerror', (err) => pageErrors.push(`uncaught: ${err.message}`));

    log('opening the dashboard URL from the log');
    const response = await page.goto(url);
    assert.equal(response.status(), 200);
    const csp = response.headers()['content-security-policy'] || '';
    assert.match(csp, /default-src 'none'/, 'strict CSP');
    assert.equal(response.headers()['x-content-type-options'], 'nosniff');
    await page.locator('#main').waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
    const where = await page.evaluate(() => ({ hash: location.hash, stored: sessionStorage.getItem('orchestrator.token') }));
    assert.equal(where.hash, '', 'the token is removed from the address bar');
    assert.ok(where.stored && url.endsWith(where.stored), 'the token is kept in sessionStorage');
    assert.equal(await page.title(), 'Orchestrator – vezérlőpult');

    log('all four services are shown online');
    for (const role of ROLES) await waitServiceStatus(page, role.name, 'online');
    for (const role of ROLES) {
      const s = await serviceStatus(page, role.name);
      assert.equal(s.badge, 'Működik', `${role.name} badge`);
      const name = await page.locator(`tr[data-service="${role.name}"] .svc-name`).textContent();
      assert.equal(name, role.display);
    }
    await waitInPage(page, 'the connection indicator to show live', () => document.querySelector('#conn')?.dataset.state === 'live');
    assert.equal(await page.locator('#conn-text').textContent(), 'Élő kapcsolat');
    assert.equal(await page.locator('#services-summary').textContent(), '4 / 4 működik');

    log('ticks update for every configured symbol');
    for (const symbol of ['EURUSD', 'GBPUSD', 'USDJPY', 'XAUUSD']) await waitTicksMoving(page, symbol);

    log('the stop button stops a service, the start button brings it back');
    await page.locator('tr[data-service="pattern"] button[data-action="stop"]').click();
    await waitServiceStatus(page, 'pattern', 'stopped');
    assert.equal((await serviceStatus(page, 'pattern')).badge, 'Leállítva');
    assert.equal(await page.locator('tr[data-service="pattern"] [data-role="uptime"]').textContent(), '–');
    assert.ok(await page.locator('tr[data-service="pattern"] button[data-action="stop"]').isDisabled(), 'stop disabled when stopped');
    assert.equal((await orchestrator.api('GET', '/api/services/pattern')).body.data.status, 'stopped');
    await page.locator('tr[data-service="pattern"] button[data-action="start"]').click();
    await waitServiceStatus(page, 'pattern', 'online');
    assert.equal((await orchestrator.api('GET', '/api/services/pattern')).body.data.status, 'online');
    for (const role of ROLES) assert.equal((await serviceStatus(page, role.name)).status, 'online');

    log('the restart button restarts a service and counts it');
    await page.locator('tr[data-service="strategy"] button[data-action="restart"]').click();
    await waitInPage(
      page,
      'strategy restarted and online',
      () => {
        const tr = document.querySelector('tr[data-service="strategy"]');
        return tr?.dataset.status === 'online' && tr.querySelector('[data-role="restarts"]').textContent === '1';
      },
      undefined,
    );

    log('the log tail of a service');
    await page.locator('tr[data-service="data"] button[data-action="logs"]').click();
    await waitInPage(page, 'log lines of data', () => {
      const view = document.querySelector('#log-view');
      return document.querySelector('#log-service').value === 'data' && view.textContent.includes('data listening on');
    });
    assert.match(await page.locator('#log-status').textContent(), /^data · utolsó 200 sor/);

    log('an invalid setting shows an inline error and is not saved');
    const volume = page.locator('form[data-key="risk.max_volume"]');
    await volume.waitFor({ timeout: STEP_TIMEOUT_MS });
    const versionBefore = await volume.getAttribute('data-version');
    await volume.locator('input').fill('1000');
    await volume.locator('button[type="submit"]').click();
    const errorBox = volume.locator('[data-role="error"]');
    await waitInPage(page, 'the inline error', () => {
      const e = document.querySelector('form[data-key="risk.max_volume"] [data-role="error"]');
      return e && e.textContent.length > 0;
    });
    const errorText = await errorBox.textContent();
    assert.match(errorText, /^Érvénytelen kérés: /, errorText);
    assert.ok(await errorBox.isVisible());
    assert.equal(await volume.locator('input').getAttribute('aria-invalid'), 'true');
    assert.equal(await volume.getAttribute('data-version'), versionBefore);
    assert.equal((await orchestrator.api('GET', '/api/settings/risk.max_volume')).body.data.value, 1);
    await screenshot(page, 'dashboard-invalid-setting.png');

    log('a valid setting (with a decimal comma) is saved');
    await volume.locator('input').fill('2,5');
    await volume.locator('button[type="submit"]').click();
    await waitInPage(page, 'the saved note', () =>
      (document.querySelector('form[data-key="risk.max_volume"] [data-role="saved"]')?.textContent || '').startsWith('Mentve'),
    );
    assert.equal(await errorBox.textContent(), '');
    assert.equal(await volume.locator('input').getAttribute('aria-invalid'), 'false');
    const saved = (await orchestrator.api('GET', '/api/settings/risk.max_volume')).body.data;
    assert.equal(saved.value, 2.5);
    assert.equal(await volume.getAttribute('data-version'), String(saved.version));

    log('a new symbol appears in the tick panel and ticks');
    const symbols = page.locator('form[data-key="symbols"]');
    await symbols.locator('input').fill('EURUSD, GBPUSD, USDJPY, XAUUSD, BTCUSD');
    await symbols.locator('button[type="submit"]').click();
    await waitTicksMoving(page, 'BTCUSD');
    assert.deepEqual((await orchestrator.api('GET', '/api/settings/symbols')).body.data.value, [
      'EURUSD', 'GBPUSD', 'USDJPY', 'XAUUSD', 'BTCUSD',
    ]);

    // Let uptimes tick past zero and the panels settle, then record the page.
    await sleep(1500);
    await screenshot(page, 'dashboard.png');
    log(`screenshot: ${path.join(OUT, 'dashboard.png')}`);
    assert.deepEqual(pageErrors, [], 'no console errors or uncaught exceptions');

    assert.equal(await page.locator('#conn').getAttribute('data-resync'), 'initial');

    log('after a network outage the page reconnects and replays what it missed (same hub epoch)');
    allowNetworkErrors = true;
    network.cut();
    await waitInPage(page, 'the indicator to show the outage', () => document.querySelector('#conn')?.dataset.state === 'retrying');
    // Meanwhile an operator elsewhere stops a service: the page must learn it from the replay.
    assert.equal((await orchestrator.api('POST', '/api/services/mt5/stop')).body.data.status, 'stopped');
    assert.equal((await serviceStatus(page, 'mt5')).status, 'online', 'the page cannot know yet');
    network.restore();
    await waitInPage(page, 'the indicator live again', () => document.querySelector('#conn')?.dataset.state === 'live');
    await waitServiceStatus(page, 'mt5', 'stopped');
    assert.equal(await page.locator('#conn').getAttribute('data-resync'), 'replay', 'caught up by replay, not by reload');
    await page.locator('tr[data-service="mt5"] button[data-action="start"]').click();
    await waitServiceStatus(page, 'mt5', 'online');
    allowNetworkErrors = false;

    log('the connection indicator notices a restart of the orchestrator, reconnects and reloads');
    allowNetworkErrors = true;
    await orchestrator.stop();
    await waitInPage(page, 'the indicator to show the lost connection', () => document.querySelector('#conn')?.dataset.state === 'retrying');
    assert.match(await page.locator('#conn-text').textContent(), /^Megszakadt a kapcsolat – újrapróbálás \d+ mp múlva$/);
    await orchestrator.start();
    await waitInPage(page, 'the indicator to show live again', () => document.querySelector('#conn')?.dataset.state === 'live', undefined, 40_000);
    for (const role of ROLES) await waitServiceStatus(page, role.name, 'online');
    await waitTicksMoving(page, 'EURUSD');
    assert.equal(await page.locator('#conn').getAttribute('data-resync'), 'reload', 'a new hub epoch means a reload');
    assert.equal(await volume.locator('input').inputValue(), '2.5', 'the saved setting survived the restart');
    allowNetworkErrors = false;
    assert.deepEqual(pageErrors, [], 'no console errors or uncaught exceptions');

    log('a tab without the fragment asks for the token once; a wrong one is refused inline');
    const second = await context.newPage();
    second.on('pageerror', (err) => pageErrors.push(`uncaught (second tab): ${err.message}`));
    await second.goto(`http://127.0.0.1:${network.port}/`);
    await second.locator('#login').waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
    assert.ok(await second.locator('#main').isHidden(), 'nothing is shown before login');
    assert.equal(await second.evaluate(() => document.activeElement?.id), 'token-input', 'the token field has focus');
    await second.locator('#token-input').fill('not-a-token');
    await second.locator('#login-form button[type="submit"]').click();
    await waitInPage(second, 'the login error', () => document.querySelector('#login-error').textContent.length > 0);
    assert.match(await second.locator('#login-error').textContent(), /érvénytelen/);
    assert.equal(await second.locator('#token-input').getAttribute('aria-invalid'), 'true');
    await screenshot(second, 'dashboard-login.png');
    const token = url.slice(url.indexOf('#token=') + '#token='.length);
    await second.locator('#token-input').fill(token);
    await second.locator('#login-form button[type="submit"]').click();
    await second.locator('#main').waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
    for (const role of ROLES) await waitServiceStatus(second, role.name, 'online');
    await waitInPage(second, 'the second tab live', () => document.querySelector('#conn')?.dataset.state === 'live');
    assert.equal(await second.evaluate(() => sessionStorage.getItem('orchestrator.token')), token);
    await second.close();
    assert.deepEqual(pageErrors, [], 'no uncaught exceptions');

    log('/api/docs renders the merged document: the gateway\'s routes and every service\'s operations');
    for (const role of ROLES) {
      await until(`${role.name}'s contract loaded`, STEP_TIMEOUT_MS, async () =>
        (await orchestrator.api('GET', `/api/services/${role.name}`)).body.data.contract?.status === 'loaded');
    }
    // The dashboard shows each service's contract (its entry as loaded with the page).
    await page.reload();
    for (const role of ROLES) {
      await waitInPage(page, `${role.name}'s contract on the dashboard`, (name) =>
        document.querySelector(`tr[data-service="${name}"]`)?.dataset.contract === 'loaded', role.name);
      assert.match(await page.locator(`tr[data-service="${role.name}"] .svc-meta`).textContent(), /szerződés: \d+ művelet/);
    }
    const docs = await context.newPage();
    docs.on('pageerror', (err) => pageErrors.push(`uncaught (docs): ${err.message}`));
    const docsResponse = await docs.goto(`http://127.0.0.1:${network.port}/api/docs#token=${token}`);
    assert.equal(docsResponse.status(), 200);
    assert.match(docsResponse.headers()['content-security-policy'] || '', /default-src 'none'/, 'strict CSP');
    await waitInPage(docs, 'the operations to render', () => Number(document.body.dataset.operations || 0) > 0);
    assert.equal(await docs.title(), 'Orchestrator – API dokumentáció');
    const merged = (await orchestrator.api('GET', '/api/openapi.json')).body;
    const expected = Object.values(merged.paths).reduce(
      (n, item) => n + Object.keys(item).filter((m) => ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'].includes(m)).length,
      0,
    );
    assert.equal(Number(await docs.evaluate(() => document.body.dataset.operations)), expected, 'every operation is rendered');
    for (const tag of ['health', 'services', 'data', 'mt5', 'strategy', 'pattern']) {
      assert.ok(await docs.locator(`section.tag[data-tag="${tag}"]`).count(), `a section for ${tag}`);
    }
    for (const [method, p] of [['get', '/api/ohlc'], ['post', '/api/orders'], ['post', '/api/strategies/{id}/start'], ['get', '/api/patterns/latest']]) {
      assert.equal(await docs.locator(`details.op[data-method="${method}"][data-path="${p}"]`).count(), 1, `${method} ${p}`);
    }
    log('trying a request from the page sends it with the token; the contract refuses a bad one');
    const ohlc = docs.locator('details.op[data-method="get"][data-path="/api/ohlc"]');
    await ohlc.locator('summary').click();
    await ohlc.locator('input[name="symbol"]').fill('EURUSD');
    await ohlc.locator('input[name="count"]').fill('3');
    await ohlc.locator('button[type="submit"]').click();
    await waitInPage(docs, 'the answer to the request without a timeframe', () =>
      document.querySelector('details.op[data-path="/api/ohlc"] pre.answer')?.dataset.status === '400');
    assert.match(await ohlc.locator('pre.answer').textContent(), /timeframe/);
    await ohlc.locator('input[name="timeframe"]').fill('H1');
    await ohlc.locator('button[type="submit"]').click();
    await waitInPage(docs, 'the answer with three bars', () =>
      document.querySelector('details.op[data-path="/api/ohlc"] pre.answer')?.dataset.status === '200');
    assert.match(await ohlc.locator('pre.answer').textContent(), /"success": true/);
    await screenshot(docs, 'api-docs.png');
    await docs.close();
    assert.deepEqual(pageErrors, [], 'no uncaught exceptions');
    log('passed');
  } catch (e) {
    if (page) await screenshot(page, 'dashboard-failure.png').catch(() => {});
    const tail = orchestrator.logText().split('\n').slice(-40).join('\n');
    log(`FAILED: ${e.stack || e}\npage errors: ${JSON.stringify(pageErrors)}\n--- orchestrator log (last 40 lines) ---\n${tail}`);
    process.exitCode = 1;
  } finally {
    clearTimeout(watchdog);
    if (context) await context.close().catch(() => {});
    network?.close();
    await orchestrator.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

await main();
