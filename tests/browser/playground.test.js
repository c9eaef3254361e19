// The /playground page in headless Chromium against a real engine on port 0.
//
// Every test also fails on any request to a host other than the engine, and on any JavaScript
// error on the page (uncaught exceptions and console errors; the only console errors allowed
// are Chromium's "Failed to load resource" lines for the engine's own 4xx answers, which the
// tests provoke on purpose).
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

import { KEYS, REPO, startEngine } from './engine.js';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOTS = path.join(import.meta.dirname, 'screenshots');
const PAYLOAD_LIMIT = 200 * 1024;
const run = promisify(execFile);

let engine;
let browser;
let context;
let page;
const foreignRequests = [];
const pageErrors = [];

async function screenshot(name) {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** The page's own fetches, straight to the engine (for assertions that must not trust the page). */
async function apiGet(pathname, key = KEYS.user) {
  const response = await fetch(engine.origin + pathname, { headers: { 'X-API-Key': key } });
  return { status: response.status, body: await response.json() };
}

const byTestId = (id) => page.getByTestId(id);

async function setKey(key) {
  await byTestId('api-key').fill(key);
}

async function waitForModels() {
  await page.waitForFunction(() => {
    const names = [...document.querySelectorAll('#model-select option')].map((o) => o.value);
    return ['echo', 'iris', 'mlp', 'sleep', 'digits_cnn', 'text_classifier', 'sentence_embedder'].every((name) => names.includes(name));
  }, null, { timeout: 10_000 });
}

/** Picks model and version and the input/execution modes in the Try tab. */
async function prepare({ model = 'echo', version = 'v1', mode = 'json', exec = 'sync', batch = false } = {}) {
  await byTestId('tab-try').click();
  await byTestId('model-select').selectOption(model);
  await byTestId('version-select').selectOption(version);
  await byTestId(`mode-${mode}`).click();
  await byTestId(`exec-${exec}`).click();
  await byTestId('batch-toggle').setChecked(batch);
}

/** Clicks Send and waits for the status pill to show `status`; returns the parsed body shown. */
async function sendAndRead(status) {
  await byTestId('send').click();
  await page.waitForFunction(
    (expected) => document.getElementById('response-status').textContent.startsWith(String(expected)),
    status,
    { timeout: 15_000 },
  );
  return JSON.parse(await byTestId('response-body').textContent());
}

/** The score chart's bars (of the first chart), highest first: [{label, score, top}]. */
async function chartBars() {
  return page.locator('[data-testid=score-chart]').first().locator('[data-testid^="score-bar-"]').evaluateAll((rows) => rows.map((row) => ({
    label: row.dataset.label,
    score: Number(row.dataset.score),
    top: row.classList.contains('top'),
    testId: row.dataset.testid,
  })));
}

/** Copies the shown curl snippet and runs it in `cwd`; returns the parsed answer and the snippet. */
async function runCurlSnippet(cwd) {
  await byTestId('snippet-curl').click();
  await byTestId('copy-snippet').click();
  await byTestId('copy-status').filter({ hasText: 'Copied.' }).waitFor();
  const snippet = await page.evaluate(() => navigator.clipboard.readText());
  const { stdout } = await run('bash', ['-c', snippet], { cwd, timeout: 30_000 });
  return { answer: JSON.parse(stdout), snippet };
}

async function dropFile(testId, name, text, mimeType) {
  const transfer = await page.evaluateHandle(({ name, text, mimeType }) => {
    const data = new DataTransfer();
    data.items.add(new File([text], name, { type: mimeType }));
    return data;
  }, { name, text, mimeType });
  await byTestId(testId).dispatchEvent('dragover', { dataTransfer: transfer });
  await byTestId(testId).dispatchEvent('drop', { dataTransfer: transfer });
}

before(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  engine = await startEngine();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in a container has no user namespaces for Chromium's sandbox.
    args: ['--no-sandbox'],
  });
  context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: engine.origin });
  // Anything not for the engine is refused and recorded: the page must need no other host.
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.origin === engine.origin) return route.continue();
    foreignRequests.push(url.href);
    return route.abort('blockedbyclient');
  });
  page = await context.newPage();
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.protocol === 'data:' || url.protocol === 'blob:') return;
    if (url.origin !== engine.origin) foreignRequests.push(url.href);
  });
  page.on('pageerror', (error) => pageErrors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    const from = message.location().url || '';
    const engineClientError = /^Failed to load resource: the server responded with a status of 4\d\d\b/.test(text) && from.startsWith(engine.origin);
    if (!engineClientError) pageErrors.push(`console.error: ${text} (${from})`);
  });
  await page.goto(`${engine.origin}/playground`);
});

// Each test starts from the same state, whatever the one before it left (a bad key, say).
beforeEach(async () => {
  if (!page) return;
  if ((await byTestId('api-key').inputValue()) !== KEYS.user) {
    await setKey(KEYS.user);
  }
  if (await page.locator('#model-select option[value=echo]').count()) {
    await byTestId('tab-try').click();
    await byTestId('timeout-ms').fill('');
    await waitForModels();
  }
});

// Each test answers for what happened during it (the lists are emptied for the next one).
afterEach(() => {
  const foreign = foreignRequests.splice(0);
  const errors = pageErrors.splice(0);
  assert.deepEqual(foreign, [], 'the page requested another host');
  assert.deepEqual(errors, [], 'the page had JavaScript errors');
});

after(async () => {
  await browser?.close();
  await engine?.stop();
});

describe('the playground', { timeout: 180_000 }, () => {
  test('is served public, with a CSP, in under 200 KB including its assets', async (t) => {
    const response = await fetch(`${engine.origin}/playground`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type'), /^text\/html/);
    const csp = response.headers.get('content-security-policy');
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /connect-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const html = await response.text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'inline <script>');
    assert.doesNotMatch(html, /\son[a-z]+=/i, 'inline event handler');
    const assets = [...html.matchAll(/(?:src|href)="(\/playground\/[^"]+)"/g)].map((m) => m[1]);
    assert.ok(assets.some((a) => a.includes('.js')) && assets.some((a) => a.includes('.css')), `assets: ${assets}`);
    let total = Buffer.byteLength(html);
    for (const asset of assets) {
      const answer = await fetch(engine.origin + asset);
      assert.equal(answer.status, 200, asset);
      const expectedType = asset.includes('.js') ? /^text\/javascript/ : /^text\/css/;
      assert.match(answer.headers.get('content-type'), expectedType, asset);
      total += (await answer.arrayBuffer()).byteLength;
    }
    t.diagnostic(`total asset payload: ${total} bytes`);
    assert.ok(total < PAYLOAD_LIMIT, `the payload is ${total} bytes`);
  });

  test('loads the model list with the key typed, and remembers the key only when asked', async () => {
    await byTestId('models-status').waitFor({ state: 'visible' });
    assert.match(await byTestId('models-status').textContent(), /API key/);
    await setKey(KEYS.user);
    await waitForModels();
    assert.equal(await page.evaluate(() => localStorage.getItem('ie-playground.api-key')), null);
    await byTestId('remember-key').check();
    assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem('ie-playground.api-key'))), KEYS.user);
    await page.reload();
    assert.equal(await byTestId('api-key').inputValue(), KEYS.user);
    await waitForModels();
    await byTestId('remember-key').uncheck();
    assert.equal(await page.evaluate(() => localStorage.getItem('ie-playground.api-key')), null);

    await byTestId('tab-models').click();
    await page.locator('[data-testid=model-row][data-model=iris][data-version=v1]').click();
    await page.locator('[data-fact=backend]').filter({ hasText: 'onnx' }).waitFor();
    assert.match(await byTestId('details-inputs').textContent(), /input\s*FP32\s*\[N, 4\]/);
    assert.match(await page.locator('[data-fact=routing]').textContent(), /ab/);
    await screenshot('models');
    await byTestId('fill-example').click();
    const example = JSON.parse(await byTestId('json-input').inputValue());
    assert.equal(example.length, 4);
    const body = await sendAndRead(200);
    assert.equal(body.version, 'v1');
    assert.deepEqual(Object.keys(body.result).sort(), ['setosa', 'versicolor', 'virginica']);
  });

  test('sends an echo request in each input mode and shows the answer', async () => {
    await prepare({ mode: 'json' });
    const data = { hello: [1, 2, 3], nested: { ok: true, text: 'it\'s "quoted"' } };
    await byTestId('json-input').fill(JSON.stringify(data));
    let body = await sendAndRead(200);
    assert.deepEqual(body.result, data);
    assert.equal(await byTestId('response-version').textContent(), 'v1');
    assert.match(await byTestId('response-request-id').textContent(), /^[0-9a-f-]{36}$/);
    assert.match(await byTestId('response-rtt').textContent(), /\d ms$/);
    assert.match(await byTestId('response-server-time').textContent(), /ms$/);
    assert.match(await byTestId('response-queue-time').textContent(), /ms$/);
    assert.ok(await byTestId('error-box').isHidden());
    await screenshot('try');

    await prepare({ mode: 'text' });
    await byTestId('text-input').fill('hello, playground');
    body = await sendAndRead(200);
    assert.equal(body.result, 'hello, playground');

    await prepare({ mode: 'csv' });
    await byTestId('csv-input').fill('name,x,y\nfoo,1,2.5\n');
    assert.match(await byTestId('csv-preview').textContent(), /1 row → one object/);
    await page.waitForFunction(() => document.getElementById('endpoint-preview').textContent === 'POST /predict');
    body = await sendAndRead(200);
    assert.deepEqual(body.result, { name: 'foo', x: 1, y: 2.5 });

    await prepare({ mode: 'csv', batch: true });
    await byTestId('csv-input').fill('');
    await dropFile('csv-drop', 'rows.csv', 'name,x\n"a, quoted",1\nb,-2e3\nc,\n', 'text/csv');
    await page.waitForFunction(() => document.getElementById('csv-input').value.includes('quoted'));
    assert.match(await byTestId('csv-preview').textContent(), /3 rows → 3 batch items/);
    await page.waitForFunction(() => document.getElementById('endpoint-preview').textContent === 'POST /predict/batch');
    body = await sendAndRead(200);
    assert.deepEqual(body.results, [{ name: 'a, quoted', x: 1 }, { name: 'b', x: -2000 }, { name: 'c', x: null }]);
    await screenshot('try-csv-batch');
  });

  test('shows the code and detail of a 401 and a 422', async () => {
    await setKey('not-a-key');
    await prepare({ mode: 'json' }).catch(() => {});
    // The model list cannot load with a bad key; the picked model stays in the form.
    await byTestId('json-input').fill('{"a": 1}');
    await byTestId('send').click();
    await page.waitForFunction(() => document.getElementById('response-status').textContent.startsWith('401'));
    assert.equal(await byTestId('error-code').textContent(), 'unauthenticated');
    assert.match(await byTestId('error-detail').textContent(), /API key/);
    await byTestId('models-status').filter({ hasText: '401 unauthenticated' }).waitFor();
    await screenshot('error-401');

    await setKey(KEYS.user);
    await waitForModels();
    await prepare({ mode: 'json', batch: true });
    await byTestId('json-input').fill('[]');
    await sendAndRead(422);
    assert.equal(await byTestId('error-code').textContent(), 'invalid_request');
    assert.match(await byTestId('error-detail').textContent(), /items/);

    await prepare({ mode: 'json' });
    await byTestId('json-input').fill('{"a": 1}');
    await byTestId('timeout-ms').fill('-5');
    await sendAndRead(422);
    assert.equal(await byTestId('error-code').textContent(), 'invalid_request');
    await byTestId('timeout-ms').fill('');
  });

  test('follows an async job to succeeded, also in the jobs view', async () => {
    await prepare({ mode: 'json', exec: 'async' });
    await byTestId('json-input').fill('{"async": "yes"}');
    const accepted = await sendAndRead(202);
    assert.equal(accepted.status, 'pending');
    const jobId = accepted.job_id;
    assert.equal(await byTestId('async-job-id').textContent(), jobId);
    await byTestId('async-job-status').filter({ hasText: 'succeeded' }).waitFor({ timeout: 15_000 });
    assert.deepEqual(JSON.parse(await byTestId('response-body').textContent()).result, { async: 'yes' });

    await byTestId('tab-jobs').click();
    const row = page.locator(`[data-testid=job-row][data-job-id="${jobId}"]`);
    await row.getByTestId('job-status').filter({ hasText: 'succeeded' }).waitFor({ timeout: 10_000 });
    await row.click();
    await byTestId('job-detail-status').filter({ hasText: 'succeeded' }).waitFor();
    assert.deepEqual(JSON.parse(await byTestId('job-json').textContent()).result, { async: 'yes' });
    assert.ok(await byTestId('job-cancel').isDisabled());
    await byTestId('jobs-status').selectOption('succeeded');
    await row.waitFor();
    assert.equal(await page.locator('[data-testid=job-row] [data-testid=job-status]').filter({ hasNotText: 'succeeded' }).count(), 0);
    await byTestId('jobs-status').selectOption('');
    await screenshot('jobs');
  });

  test('cancels a running sleep:v1 job from the jobs view', async () => {
    await prepare({ model: 'sleep', version: 'v1', mode: 'json', exec: 'async' });
    await byTestId('json-input').fill('{"ms": 30000}');
    const accepted = await sendAndRead(202);
    const jobId = accepted.job_id;
    await byTestId('tab-jobs').click();
    const row = page.locator(`[data-testid=job-row][data-job-id="${jobId}"]`);
    await row.waitFor({ timeout: 10_000 });
    await row.click();
    await page.waitForFunction(() => ['pending', 'running'].includes(document.getElementById('job-detail-status').textContent));
    await byTestId('job-cancel').click();
    await byTestId('job-detail-status').filter({ hasText: 'cancelled' }).waitFor({ timeout: 10_000 });
    await row.getByTestId('job-status').filter({ hasText: 'cancelled' }).waitFor({ timeout: 10_000 });
    const stored = await apiGet(`/jobs/${jobId}`);
    assert.equal(stored.body.status, 'cancelled');
    await screenshot('jobs-cancelled');
    // The Try tab's poller sees the end too.
    await byTestId('tab-try').click();
    await byTestId('async-job-status').filter({ hasText: 'cancelled' }).waitFor({ timeout: 10_000 });
    await screenshot('try-async-cancelled');
  });

  test('benchmarks 50 requests and shows the percentiles', async () => {
    await byTestId('tab-benchmark').click();
    await byTestId('bench-model').selectOption('echo');
    await byTestId('bench-version').selectOption('v1');
    await byTestId('bench-input').fill('{"bench": 1}');
    await byTestId('bench-target').filter({ hasText: 'POST /predict · echo:v1' }).waitFor();
    await byTestId('bench-n').fill('50');
    await byTestId('bench-c').fill('4');
    await byTestId('bench-start').click();
    await page.locator('[data-testid=bench-state][data-state=finished]').waitFor({ timeout: 60_000 });
    assert.equal(await byTestId('bench-done').textContent(), '50 / 50');
    for (const p of ['p50', 'p95', 'p99']) {
      assert.match(await byTestId(`bench-${p}`).textContent(), /^\d+(\.\d+)? (ms|s)$/, p);
    }
    assert.equal(await byTestId('bench-errors').textContent(), '0');
    assert.equal(await page.locator('[data-testid=bench-histogram]').getAttribute('data-samples'), '50');
    assert.match(await page.locator('#bench-status-body tr[data-status="200"]').textContent(), /200\s*50/);
    await screenshot('benchmark');
  });

  test('sends a CSV with a header row to iris:v1 as rows of numbers, the header dropped', async () => {
    await prepare({ model: 'iris', version: 'v1', mode: 'csv', batch: true });
    await byTestId('csv-header').setChecked(true);
    await byTestId('csv-input').fill('sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n');
    await byTestId('csv-preview').filter({ hasText: 'header row dropped' }).waitFor({ timeout: 10_000 });
    assert.match(await byTestId('csv-preview').textContent(), /2 rows → 2 batch items, each an array of 4 numbers · first: \[5\.1,3\.5,1\.4,0\.2\]/);
    const body = await sendAndRead(200);
    assert.equal(body.results.length, 2);
    for (const result of body.results) assert.deepEqual(Object.keys(result).sort(), ['setosa', 'versicolor', 'virginica']);
    // The echo model takes objects: the same header still gives the keys.
    await prepare({ model: 'echo', version: 'v1', mode: 'csv' });
    await byTestId('csv-input').fill('a,b\n1,x\n');
    await byTestId('csv-preview').filter({ hasText: '1 row → one object' }).waitFor();
    assert.deepEqual((await sendAndRead(200)).result, { a: 1, b: 'x' });
  });

  test('an async job shows badge and body from the same poll, and its snippets name the job', async () => {
    // Every state the page shows is recorded: the badge and the body's status must never differ.
    await page.evaluate(() => {
      window.__pairs = [];
      const record = () => {
        const badge = document.getElementById('async-job-status').textContent;
        let body = null;
        try { body = JSON.parse(document.getElementById('response-body').textContent).status; } catch (_) { body = null; }
        if (badge && body) window.__pairs.push([badge, body]);
      };
      window.__observer = new MutationObserver(record);
      for (const id of ['async-job-status', 'response-body']) window.__observer.observe(document.getElementById(id), { childList: true, characterData: true, subtree: true });
    });
    await prepare({ model: 'sleep', version: 'v1', mode: 'json', exec: 'async' });
    await byTestId('json-input').fill('{"ms": 1500}');
    const accepted = await sendAndRead(202);
    const jobId = accepted.job_id;
    await byTestId('async-job-status').filter({ hasText: 'succeeded' }).waitFor({ timeout: 15_000 });
    const pairs = await page.evaluate(() => { window.__observer.disconnect(); return window.__pairs; });
    assert.ok(pairs.some(([badge]) => badge === 'running'), JSON.stringify(pairs));
    assert.deepEqual(pairs.filter(([badge, body]) => badge !== body), [], 'badge and body disagreed');

    const { answer, snippet } = await runCurlSnippet(REPO);
    assert.ok(snippet.includes(jobId), snippet);
    assert.ok(!snippet.includes('JOB_ID'), snippet);
    assert.equal(answer.job_id, jobId);
    assert.equal(answer.status, 'succeeded');
    await byTestId('snippet-python').click();
    await page.waitForFunction((id) => document.getElementById('snippet').textContent.includes(`job_id = "${id}"`), jobId);
    await byTestId('snippet-curl').click();
  });

  test('the Benchmark tab measures its own model and input, not the Try request', async () => {
    await prepare({ model: 'echo', version: 'v1', mode: 'json' });
    await byTestId('json-input').fill('{"try": 1}');
    await byTestId('tab-benchmark').click();
    await byTestId('bench-model').selectOption('iris');
    await byTestId('bench-version').selectOption('v1');
    await page.waitForFunction(() => { try { return JSON.parse(document.getElementById('bench-input').value).length === 4; } catch (_) { return false; } });
    await byTestId('bench-target').filter({ hasText: 'POST /predict · iris:v1' }).waitFor();
    const sent = [];
    const onRequest = (request) => { if (new URL(request.url()).pathname === '/predict') sent.push(JSON.parse(request.postData())); };
    page.on('request', onRequest);
    await byTestId('bench-n').fill('20');
    await byTestId('bench-c').fill('2');
    await byTestId('bench-start').click();
    await byTestId('bench-done').filter({ hasText: '20 / 20' }).waitFor({ timeout: 60_000 });
    await page.locator('[data-testid=bench-state][data-state=finished]').waitFor({ timeout: 60_000 });
    page.off('request', onRequest);
    assert.equal(await byTestId('bench-errors').textContent(), '0');
    assert.equal(sent.length, 20);
    assert.ok(sent.every((body) => body.model === 'iris' && body.version === 'v1' && body.data.length === 4), JSON.stringify(sent[0]));
    // The Try request only when asked.
    await byTestId('bench-from-try').click();
    await byTestId('bench-target').filter({ hasText: 'POST /predict · echo:v1' }).waitFor();
    assert.deepEqual(JSON.parse(await byTestId('bench-input').inputValue()), { try: 1 });
  });

  test('copies a curl snippet that returns the same answer when run', async () => {
    await prepare({ mode: 'json' });
    const data = { snippet: [1, 2.5, 'x'], quote: "it's" };
    await byTestId('json-input').fill(JSON.stringify(data));
    const shown = await sendAndRead(200);
    await byTestId('snippet-curl').click();
    await byTestId('copy-snippet').click();
    await byTestId('copy-status').filter({ hasText: 'Copied.' }).waitFor();
    const snippet = await page.evaluate(() => navigator.clipboard.readText());
    assert.ok(snippet.includes(`X-API-Key: ${KEYS.user}`), snippet);
    assert.ok(snippet.includes(`${engine.origin}/predict`), snippet);
    const { stdout } = await run('bash', ['-c', snippet], { timeout: 30_000 });
    const answer = JSON.parse(stdout);
    assert.deepEqual(answer.result, shown.result);
    assert.equal(answer.model, shown.model);
    assert.equal(answer.version, shown.version);

    for (const language of ['python', 'js']) {
      await byTestId(`snippet-${language}`).click();
      await page.waitForFunction(() => document.getElementById('snippet').textContent.includes('BASE_URL'));
      assert.ok((await byTestId('snippet').textContent()).includes(KEYS.user));
    }
    await byTestId('snippet-curl').click();
  });

  test('keeps the requests in history and replays them', async () => {
    await byTestId('tab-history').click();
    const rows = page.locator('[data-testid=history-row]');
    assert.ok((await rows.count()) >= 8, `history rows: ${await rows.count()}`);
    assert.match(await rows.first().textContent(), /echo:v1/);
    await screenshot('history');
    const textRow = rows.filter({ hasText: 'TEXT: hello, playground' }).first();
    await textRow.getByTestId('history-replay').click();
    await page.waitForFunction(() => document.getElementById('response-status').textContent.startsWith('200'));
    assert.equal(JSON.parse(await byTestId('response-body').textContent()).result, 'hello, playground');
    assert.ok(await byTestId('text-input').isVisible());
  });

  test('shows readiness, and live metrics only for an admin key', async () => {
    await byTestId('health-ready').filter({ hasText: 'ready' }).waitFor();
    await byTestId('metrics-note').waitFor({ state: 'visible' });
    assert.ok(await byTestId('health-metrics').isHidden());
    await setKey(KEYS.admin);
    await byTestId('health-metrics').waitFor({ state: 'visible', timeout: 10_000 });
    // Some traffic for the charts, then two rate samples (one scrape every 3 s).
    for (let i = 0; i < 20; i += 1) {
      await fetch(`${engine.origin}/predict`, {
        method: 'POST',
        headers: { 'X-API-Key': KEYS.user, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: 'echo', version: 'v1', data: i }),
      });
    }
    await page.waitForFunction(() => Number(document.getElementById('spark-rps').dataset.points) >= 2, null, { timeout: 20_000 });
    assert.match(await byTestId('metric-rps').textContent(), /^\d+\.\d$/);
    assert.match(await byTestId('metric-loaded').textContent(), /^\d+$/);
    assert.match(await byTestId('metric-queue').textContent(), /^\d+$/);
    await byTestId('tab-try').click();
    await screenshot('health-admin');
    await setKey(KEYS.user);
    await byTestId('health-metrics').waitFor({ state: 'hidden', timeout: 10_000 });
  });

  test('classifies an uploaded PNG with digits_cnn:v2 and charts the ten scores', async () => {
    const expected = JSON.parse(readFileSync(path.join(REPO, 'testdata', 'expected', 'digits_cnn-v2.json'), 'utf8'));
    const images = path.join(REPO, 'testdata', 'images', 'digits');
    const digit = expected.cases.find((c) => path.basename(c.file) === 'digit-0.png') || expected.cases[0];
    const name = path.basename(digit.file);
    const label = String(digit.label);

    await prepare({ model: 'digits_cnn', version: 'v2', mode: 'image' });
    await byTestId('model-input-hint').filter({ hasText: '8×8' }).waitFor();
    await byTestId('image-file').setInputFiles(path.join(images, name));
    const preview = byTestId('image-preview');
    await preview.waitFor();
    assert.equal(await preview.getAttribute('alt'), name);
    await page.waitForFunction(() => {
      const img = document.querySelector('[data-testid=image-preview]');
      return img && img.complete && img.naturalWidth > 0;
    });
    assert.match(await preview.getAttribute('src'), /^data:image\/png;base64,/);
    assert.match(await byTestId('image-summary').textContent(), /1 image/);

    const body = await sendAndRead(200);
    assert.equal(body.version, 'v2');
    assert.equal(body.result.label, label);
    await byTestId('score-chart').waitFor();
    assert.equal(await byTestId('predicted-label').textContent(), label);
    const bars = await chartBars();
    assert.equal(bars.length, 10);
    assert.deepEqual(bars.map((b) => b.label).sort(), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    assert.equal(bars[0].label, label, 'the highest bar is the predicted digit');
    assert.ok(bars[0].top, 'the predicted bar is highlighted');
    assert.equal(bars.filter((b) => b.top).length, 1);
    assert.ok(bars.every((b, i) => i === 0 || b.score <= bars[i - 1].score), 'bars are sorted by score');
    assert.equal(await page.locator(`[data-testid="score-bar-${label}"]`).count(), 1);
    await screenshot('try-image');

    // The curl snippet posts the file itself (Content-Type: image/png) and gets the same label.
    const { answer, snippet } = await runCurlSnippet(images);
    assert.ok(snippet.includes(`--data-binary @'${name}'`), snippet);
    assert.ok(snippet.includes('Content-Type: image/png'), snippet);
    assert.ok(!snippet.includes('image_base64'), snippet);
    assert.equal(answer.result.label, label);
    assert.equal(answer.version, 'v2');
  });

  test('classifies typed texts with text_classifier:v1: one line, then a list of two', async () => {
    await byTestId('tab-try').click();
    await byTestId('exec-sync').click();
    await byTestId('batch-toggle').setChecked(false);
    await byTestId('model-select').selectOption('text_classifier');
    await byTestId('version-select').selectOption('v1');
    // The model takes text: the Text mode is chosen for it.
    await page.locator('[data-testid=mode-text][aria-pressed=true]').waitFor();
    await byTestId('model-input-hint').filter({ hasText: 'takes text' }).waitFor();
    assert.ok(await byTestId('text-pair-input').isVisible());
    await byTestId('text-pair-input').fill('');
    await byTestId('text-input').fill('What a wonderful, delightful film: I loved every minute.');
    await byTestId('text-preview').filter({ hasText: '1 line → one text' }).waitFor();

    let body = await sendAndRead(200);
    assert.ok(['negative', 'positive'].includes(body.result.label), JSON.stringify(body.result));
    await byTestId('score-chart').waitFor();
    assert.equal(await byTestId('predicted-label').textContent(), body.result.label);
    let bars = await chartBars();
    assert.deepEqual(bars.map((b) => b.label).sort(), ['negative', 'positive']);
    assert.equal(bars[0].label, body.result.label);
    assert.ok(bars[0].top);
    await screenshot('try-text');

    await byTestId('text-input').fill('I loved it, a masterpiece.\nA dull, boring and terrible waste of time.');
    await byTestId('text-preview').filter({ hasText: '2 lines → a list of 2 texts' }).waitFor();
    body = await sendAndRead(200);
    assert.ok(Array.isArray(body.result) && body.result.length === 2, JSON.stringify(body.result));
    const charts = page.locator('[data-testid=score-chart]');
    assert.equal(await charts.count(), 2);
    for (let i = 0; i < 2; i += 1) {
      assert.equal(await charts.nth(i).getByTestId('predicted-label').textContent(), body.result[i].label);
      assert.equal(await charts.nth(i).locator('[data-testid^="score-bar-"]').count(), 2);
    }
    await screenshot('try-text-list');

    // A JSON model afterwards: the mode chosen for the text model goes back to JSON.
    await byTestId('model-select').selectOption('iris');
    await page.locator('[data-testid=mode-json][aria-pressed=true]').waitFor();
    assert.ok(await byTestId('model-input-hint').isHidden());
  });

  test('summarises an embedding of sentence_embedder:v1 (its size and first values)', async () => {
    await prepare({ model: 'sentence_embedder', version: 'v1', mode: 'text' });
    await byTestId('text-input').fill('A sentence to embed.');
    const body = await sendAndRead(200);
    assert.ok(Array.isArray(body.result.embedding), JSON.stringify(body.result).slice(0, 200));
    const summary = byTestId('embedding-summary');
    await summary.waitFor();
    assert.equal(await summary.getAttribute('data-dim'), String(body.result.embedding.length));
    assert.equal(await byTestId('embedding-dim').textContent(), `${body.result.embedding.length} dimensions`);
    assert.match(await byTestId('embedding-head').textContent(), /^\[-?\d\.\d{4}/);
    await screenshot('try-embedding');
  });
});
