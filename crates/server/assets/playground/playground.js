// Inference Engine playground. Plain JavaScript, no dependencies, no inline handlers (the page's
// Content-Security-Policy allows only this file). Every API call goes to this origin and carries
// the key typed at the top; the key is stored (localStorage) only when "remember" is ticked.
(function () {
  'use strict';

  const STORAGE = {
    key: 'ie-playground.api-key',
    history: 'ie-playground.history.v1',
    form: 'ie-playground.form.v1',
  };
  const HISTORY_MAX = 50;
  /** The model picker's "other…" entry: a model typed by hand (for keys that cannot list models). */
  const OTHER = '__other__';
  const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
  const EXAMPLES = {
    echo: { text: 'hello, playground', values: [1, 2, 3] },
    sleep: { ms: 500 },
  };
  const TEXT_EXAMPLE = 'What a wonderful little engine: fast, tidy and easy to use.';
  /** What an image model takes (the file input's `accept`), by extension for files without a type. */
  const IMAGE_TYPES = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp' };
  /** Images are kept in the stored form and in history only up to this much base64 in all. */
  const IMAGE_KEEP_MAX = 32 * 1024;
  /** At most this many results of one answer get a chart (the JSON below has them all). */
  const VISUAL_MAX = 8;
  /** At most this many bars per chart (the highest scores). */
  const BARS_MAX = 20;

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);

  /** Builds an element; children are nodes or strings (set as text, never parsed as HTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name === 'text') node.textContent = value;
      else if (name.startsWith('data')) node.setAttribute(name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()), value);
      else node.setAttribute(name, value === true ? '' : value);
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function storageGet(key, fallback) {
    try {
      const raw = window.localStorage.getItem(key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (_) {
      return fallback;
    }
  }

  function storageSet(key, value) {
    try {
      if (value === undefined) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, JSON.stringify(value));
    } catch (_) {
      // Storage full or disabled: the page works without it.
    }
  }

  function formatMs(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
    if (ms < 10) return ms.toFixed(2) + ' ms';
    if (ms < 1000) return ms.toFixed(1) + ' ms';
    return (ms / 1000).toFixed(2) + ' s';
  }

  function formatTime(iso) {
    if (!iso) return '–';
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    return date.toLocaleTimeString([], { hour12: false }) + '.' + String(date.getMilliseconds()).padStart(3, '0');
  }

  function isPrimitive(value) {
    return value === null || typeof value !== 'object';
  }

  /**
   * Pretty JSON, with arrays of numbers/strings kept on one line (an MLP's 784 features or ten
   * probabilities stay readable). `literal` renders scalars (JSON or Python).
   */
  function pretty(value, literal, indent) {
    const render = literal || ((v) => JSON.stringify(v));
    const pad = indent || '';
    const inner = pad + '  ';
    if (isPrimitive(value)) return render(value);
    if (Array.isArray(value)) {
      if (value.length === 0) return '[]';
      if (value.every(isPrimitive)) return '[' + value.map(render).join(', ') + ']';
      return '[\n' + value.map((v) => inner + pretty(v, literal, inner)).join(',\n') + '\n' + pad + ']';
    }
    const keys = Object.keys(value);
    if (keys.length === 0) return '{}';
    return '{\n' + keys.map((k) => inner + JSON.stringify(k) + ': ' + pretty(value[k], literal, inner)).join(',\n') + '\n' + pad + '}';
  }

  function pythonScalar(value) {
    if (value === null) return 'None';
    if (value === true) return 'True';
    if (value === false) return 'False';
    return JSON.stringify(value);
  }

  function statusClass(status) {
    if (status === 'succeeded' || status === 'ready' || (typeof status === 'number' && status >= 200 && status < 300)) return 'pill ok';
    if (status === 'failed' || status === 'unreachable' || (typeof status === 'number' && (status >= 400 || status === 0))) return 'pill bad';
    if (status === 'cancelled') return 'pill';
    if (status === 'running' || status === 'pending') return 'pill info';
    return 'pill warn';
  }

  function setPill(node, text, status) {
    node.textContent = text;
    node.className = statusClass(status === undefined ? text : status);
  }

  function sleep(ms) {
    return new Promise((resolve) => window.setTimeout(resolve, ms));
  }

  // ---------------------------------------------------------------- API

  const state = {
    key: '',
    models: [], // [{name, version, backend, loaded, ready, error}]
    details: new Map(), // "name/version" -> details
    isAdmin: false,
    snippetLang: 'curl',
    inputMode: 'json',
    exec: 'sync',
    lastRequest: null,
    lastJob: null, // {jobId, signature} of the last async job this page submitted
    images: [], // [{name, type, size, base64}] of the Image mode; base64 null when not kept
    autoMode: false, // the input mode was chosen for the model (not by a click)
    modeClicks: 0,
  };

  /**
   * One call to this origin. Never throws: a network failure is status 0. `json` is the parsed
   * body when it is JSON.
   */
  async function api(method, path, body, options) {
    const headers = {};
    if (state.key) headers['X-API-Key'] = state.key;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const started = performance.now();
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
        signal: options && options.signal,
      });
    } catch (err) {
      return { ok: false, status: 0, headers: new Headers(), text: '', json: null, rtt: performance.now() - started, networkError: String(err && err.message || err) };
    }
    let text = '';
    try {
      text = await response.text();
    } catch (_) {
      text = '';
    }
    const rtt = performance.now() - started;
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch (_) {
      json = null;
    }
    return { ok: response.ok, status: response.status, statusText: response.statusText, headers: response.headers, text, json, rtt };
  }

  /** "401 unauthenticated: a valid API key is required…" for an error answer. */
  function describeError(answer) {
    if (answer.status === 0) return 'the engine did not answer (' + (answer.networkError || 'network error') + ')';
    const body = answer.json;
    if (body && body.code) return answer.status + ' ' + body.code + ': ' + (body.detail || '');
    return answer.status + ' ' + (answer.statusText || '') + (answer.text ? ': ' + answer.text.slice(0, 200) : '');
  }

  // ---------------------------------------------------------------- tabs

  const views = ['try', 'models', 'benchmark', 'jobs', 'history'];
  let activeView = 'try';

  function showView(name) {
    if (!views.includes(name)) name = 'try';
    activeView = name;
    for (const view of views) {
      $('view-' + view).hidden = view !== name;
      $('tab-' + view).setAttribute('aria-selected', String(view === name));
    }
    if (window.location.hash !== '#' + name) window.history.replaceState(null, '', '#' + name);
    if (name === 'jobs') refreshJobs(true);
    if (name === 'history') renderHistory();
    if (name === 'benchmark') renderBenchTarget();
    scheduleJobsRefresh();
  }

  // ---------------------------------------------------------------- API key

  let keyChangeTimer = 0;

  function initKey() {
    const remembered = storageGet(STORAGE.key, null);
    if (typeof remembered === 'string' && remembered) {
      state.key = remembered;
      $('api-key').value = remembered;
      $('remember-key').checked = true;
    }
    $('key-form').addEventListener('submit', (event) => {
      event.preventDefault();
      onKeyChanged(true);
    });
    $('api-key').addEventListener('input', () => onKeyChanged(false));
    $('remember-key').addEventListener('change', persistKey);
    $('key-toggle').addEventListener('click', () => {
      const input = $('api-key');
      const show = input.type === 'password';
      input.type = show ? 'text' : 'password';
      $('key-toggle').textContent = show ? 'hide' : 'show';
      $('key-toggle').setAttribute('aria-pressed', String(show));
    });
  }

  function persistKey() {
    if ($('remember-key').checked && state.key) storageSet(STORAGE.key, state.key);
    else storageSet(STORAGE.key, undefined);
  }

  function onKeyChanged(now) {
    state.key = $('api-key').value.trim();
    persistKey();
    updateSnippet();
    window.clearTimeout(keyChangeTimer);
    keyChangeTimer = window.setTimeout(() => {
      loadModels();
      refreshHealth();
      if (activeView === 'jobs') refreshJobs(true);
    }, now ? 0 : 350);
  }

  // ---------------------------------------------------------------- models

  function modelNames() {
    return [...new Set(state.models.map((m) => m.name))];
  }

  function versionsOf(name) {
    return state.models.filter((m) => m.name === name);
  }

  function setModelsNotice(text) {
    const notice = $('models-status');
    notice.textContent = text || '';
    notice.hidden = !text;
  }

  let modelsRun = 0;

  async function loadModels() {
    const run = ++modelsRun;
    // On failure the last list stays: models are the same for every key, and a key that may
    // predict but not list models can still pick one (or type it under "other…").
    if (!state.key) {
      renderModelPicker();
      renderModelsTable();
      setModelsNotice('Enter an API key (top right) to list the models.');
      return;
    }
    const answer = await api('GET', '/models');
    if (run !== modelsRun) return; // a newer key's answer wins
    if (!answer.ok || !answer.json || !Array.isArray(answer.json.models)) {
      setModelsNotice('Could not list the models: ' + describeError(answer));
      return;
    } else {
      state.models = answer.json.models;
      setModelsNotice(state.models.length ? '' : 'The engine serves no models.');
    }
    state.details.clear();
    renderModelPicker();
    renderModelsTable();
  }

  function renderModelPicker() {
    const modelSelect = $('model-select');
    const previous = modelSelect.value;
    modelSelect.replaceChildren();
    const names = modelNames();
    for (const name of names) modelSelect.append(el('option', { value: name, text: name }));
    modelSelect.append(el('option', { value: OTHER, text: 'other…' }));
    if (names.includes(previous) || previous === OTHER) modelSelect.value = previous;
    else if (!names.length) modelSelect.value = OTHER;
    renderVersionPicker();
    const jobsModel = $('jobs-model');
    const jobsPrevious = jobsModel.value;
    jobsModel.replaceChildren(el('option', { value: '', text: 'any' }));
    for (const name of names) jobsModel.append(el('option', { value: name, text: name }));
    if (names.includes(jobsPrevious)) jobsModel.value = jobsPrevious;
    renderBenchPicker();
    if (names.length && pendingForm) {
      // A form restored before the list arrived.
      selectModel(pendingForm.model, pendingForm.version);
      pendingForm = null;
    }
    refreshModelKind(false);
    updateSnippet();
  }

  function renderVersionPicker(wanted) {
    const other = $('model-select').value === OTHER;
    $('manual-model').hidden = !other;
    $('version-select').disabled = other;
    const select = $('version-select');
    const previous = wanted === undefined ? select.value : wanted;
    select.replaceChildren(el('option', { value: '', text: 'routed (engine decides)' }));
    for (const model of versionsOf($('model-select').value)) {
      const label = model.version + (model.ready === false ? ' (not ready)' : '');
      select.append(el('option', { value: model.version, text: label }));
    }
    select.value = [...select.options].some((o) => o.value === previous) ? previous : '';
  }

  function renderModelsTable() {
    const body = $('models-body');
    body.replaceChildren();
    if (!state.models.length) {
      body.append(el('tr', {}, el('td', { colspan: '4', class: 'muted', text: state.key ? 'No models.' : 'Enter an API key to list the models.' })));
      return;
    }
    for (const model of state.models) {
      const stateText = model.ready === false ? 'not ready' : model.loaded ? 'loaded' : 'not loaded';
      const row = el('tr', { 'data-testid': 'model-row', 'data-model': model.name, 'data-version': model.version, title: model.error || '' },
        el('td', { class: 'mono', text: model.name }),
        el('td', { class: 'mono', text: model.version }),
        el('td', { text: model.backend }),
        el('td', {}, el('span', { class: model.ready === false ? 'pill bad' : model.loaded ? 'pill ok' : 'pill', text: stateText })));
      row.addEventListener('click', () => selectModelDetails(model.name, model.version));
      body.append(row);
    }
  }

  async function fetchDetails(name, version) {
    const id = name + '/' + version;
    if (state.details.has(id)) return state.details.get(id);
    const answer = await api('GET', '/models/' + encodeURIComponent(name) + '/' + encodeURIComponent(version));
    if (!answer.ok || !answer.json) throw new Error(describeError(answer));
    state.details.set(id, answer.json);
    return answer.json;
  }

  /** The version whose details describe a request for `name` ('' = routed: the first ready one). */
  function detailsVersion(name, version) {
    if (version) return version;
    const versions = versionsOf(name);
    const ready = versions.find((m) => m.ready !== false) || versions[0];
    return ready ? ready.version : '';
  }

  /** The details already fetched for a request's model (never a fetch: the form reads it while it builds). */
  function cachedDetails(name, version) {
    const chosen = detailsVersion(name, version);
    return chosen ? state.details.get(name + '/' + chosen) || null : null;
  }

  /** `{"kind": "text", …}` or `{"kind": "image", …}` of a model that takes raw text or images, else null. */
  function preprocessOf(name, version) {
    const details = cachedDetails(name, version);
    const preprocess = details && details.preprocess;
    return preprocess && (preprocess.kind === 'text' || preprocess.kind === 'image') ? preprocess : null;
  }

  function describePreprocess(preprocess) {
    if (!preprocess) return '';
    if (preprocess.kind === 'text') return 'text, tokenized by the engine' + (preprocess.max_length ? ' (up to ' + preprocess.max_length + ' tokens)' : '');
    return 'images (PNG, JPEG or WebP), made ' + preprocess.width + '×' + preprocess.height + ' ' + (preprocess.channels || '') + ' by the engine';
  }

  let kindRun = 0;

  /**
   * Reads the details of the model picked in the Try tab and shows what it takes. With
   * `chooseMode` (the user picked the model) the input mode follows the model: Text for text
   * models, Image for image models, back to JSON after one of those was chosen this way; a mode
   * clicked meanwhile wins.
   */
  async function refreshModelKind(chooseMode) {
    const run = ++kindRun;
    const clicks = state.modeClicks;
    const form = readForm();
    const version = form.model ? detailsVersion(form.model, form.version) : '';
    if (version && $('model-select').value !== OTHER) {
      try {
        await fetchDetails(form.model, version);
      } catch (_) {
        // No details (a key that cannot read models): the form stays generic.
      }
    }
    if (run !== kindRun) return;
    const preprocess = preprocessOf(form.model, form.version);
    const details = cachedDetails(form.model, form.version);
    const hint = $('model-input-hint');
    if (preprocess) {
      hint.textContent = form.model + ':' + version + ' takes ' + describePreprocess(preprocess)
        + (details.postprocess ? ' and answers ' + details.postprocess.replace(/_/g, ' ') : '') + '.'
        + (preprocess.kind === 'text' ? ' Text mode: one text per line.' : ' Image mode: choose or drop files.');
      hint.dataset.kind = preprocess.kind;
    }
    hint.hidden = !preprocess;
    $('text-pair-row').hidden = !(preprocess && preprocess.kind === 'text');
    if (chooseMode && clicks === state.modeClicks) {
      if (preprocess) setInputMode(preprocess.kind === 'image' ? 'image' : 'text', true);
      else if (state.autoMode) setInputMode('json', true);
    }
    renderTextPreview();
    renderCsvPreview();
    updateSnippet();
  }

  let selectedDetails = null;

  async function selectModelDetails(name, version) {
    for (const row of $('models-body').children) {
      row.classList.toggle('selected', row.dataset.model === name && row.dataset.version === version);
    }
    $('details-title').textContent = name + ':' + version;
    $('details-empty').hidden = true;
    let details;
    try {
      details = await fetchDetails(name, version);
    } catch (err) {
      selectedDetails = null;
      $('details-body').hidden = true;
      $('details-empty').hidden = false;
      $('details-empty').textContent = 'Could not read the details: ' + err.message;
      $('fill-example').disabled = true;
      $('use-model').disabled = true;
      return;
    }
    selectedDetails = details;
    $('details-body').hidden = false;
    $('details-description').textContent = details.description || '';
    $('details-description').hidden = !details.description;
    const facts = $('details-facts');
    facts.replaceChildren();
    const batching = details.batching ? 'max_batch_size ' + details.batching.max_batch_size + ', max_delay_ms ' + details.batching.max_delay_ms : 'off';
    const rows = [
      ['backend', details.backend],
      ['state', (details.ready === false ? 'not ready' : 'ready') + ', ' + (details.loaded ? 'loaded' : 'not loaded') + (details.pinned ? ', pinned' : '')],
      ['routing', details.routing || 'none (a request must name the version when several exist)'],
      ['SLA timeout', details.timeout_s ? details.timeout_s + ' s' : 'none'],
      ['executor pool', details.executor || '–'],
      ['dynamic batching', batching],
    ];
    if (details.preprocess) rows.push(['input', describePreprocess(details.preprocess) || details.preprocess.kind]);
    if (details.postprocess) rows.push(['answer', details.postprocess]);
    if (details.error) rows.push(['error', details.error]);
    for (const [term, value] of rows) facts.append(el('dt', { text: term }), el('dd', { 'data-fact': term, text: String(value) }));
    renderTensors($('details-inputs'), details.inputs);
    renderTensors($('details-outputs'), details.outputs);
    $('fill-example').disabled = false;
    $('use-model').disabled = false;
  }

  function renderTensors(body, tensors) {
    body.replaceChildren();
    if (!tensors || !tensors.length) {
      body.append(el('tr', {}, el('td', { colspan: '3', class: 'muted', text: 'any JSON (built-in model)' })));
      return;
    }
    for (const tensor of tensors) {
      body.append(el('tr', {},
        el('td', { class: 'mono', text: tensor.name }),
        el('td', { class: 'mono', text: tensor.datatype }),
        el('td', { class: 'mono', text: '[' + (tensor.shape || []).map((d) => (d < 0 ? 'N' : d)).join(', ') + ']' })));
    }
  }

  /** A valid input for a model from its input shapes (the batch dimension dropped: one example). */
  function exampleInput(details) {
    const inputs = details.inputs || [];
    if (!inputs.length) return EXAMPLES[details.name] || { hello: 'world' };
    const tensorExample = (tensor) => {
      const shape = (tensor.shape || []).slice();
      if (shape.length > 1 && shape[0] < 0) shape.shift();
      const type = String(tensor.datatype || '').toUpperCase();
      const fill = type.startsWith('FP') || type.startsWith('BF') ? 0.5
        : type.startsWith('INT') || type.startsWith('UINT') ? 1
          : type === 'BOOL' ? false : 'text';
      const build = (dims) => {
        if (!dims.length) return fill;
        const length = dims[0] > 0 ? dims[0] : 1;
        return Array.from({ length }, () => build(dims.slice(1)));
      };
      return build(shape);
    };
    if (inputs.length === 1) return tensorExample(inputs[0]);
    const example = {};
    for (const tensor of inputs) example[tensor.name] = tensorExample(tensor);
    return example;
  }

  function useModel(name, version) {
    $('model-select').value = name;
    renderVersionPicker(version);
    refreshModelKind(true);
    updateSnippet();
  }

  /** Fills the Try form with an example for `details`; `version` is what to pick ('' = routed). */
  function fillExampleFrom(details, version) {
    useModel(details.name, version);
    $('batch-toggle').checked = false;
    hideInputError();
    const preprocess = details.preprocess;
    if (preprocess && preprocess.kind === 'text') {
      setInputMode('text');
      $('text-input').value = TEXT_EXAMPLE;
      $('text-pair-input').value = '';
    } else if (preprocess && preprocess.kind === 'image') {
      setInputMode('image');
      setImages([exampleImage(preprocess)]);
    } else {
      setInputMode('json');
      $('json-input').value = pretty(exampleInput(details));
    }
    renderTextPreview();
    updateSnippet();
  }

  async function fillExampleForTry() {
    const name = $('model-select').value;
    const versions = versionsOf(name);
    if (!name || !versions.length) {
      showInputError('Pick a model first.');
      return;
    }
    const version = $('version-select').value || (versions.find((m) => m.ready !== false) || versions[0]).version;
    try {
      const details = await fetchDetails(name, version);
      fillExampleFrom(details, $('version-select').value);
    } catch (err) {
      showInputError('Could not read the model details: ' + err.message);
    }
  }

  // ---------------------------------------------------------------- input

  class InputError extends Error {}

  function showInputError(message) {
    $('input-error').textContent = message;
    $('input-error').hidden = false;
  }

  function hideInputError() {
    $('input-error').hidden = true;
  }

  /** `auto`: chosen for the model, not by the user (a later model may choose again). */
  function setInputMode(mode, auto) {
    state.inputMode = mode;
    state.autoMode = Boolean(auto);
    for (const button of document.querySelectorAll('[data-input-mode]')) {
      button.setAttribute('aria-pressed', String(button.dataset.inputMode === mode));
    }
    $('input-json').hidden = mode !== 'json';
    $('input-text').hidden = mode !== 'text';
    $('input-csv').hidden = mode !== 'csv';
    $('input-image').hidden = mode !== 'image';
    $('format-json').hidden = mode !== 'json';
    if (mode === 'csv') renderCsvPreview();
    if (mode === 'text') renderTextPreview();
    updateSnippet();
  }

  function setExec(exec) {
    state.exec = exec;
    for (const button of document.querySelectorAll('[data-exec]')) {
      button.setAttribute('aria-pressed', String(button.dataset.exec === exec));
    }
    updateSnippet();
  }

  /** RFC 4180 CSV (quotes, doubled quotes, CRLF); the delimiter (, ; or tab) is guessed from the first line. */
  function parseCsv(text) {
    const firstLine = text.split(/\r?\n/, 1)[0] || '';
    const count = (ch) => firstLine.split(ch).length - 1;
    const delimiter = [',', ';', '\t'].reduce((best, ch) => (count(ch) > count(best) ? ch : best), ',');
    const rows = [];
    let row = [];
    let field = '';
    let quoted = false;
    for (let i = 0; i < text.length; i += 1) {
      const ch = text[i];
      if (quoted) {
        if (ch === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 1;
          } else {
            quoted = false;
          }
        } else {
          field += ch;
        }
      } else if (ch === '"' && field.trim() === '') {
        field = '';
        quoted = true;
      } else if (ch === delimiter) {
        row.push(field);
        field = '';
      } else if (ch === '\n' || ch === '\r') {
        if (ch === '\r' && text[i + 1] === '\n') i += 1;
        row.push(field);
        rows.push(row);
        row = [];
        field = '';
      } else {
        field += ch;
      }
    }
    if (quoted) throw new InputError('CSV: a quoted field is not closed');
    if (field !== '' || row.length) {
      row.push(field);
      rows.push(row);
    }
    return rows.filter((r) => r.some((cell) => cell.trim() !== ''));
  }

  const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

  function csvCell(raw) {
    const cell = raw.trim();
    if (cell === '') return null;
    if (NUMBER.test(cell)) return Number(cell);
    return cell;
  }

  /** The CSV as records: objects keyed by the header row, or arrays of cells without one. */
  function csvRecords(text, header) {
    const rows = parseCsv(text);
    if (!rows.length) throw new InputError('CSV: there is nothing to send');
    if (!header) return rows.map((r) => r.map(csvCell));
    const keys = rows[0].map((key, i) => key.trim() || 'column_' + (i + 1));
    if (rows.length < 2) throw new InputError('CSV: the header row has no data rows under it');
    return rows.slice(1).map((r, index) => {
      if (r.length > keys.length) throw new InputError('CSV: row ' + (index + 2) + ' has ' + r.length + ' cells, the header ' + keys.length);
      const record = {};
      keys.forEach((key, i) => {
        record[key] = i < r.length ? csvCell(r[i]) : null;
      });
      return record;
    });
  }

  /**
   * The inputs of a model that takes tensors (its details list a datatype and shape for each),
   * or null for a model that takes any JSON (built-ins, pipelines) or raw text or images.
   */
  function tensorInputs(details) {
    if (!details || (details.preprocess && (details.preprocess.kind === 'text' || details.preprocess.kind === 'image'))) return null;
    const inputs = details.inputs;
    if (!Array.isArray(inputs) || !inputs.length) return null;
    return inputs.every((input) => input && input.name && input.datatype && Array.isArray(input.shape)) ? inputs : null;
  }

  /** One example's dimensions of an input: its shape without the leading batch axis. */
  function exampleDims(input) {
    const shape = input.shape.slice();
    if (shape.length && shape[0] < 0) shape.shift();
    return shape;
  }

  const isTextType = (input) => String(input.datatype).toUpperCase() === 'BYTES' || String(input.datatype).toUpperCase() === 'STRING';

  /** A cell for an input: its text for a string tensor, else a number (an error names the cell). */
  function tensorCell(raw, input, where) {
    const cell = raw.trim();
    if (isTextType(input)) return cell;
    if (String(input.datatype).toUpperCase() === 'BOOL' && /^(true|false)$/i.test(cell)) return cell.toLowerCase() === 'true';
    if (!NUMBER.test(cell)) {
      throw new InputError('CSV: ' + where + ' is ' + (cell === '' ? 'empty' : JSON.stringify(cell)) + ', not a number (input ' + input.name + ' is ' + input.datatype + ')');
    }
    return Number(cell);
  }

  /** `flat` (one row's values) in the nested shape of `dims` (all known sizes). */
  function reshape(flat, dims) {
    if (dims.length <= 1) return flat;
    const step = flat.length / dims[0];
    return Array.from({ length: dims[0] }, (_, i) => reshape(flat.slice(i * step, (i + 1) * step), dims.slice(1)));
  }

  /** A header row is text: a first row of numbers is data even with the header box ticked. */
  function isHeaderRow(row) {
    return row.some((cell) => cell.trim() !== '' && !NUMBER.test(cell.trim()));
  }

  /**
   * What the CSV mode sends for the model picked: `{records, header, columns, what}`. A model
   * that takes tensors gets rows of numbers (a header row, which it would refuse as object
   * keys, is dropped, or maps the columns onto the inputs of a multi-input model); any other
   * model gets objects keyed by the header, or arrays of cells without one. `what` describes
   * one record for the preview.
   */
  function csvPlan(text, header, details) {
    const inputs = tensorInputs(details);
    if (!inputs) {
      const records = csvRecords(text, header);
      return { records, header: header ? 'keys' : null, what: header ? 'object' : 'array' };
    }
    const rows = parseCsv(text);
    if (!rows.length) throw new InputError('CSV: there is nothing to send');
    const names = header && isHeaderRow(rows[0]) ? rows[0].map((cell) => cell.trim()) : null;
    const data = names ? rows.slice(1) : rows;
    if (!data.length) throw new InputError('CSV: the header row has no data rows under it');
    const model = details.name + ':' + details.version;
    if (inputs.length === 1) {
      const input = inputs[0];
      const dims = exampleDims(input);
      const known = dims.every((d) => d > 0);
      const size = known ? dims.reduce((a, b) => a * b, 1) : null;
      const records = data.map((row, index) => {
        const line = index + 1 + (names ? 1 : 0);
        if (size !== null && row.length !== size) {
          throw new InputError('CSV: row ' + line + ' has ' + row.length + (row.length === 1 ? ' value' : ' values') + '; ' + model + ' takes ' + size + ' per row (input ' + input.name + ' [' + input.shape.map((d) => (d < 0 ? 'N' : d)).join(', ') + '])');
        }
        const values = row.map((cell, i) => tensorCell(cell, input, 'row ' + line + ', column ' + (i + 1)));
        return dims.length === 0 ? values[0] : known ? reshape(values, dims) : values;
      });
      const what = dims.length === 0 ? 'value' : dims.length === 1 ? 'array of ' + (size === null ? 'the row\'s' : size) + (isTextType(input) ? ' strings' : ' numbers') : '[' + dims.join('×') + '] array';
      return { records, header: names ? 'dropped' : null, columns: names, what };
    }
    // Several inputs: the header names them, one column per input (one value per example).
    const wanted = inputs.map((input) => input.name);
    if (!names) throw new InputError('CSV: ' + model + ' takes ' + wanted.length + ' inputs: name them in a header row (' + wanted.join(', ') + ')');
    const missing = wanted.filter((name) => !names.includes(name));
    const unknown = names.filter((name) => !wanted.includes(name));
    if (missing.length || unknown.length) {
      throw new InputError('CSV: the header must name the inputs of ' + model + ' (' + wanted.join(', ') + ')'
        + (missing.length ? '; missing ' + missing.join(', ') : '') + (unknown.length ? '; not an input: ' + unknown.join(', ') : ''));
    }
    for (const input of inputs) {
      const dims = exampleDims(input);
      if (!dims.every((d) => d === 1)) throw new InputError('CSV: input ' + input.name + ' of ' + model + ' takes more than one value per example; a CSV column holds one (use JSON)');
    }
    const records = data.map((row, index) => {
      const line = index + 2;
      if (row.length !== names.length) throw new InputError('CSV: row ' + line + ' has ' + row.length + ' cells, the header ' + names.length);
      const record = {};
      for (const input of inputs) {
        const column = names.indexOf(input.name);
        const value = tensorCell(row[column], input, 'row ' + line + ', column ' + input.name);
        record[input.name] = exampleDims(input).reduceRight((inner) => [inner], value);
      }
      return record;
    });
    return { records, header: 'inputs', columns: names, what: 'object of ' + inputs.length + ' inputs' };
  }

  /** The details of the model the Try form names, when they are known (null: send as the CSV reads). */
  function csvDetails(form) {
    return cachedDetails(form.model, form.version);
  }

  function renderCsvPreview() {
    const text = $('csv-input').value;
    const preview = $('csv-preview');
    if (!text.trim()) {
      preview.textContent = '';
      return;
    }
    try {
      const form = readForm();
      const details = csvDetails(form);
      const plan = csvPlan(text, form.csvHeader, details);
      const count = plan.records.length;
      const rows = count + (count === 1 ? ' row' : ' rows');
      // For a tensor model, say what each record is and show the first: the header's fate is not obvious.
      const tensors = Boolean(tensorInputs(details));
      const each = tensors ? ', each ' + (/^[aeiou]/.test(plan.what) ? 'an ' : 'a ') + plan.what : '';
      let sent;
      if (form.batch) sent = rows + ' → ' + count + ' batch items' + each;
      else if (count === 1) sent = rows + ' → one ' + plan.what;
      else sent = rows + ' → an array of ' + count + each;
      if (!tensors) {
        preview.textContent = sent;
        return;
      }
      const header = plan.header === 'dropped' ? 'header row dropped (' + plan.columns.join(', ') + ') · '
        : plan.header === 'inputs' ? 'header columns → inputs ' + plan.columns.join(', ') + ' · ' : '';
      const first = JSON.stringify(plan.records[0]);
      preview.textContent = header + sent + ' · first: ' + (first.length > 80 ? first.slice(0, 80) + '…' : first);
    } catch (err) {
      preview.textContent = err.message;
    }
  }

  function nonEmptyLines(text) {
    return String(text || '').split(/\r?\n/).filter((line) => line.trim() !== '');
  }

  /**
   * What a text model gets from the Text mode: one text per non-empty line, each paired with
   * the same line of the text_pair box when that box is filled (`{"text", "text_pair"}`).
   */
  function textItems(form) {
    const texts = nonEmptyLines(form.text);
    if (!texts.length) throw new InputError('Text: type a text first (one per line).');
    const pairs = nonEmptyLines(form.textPair);
    if (!pairs.length) return texts;
    if (pairs.length !== texts.length) {
      throw new InputError('Text pairs: ' + texts.length + (texts.length === 1 ? ' text' : ' texts') + ' but ' + pairs.length + (pairs.length === 1 ? ' text_pair line' : ' text_pair lines') + ' (one per text).');
    }
    return texts.map((text, i) => ({ text, text_pair: pairs[i] }));
  }

  function renderTextPreview() {
    const preview = $('text-preview');
    if (!preview) return;
    const form = readForm();
    const textModel = Boolean(preprocessOf(form.model, form.version) && preprocessOf(form.model, form.version).kind === 'text');
    if (!textModel) {
      const lines = nonEmptyLines(form.text).length;
      preview.textContent = form.batch ? lines + (lines === 1 ? ' line → 1 batch item' : ' lines → ' + lines + ' batch items') : 'Sent as one JSON string.';
      return;
    }
    try {
      const items = textItems(form);
      const what = typeof items[0] === 'string' ? 'text' : 'sentence pair';
      if (form.batch) preview.textContent = items.length + ' ' + what + (items.length === 1 ? '' : 's') + ' → ' + items.length + ' batch item' + (items.length === 1 ? '' : 's');
      else if (items.length === 1) preview.textContent = '1 line → one ' + what;
      else preview.textContent = items.length + ' lines → a list of ' + items.length + ' ' + what + 's';
    } catch (err) {
      preview.textContent = err.message;
    }
  }

  // ---------------------------------------------------------------- images

  /** The media type of an image file, by its type or else its extension; null when the engine takes no such image. */
  function imageType(file) {
    const types = Object.values(IMAGE_TYPES);
    if (types.includes(file.type)) return file.type;
    const extension = (/\.([a-z0-9]+)$/i.exec(file.name || '') || [])[1];
    return (extension && !file.type && IMAGE_TYPES[extension.toLowerCase()]) || null;
  }

  function readAsDataUrl(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.onerror = () => reject(reader.error || new Error('the file could not be read'));
      reader.readAsDataURL(file);
    });
  }

  /** Reads the chosen or dropped files (the images among them) into the Image mode. */
  async function loadImageFiles(files) {
    const list = [...(files || [])];
    if (!list.length) return;
    const images = [];
    const refused = [];
    for (const file of list) {
      const type = imageType(file);
      if (!type) {
        refused.push(file.name || 'a file');
        continue;
      }
      try {
        const url = await readAsDataUrl(file);
        images.push({ name: file.name || 'image', type, size: file.size, base64: url.slice(url.indexOf(',') + 1) });
      } catch (err) {
        refused.push((file.name || 'a file') + ' (' + err.message + ')');
      }
    }
    if (images.length) {
      setInputMode('image');
      setImages(images);
    }
    if (refused.length) showInputError('Image: not a PNG, JPEG or WebP image: ' + refused.join(', ') + '.');
    else hideInputError();
  }

  function setImages(images) {
    state.images = images;
    renderImages();
    updateSnippet();
  }

  function formatBytes(bytes) {
    if (!Number.isFinite(bytes)) return '';
    if (bytes < 1024) return bytes + ' B';
    if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + ' KB';
    return (bytes / 1024 / 1024).toFixed(1) + ' MB';
  }

  function renderImages() {
    const box = $('image-previews');
    box.replaceChildren();
    for (const image of state.images) {
      const caption = el('figcaption', {}, el('span', { class: 'mono', text: image.name }), ' ', el('span', { class: 'muted', text: formatBytes(image.size) }));
      const figure = el('figure', { class: 'image-preview', 'data-testid': 'image-figure', 'data-name': image.name });
      if (image.base64) {
        const img = el('img', { 'data-testid': 'image-preview', alt: image.name, src: 'data:' + image.type + ';base64,' + image.base64 });
        img.addEventListener('load', () => {
          caption.append(' ', el('span', { class: 'muted', 'data-testid': 'image-size', text: img.naturalWidth + '×' + img.naturalHeight }));
        }, { once: true });
        figure.append(img);
      } else {
        figure.append(el('div', { class: 'image-missing', text: 'not kept: choose it again' }));
      }
      figure.append(caption);
      box.append(figure);
    }
    const count = state.images.length;
    $('image-summary').textContent = !count ? 'No image chosen.'
      : count === 1 ? ($('batch-toggle').checked ? '1 image → 1 batch item' : '1 image → one {"image_base64"}')
        : count + ' images → ' + ($('batch-toggle').checked ? count + ' batch items' : 'a list of ' + count);
    $('image-clear').hidden = !count;
  }

  /** A PNG drawn at a model's input size (a ring on a dark ground): something to send without a file. */
  function exampleImage(preprocess) {
    const width = Math.max(1, Math.min(1024, preprocess.width || 32));
    const height = Math.max(1, Math.min(1024, preprocess.height || 32));
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext('2d');
    context.fillStyle = '#000';
    context.fillRect(0, 0, width, height);
    context.strokeStyle = preprocess.channels === 'rgb' ? '#f59e0b' : '#fff';
    context.lineWidth = Math.max(1, Math.round(Math.min(width, height) / 6));
    context.beginPath();
    context.ellipse(width / 2, height / 2, width * 0.3, height * 0.36, 0, 0, 2 * Math.PI);
    context.stroke();
    const url = canvas.toDataURL('image/png');
    const base64 = url.slice(url.indexOf(',') + 1);
    return { name: 'example.png', type: 'image/png', size: Math.floor((base64.length * 3) / 4), base64 };
  }

  /**
   * A form fit for storage: images whose base64 is too large to keep lose it (replay then asks
   * for them again); history keeps images only for the Image mode.
   */
  function storableForm(form, forHistory) {
    if (forHistory && form.inputMode !== 'image') return { ...form, images: [] };
    const images = form.images || [];
    const total = images.reduce((sum, image) => sum + (image.base64 ? image.base64.length : 0), 0);
    if (total <= IMAGE_KEEP_MAX) return form;
    return { ...form, images: images.map((image) => ({ ...image, base64: null })) };
  }

  /** The Try form as a plain object: what history stores and replays (never the key). */
  function readForm() {
    const other = $('model-select').value === OTHER;
    return {
      model: other ? $('model-manual').value.trim() : $('model-select').value,
      version: other ? $('version-manual').value.trim() : $('version-select').value,
      exec: state.exec,
      inputMode: state.inputMode,
      batch: $('batch-toggle').checked,
      json: $('json-input').value,
      text: $('text-input').value,
      textPair: $('text-pair-input').value,
      images: state.images.map((image) => ({ ...image })),
      csv: $('csv-input').value,
      csvHeader: $('csv-header').checked,
      timeoutMs: $('timeout-ms').value,
    };
  }

  let pendingForm = null;

  /** Picks `model` (and `version`, '' = routed) in the picker, or under "other…" when unknown. */
  function selectModel(model, version) {
    if (modelNames().includes(model)) {
      $('model-select').value = model;
      renderVersionPicker(version || '');
    } else {
      $('model-select').value = OTHER;
      $('model-manual').value = model || '';
      $('version-manual').value = version || '';
      renderVersionPicker('');
    }
  }

  function writeForm(form) {
    if (!form) return;
    if (state.models.length) selectModel(form.model, form.version);
    else pendingForm = form;
    $('batch-toggle').checked = Boolean(form.batch);
    $('json-input').value = form.json !== undefined ? form.json : $('json-input').value;
    $('text-input').value = form.text || '';
    $('text-pair-input').value = form.textPair || '';
    state.images = Array.isArray(form.images) ? form.images.filter((image) => image && image.name).map((image) => ({ ...image })) : [];
    renderImages();
    $('csv-input').value = form.csv || '';
    $('csv-header').checked = form.csvHeader !== false;
    $('timeout-ms').value = form.timeoutMs || '';
    setExec(form.exec === 'async' ? 'async' : 'sync');
    setInputMode(['json', 'text', 'csv', 'image'].includes(form.inputMode) ? form.inputMode : 'json');
    if (state.models.length) refreshModelKind(false);
  }

  /** The request the form describes: `{method, path, body}`; throws InputError when it cannot be built. */
  function buildRequest(form, forceSync) {
    if (!form.model) throw new InputError('Pick a model first (the list needs an API key that can read the models), or type one under "other…".');
    let data;
    // What each example is, for the answer's charts: a text or an image's name.
    let inputs = [];
    const preprocess = preprocessOf(form.model, form.version);
    const textModel = Boolean(preprocess && preprocess.kind === 'text');
    if (form.inputMode === 'json') {
      try {
        data = JSON.parse(form.json);
      } catch (err) {
        throw new InputError('JSON: ' + err.message);
      }
    } else if (form.inputMode === 'text') {
      if (textModel) {
        const items = textItems(form);
        inputs = items.map((item) => (typeof item === 'string' ? item : item.text));
        data = form.batch || items.length > 1 ? items : items[0];
      } else {
        data = form.batch ? nonEmptyLines(form.text) : form.text;
      }
    } else if (form.inputMode === 'image') {
      const images = form.images || [];
      if (!images.length) throw new InputError('Image: choose a PNG, JPEG or WebP file first.');
      const missing = images.filter((image) => !image.base64).map((image) => image.name);
      if (missing.length) throw new InputError('Image: ' + missing.join(', ') + ' was too large to keep in this browser: choose it again.');
      inputs = images.map((image) => image.name);
      const items = images.map((image) => ({ image_base64: image.base64 }));
      data = form.batch || items.length > 1 ? items : items[0];
    } else {
      const records = csvPlan(form.csv, form.csvHeader, csvDetails(form)).records;
      data = form.batch ? records : records.length === 1 ? records[0] : records;
    }
    if (form.inputMode === 'json') inputs = textsOf(data);
    const body = { model: form.model };
    if (form.version) body.version = form.version;
    if (form.batch) {
      if (form.inputMode === 'json' && !Array.isArray(data)) throw new InputError('Batch: the JSON must be an array, one element per item.');
      body.items = data;
    } else {
      body.data = data;
    }
    const timeout = String(form.timeoutMs || '').trim();
    if (timeout !== '') {
      const value = Number(timeout);
      if (!Number.isInteger(value)) throw new InputError('timeout_ms must be a whole number of milliseconds.');
      body.timeout_ms = value;
    }
    const async = form.exec === 'async' && !forceSync;
    const path = (async ? '/predict/async' : '/predict') + (form.batch ? '/batch' : '');
    const images = form.inputMode === 'image' ? form.images : [];
    return { method: 'POST', path, body, async, batch: Boolean(form.batch), images, inputs };
  }

  /** The texts of a JSON input, example by example (a string, `{"text"}`, or a list of those). */
  function textsOf(data) {
    const one = (item) => (typeof item === 'string' ? item : item && typeof item === 'object' && typeof item.text === 'string' ? item.text : null);
    if (Array.isArray(data)) return data.map(one);
    return [one(data)];
  }

  // ---------------------------------------------------------------- snippets

  function shellQuote(text) {
    return "'" + String(text).replace(/'/g, "'\\''") + "'";
  }

  function snippetKey() {
    return state.key || 'YOUR_API_KEY';
  }

  // Snippets never show an image's base64: they read the file by its name where the base64
  // goes. The body is rendered with a mark in each image's place, and each (quoted) mark is
  // then replaced by the language's code for "this file as base64".
  const IMAGE_MARK = (i) => '@@playground-image-' + i + '@@';

  /** The request's body with the i-th image's base64 replaced by IMAGE_MARK(i). */
  function bodyWithImageMarks(request) {
    if (!request.images || !request.images.length) return request.body;
    let next = 0;
    const mark = (item) => (item && typeof item === 'object' && typeof item.image_base64 === 'string' ? { ...item, image_base64: IMAGE_MARK(next++) } : item);
    const body = { ...request.body };
    if ('items' in body) body.items = body.items.map(mark);
    else body.data = Array.isArray(body.data) ? body.data.map(mark) : mark(body.data);
    return body;
  }

  /** `text` with every quoted image mark replaced by `code(image)`. */
  function spliceImages(text, images, code) {
    return images.reduce((out, image, i) => out.split(JSON.stringify(IMAGE_MARK(i))).join(code(image, i)), text);
  }

  /** What makes two requests the same job submission (the key too: a job is its tenant's). */
  function requestSignature(request) {
    return JSON.stringify([state.key, request.path, request.body]);
  }

  /** The id of the job this page submitted for `request` (as the form now describes it), or null. */
  function submittedJobId(request) {
    return request.async && state.lastJob && state.lastJob.signature === requestSignature(request) ? state.lastJob.jobId : null;
  }

  function curlSnippet(request) {
    const origin = window.location.origin;
    const images = request.images || [];
    if (images.length === 1 && !request.async && !request.batch) {
      // One image, synchronously: the file itself as the body.
      const query = new URLSearchParams({ model: request.body.model });
      if (request.body.version) query.set('version', request.body.version);
      if (request.body.timeout_ms !== undefined) query.set('timeout_ms', String(request.body.timeout_ms));
      return [
        'curl -sS -X POST ' + shellQuote(origin + request.path + '?' + query.toString()) + ' \\',
        '  -H ' + shellQuote('X-API-Key: ' + snippetKey()) + ' \\',
        '  -H ' + shellQuote('Content-Type: ' + images[0].type) + ' \\',
        '  --data-binary @' + shellQuote(images[0].name),
      ].join('\n');
    }
    // The body quoted for the shell, each image read and encoded where its base64 goes.
    const json = JSON.stringify(bodyWithImageMarks(request));
    const data = images.length
      ? "'" + spliceImages(json.replace(/'/g, "'\\''"), images, (image) => '"\'"$(base64 < ' + shellQuote(image.name) + " | tr -d '\\n')\"'\"") + "'"
      : shellQuote(json);
    const submit = [
      'curl -sS -X POST ' + shellQuote(origin + request.path) + ' \\',
      '  -H ' + shellQuote('X-API-Key: ' + snippetKey()) + ' \\',
      "  -H 'Content-Type: application/json' \\",
      '  -d ' + data,
    ];
    if (!request.async) return submit.join('\n');
    const pollJob = (id) => 'curl -sS ' + shellQuote(origin + '/jobs/') + id + ' -H ' + shellQuote('X-API-Key: ' + snippetKey());
    const jobId = submittedJobId(request);
    if (jobId) {
      return ['# The job this page submitted: poll it until it is succeeded, failed or cancelled.',
        pollJob(shellQuote(jobId)),
        '',
        '# Submitting the request again makes a new job (the answer is {"job_id", "status"}):',
        ...submit.map((line) => '# ' + line)].join('\n');
    }
    // No job yet: the submit's answer gives the id the poll uses (no placeholder to edit).
    submit[0] = 'job_id=$(' + submit[0];
    submit[submit.length - 1] += " | sed -E 's/.*\"job_id\": *\"([^\"]+)\".*/\\1/')";
    return ['# Submit: the answer is {"job_id", "status"}.', ...submit,
      'echo "job $job_id"',
      '# Poll the job until it is succeeded, failed or cancelled:',
      pollJob('"$job_id"')].join('\n');
  }

  function pythonSnippet(request) {
    const lines = [];
    const images = request.images || [];
    if (images.length) lines.push('import base64');
    if (request.async) lines.push('import time');
    if (lines.length) lines.push('');
    lines.push('import requests', '',
      'BASE_URL = ' + JSON.stringify(window.location.origin),
      'HEADERS = {"X-API-Key": ' + JSON.stringify(snippetKey()) + '}',
      '');
    if (images.length) {
      lines.push('',
        'def image_file(path):',
        '    """The file as base64 text: the engine decodes PNG, JPEG and WebP itself."""',
        '    with open(path, "rb") as file:',
        '        return base64.b64encode(file.read()).decode("ascii")',
        '',
        '');
    }
    const payload = spliceImages(pretty(bodyWithImageMarks(request), pythonScalar), images, (image) => 'image_file(' + JSON.stringify(image.name) + ')');
    lines.push('payload = ' + payload);
    const post = 'requests.post(f"{BASE_URL}' + request.path + '", headers=HEADERS, json=payload, timeout=60)';
    const jobId = submittedJobId(request);
    if (jobId) {
      lines.push('# The job this page submitted. Submitting the payload again makes a new one:',
        '# job_id = ' + post + '.json()["job_id"]',
        'job_id = ' + JSON.stringify(jobId));
    } else {
      lines.push('response = ' + post);
    }
    if (request.async) {
      if (!jobId) lines.push('response.raise_for_status()', 'job_id = response.json()["job_id"]');
      lines.push('while True:',
        '    job = requests.get(f"{BASE_URL}/jobs/{job_id}", headers=HEADERS, timeout=60).json()',
        '    if job["status"] in ("succeeded", "failed", "cancelled"):',
        '        break',
        '    time.sleep(0.5)',
        'print(job)');
    } else {
      lines.push('print(response.status_code, response.headers.get("X-Request-ID"))', 'print(response.json())');
    }
    return lines.join('\n');
  }

  function jsSnippet(request) {
    const images = request.images || [];
    const lines = [];
    if (images.length) {
      lines.push('// Node.js (save as an .mjs file): the images are read from beside it.',
        'import { readFile } from "node:fs/promises";',
        '',
        'const imageFile = async (path) => (await readFile(path)).toString("base64");',
        '');
    }
    const payload = spliceImages(pretty(bodyWithImageMarks(request)), images, (image) => 'await imageFile(' + JSON.stringify(image.name) + ')');
    lines.push(
      'const BASE_URL = ' + JSON.stringify(window.location.origin) + ';',
      'const headers = { "X-API-Key": ' + JSON.stringify(snippetKey()) + ', "Content-Type": "application/json" };',
      '',
      'const payload = ' + payload + ';');
    const post = ['const response = await fetch(`${BASE_URL}' + request.path + '`, {',
      '  method: "POST",',
      '  headers,',
      '  body: JSON.stringify(payload),',
      '});'];
    const jobId = submittedJobId(request);
    if (jobId) {
      lines.push('// The job this page submitted. Submitting the payload again makes a new one:',
        ...post.map((line) => '// ' + line),
        '// const { job_id } = await response.json();',
        'const job_id = ' + JSON.stringify(jobId) + ';');
    } else {
      lines.push(...post);
    }
    if (request.async) {
      if (!jobId) lines.push('const { job_id } = await response.json();');
      lines.push('let job;',
        'do {',
        '  await new Promise((resolve) => setTimeout(resolve, 500));',
        '  job = await (await fetch(`${BASE_URL}/jobs/${job_id}`, { headers })).json();',
        '} while (!["succeeded", "failed", "cancelled"].includes(job.status));',
        'console.log(job);');
    } else {
      lines.push('console.log(response.status, response.headers.get("X-Request-ID"));', 'console.log(await response.json());');
    }
    return lines.join('\n');
  }

  let snippetTimer = 0;

  function updateSnippet() {
    window.clearTimeout(snippetTimer);
    snippetTimer = window.setTimeout(renderSnippet, 60);
  }

  function renderSnippet() {
    let request;
    try {
      request = buildRequest(readForm(), false);
    } catch (err) {
      $('snippet').textContent = '# Fix the request first: ' + err.message;
      $('endpoint-preview').textContent = '–';
      return;
    }
    $('endpoint-preview').textContent = request.method + ' ' + request.path;
    const render = { curl: curlSnippet, python: pythonSnippet, js: jsSnippet }[state.snippetLang];
    $('snippet').textContent = render(request);
  }

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (_) {
        // Permission refused: fall back to a selection and the copy command.
      }
    }
    const area = el('textarea', { class: 'offscreen', readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand('copy');
    } catch (_) {
      copied = false;
    }
    area.remove();
    return copied;
  }

  async function copySnippet() {
    renderSnippet();
    const copied = await copyText($('snippet').textContent);
    const status = $('copy-status');
    status.textContent = copied ? 'Copied.' : 'Copy failed: select the text and copy it yourself.';
    window.setTimeout(() => {
      status.textContent = '';
    }, 2500);
  }

  // ---------------------------------------------------------------- try: send

  let asyncPoll = null; // {jobId, stopped, request}

  function resetResponse() {
    setPill($('response-status'), '…', 'pending');
    for (const id of ['response-request-id', 'response-version', 'response-server-time', 'response-queue-time', 'response-rtt']) $(id).textContent = '–';
    $('error-box').hidden = true;
    $('async-box').hidden = true;
    $('response-body').textContent = '';
    renderVisual(null);
  }

  function showAnswer(answer, request) {
    setPill($('response-status'), answer.status === 0 ? 'no answer' : answer.status + (answer.statusText ? ' ' + answer.statusText : ''), answer.status);
    $('response-request-id').textContent = answer.headers.get('X-Request-ID') || '–';
    $('response-request-id').title = answer.headers.get('X-Request-ID') || '';
    $('response-version').textContent = answer.headers.get('X-Model-Version') || (answer.json && answer.json.version) || '–';
    const serverTime = answer.headers.get('X-Inference-Time-Ms');
    const queueTime = answer.headers.get('X-Queue-Time-Ms');
    $('response-server-time').textContent = serverTime === null ? '–' : formatMs(Number(serverTime));
    $('response-queue-time').textContent = queueTime === null ? '–' : formatMs(Number(queueTime));
    $('response-rtt').textContent = formatMs(answer.rtt);
    if (!answer.ok) {
      const body = answer.json || {};
      $('error-code').textContent = body.code || (answer.status === 0 ? 'network_error' : 'http_' + answer.status);
      $('error-detail').textContent = body.detail || answer.networkError || answer.text || '';
      $('error-box').hidden = false;
    }
    $('response-body').textContent = answer.json !== null ? pretty(answer.json) : answer.text || '';
    if (answer.ok && answer.json && request && !request.async) {
      renderVisual(request.batch ? answer.json.results : answer.json.result, request, answer.json.version);
    }
  }

  // ---------------------------------------------------------------- try: answer charts

  const isPlainObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);
  const isNumberMap = (value) => isPlainObject(value) && Object.keys(value).length > 0 && Object.values(value).every((v) => typeof v === 'number' && Number.isFinite(v));

  function percent(value) {
    if (value >= 0 && value <= 1) return (value * 100).toFixed(1) + ' %';
    return Number(value.toPrecision(4)).toString();
  }

  /** `{"label", "score", "scores"}` of a classification answer. */
  function isClassification(result) {
    return isPlainObject(result) && (typeof result.label === 'string' || typeof result.label === 'number') && isNumberMap(result.scores);
  }

  /** label → number (a probabilities answer): two labels or more, each a probability unless the model says what they are. */
  function isScoreMap(result, postprocess) {
    if (!isNumberMap(result)) return false;
    if (postprocess === 'probabilities' || postprocess === 'classification') return true;
    const values = Object.values(result);
    return values.length >= 2 && values.every((v) => v >= 0 && v <= 1);
  }

  function isEmbedding(result) {
    return isPlainObject(result) && Array.isArray(result.embedding) && result.embedding.length > 0
      && result.embedding.flat(Infinity).every((v) => typeof v === 'number');
  }

  function isTokenClassification(result) {
    return isPlainObject(result) && Array.isArray(result.entities) && Array.isArray(result.tokens);
  }

  /** Horizontal bars of label → score, highest first; `predicted` (else the highest) is highlighted. */
  function scoreChart(scores, predicted) {
    const entries = Object.entries(scores).sort((a, b) => b[1] - a[1]);
    const top = predicted === undefined || predicted === null ? entries[0][0] : String(predicted);
    const highest = Math.max(1, ...entries.map(([, value]) => value));
    let shown = entries.slice(0, BARS_MAX);
    if (!shown.some(([label]) => label === top)) shown = shown.slice(0, -1).concat(entries.filter(([label]) => label === top));
    const topScore = scores[top];
    const chart = el('div', { class: 'score-chart', 'data-testid': 'score-chart', 'data-top': top, 'data-bars': String(shown.length), role: 'group', 'aria-label': 'scores by label' },
      el('div', { class: 'chart-head' },
        el('span', { class: 'label', text: 'predicted' }),
        el('strong', { class: 'predicted', 'data-testid': 'predicted-label', text: top }),
        typeof topScore === 'number' ? el('span', { class: 'muted', 'data-testid': 'predicted-score', text: percent(topScore) }) : null));
    for (const [label, value] of shown) {
      const fill = el('span', { class: 'bar-fill' });
      fill.style.width = Math.max(0, Math.min(100, (value / highest) * 100)) + '%';
      chart.append(el('div', { class: 'bar-row' + (label === top ? ' top' : ''), 'data-testid': 'score-bar-' + label, 'data-label': label, 'data-score': String(value), title: label + ': ' + value },
        el('span', { class: 'bar-label', text: label }),
        el('span', { class: 'bar-track' }, fill),
        el('span', { class: 'bar-value', text: percent(value) })));
    }
    if (entries.length > shown.length) {
      chart.append(el('p', { class: 'muted small', text: (entries.length - shown.length) + ' more labels in the JSON below.' }));
    }
    return chart;
  }

  /** An embedding's size, norm and first values (the JSON below has them all). */
  function embeddingSummary(vector) {
    const values = vector.flat(Infinity);
    const norm = Math.sqrt(values.reduce((sum, v) => sum + v * v, 0));
    const head = values.slice(0, 8).map((v) => v.toFixed(4)).join(', ') + (values.length > 8 ? ', …' : '');
    return el('div', { class: 'embedding', 'data-testid': 'embedding-summary', 'data-dim': String(values.length) },
      el('span', { class: 'label', text: 'embedding' }),
      el('strong', { 'data-testid': 'embedding-dim', text: values.length + ' dimensions' }),
      el('span', { class: 'muted', text: '‖v‖ = ' + norm.toFixed(4) }),
      el('code', { class: 'embedding-head', 'data-testid': 'embedding-head', text: '[' + head + ']' }));
  }

  /** A token classification's entities, marked in the text they came from when it is known. */
  function entitiesView(result, text) {
    const entities = result.entities.filter((e) => isPlainObject(e) && typeof e.entity === 'string')
      .sort((a, b) => (a.start || 0) - (b.start || 0));
    const box = el('div', { class: 'entities', 'data-testid': 'entities', 'data-count': String(entities.length) });
    if (typeof text === 'string' && entities.every((e) => Number.isInteger(e.start) && Number.isInteger(e.end))) {
      // Offsets count characters (code points), as the engine's tokenizer does.
      const chars = Array.from(text);
      const line = el('p', { class: 'entity-text', 'data-testid': 'entity-text' });
      let at = 0;
      for (const entity of entities) {
        if (entity.start < at || entity.end > chars.length || entity.end <= entity.start) continue;
        line.append(chars.slice(at, entity.start).join(''));
        line.append(el('mark', { class: 'entity', 'data-entity': entity.entity, title: entity.entity + (typeof entity.score === 'number' ? ' · ' + percent(entity.score) : '') },
          chars.slice(entity.start, entity.end).join(''), el('span', { class: 'entity-tag', text: entity.entity })));
        at = entity.end;
      }
      line.append(chars.slice(at).join(''));
      box.append(line);
    }
    if (!entities.length) box.append(el('p', { class: 'muted small', text: 'No entities found.' }));
    else {
      box.append(el('p', { class: 'muted small', text: entities.map((e) => (e.text !== undefined ? JSON.stringify(e.text) + ' ' : '') + e.entity + (typeof e.score === 'number' ? ' ' + percent(e.score) : '')).join(' · ') }));
    }
    return box;
  }

  /** The chart (or summary) of one result, or null for results without a known shape. */
  function visualOf(result, postprocess, text) {
    if (isClassification(result)) return scoreChart(result.scores, result.label);
    if (isEmbedding(result)) return embeddingSummary(result.embedding);
    if (isTokenClassification(result)) return entitiesView(result, text);
    if (isScoreMap(result, postprocess)) return scoreChart(result);
    return null;
  }

  /**
   * Charts above the raw JSON answer: class scores as bars, an embedding's size and first
   * values, entities in their text. `payload` is the answer's `result` (one example or a list
   * of them) or a batch's `results`; `null` clears the charts.
   */
  function renderVisual(payload, request, version) {
    const box = $('response-visual');
    box.replaceChildren();
    box.hidden = true;
    if (payload === null || payload === undefined || !request) return;
    const details = cachedDetails(request.body.model, version || request.body.version || '');
    const postprocess = details ? details.postprocess : undefined;
    const sentList = request.batch || Array.isArray(request.body.data);
    const results = Array.isArray(payload) && (sentList || payload.every((r) => isClassification(r) || isEmbedding(r))) ? payload : [payload];
    const inputs = request.inputs || [];
    let shown = 0;
    results.forEach((result, index) => {
      if (shown >= VISUAL_MAX) return;
      const visual = visualOf(result, postprocess, inputs[index]);
      if (!visual) return;
      shown += 1;
      const item = el('div', { class: 'visual-item', 'data-testid': 'visual-item', 'data-index': String(index) });
      // A single text's entities show the text already.
      if (results.length > 1 || (inputs[index] && !isTokenClassification(result))) {
        const name = typeof inputs[index] === 'string' ? inputs[index] : '';
        item.append(el('div', { class: 'visual-caption muted small' },
          results.length > 1 ? el('span', { class: 'mono', text: '#' + (index + 1) + ' ' }) : null,
          name ? el('span', { text: name.length > 80 ? name.slice(0, 80) + '…' : name }) : null));
      }
      item.append(visual);
      box.append(item);
    });
    if (!shown) return;
    if (results.length > shown) box.append(el('p', { class: 'muted small', text: 'Charts for ' + shown + ' of ' + results.length + ' results; all are in the JSON below.' }));
    box.hidden = false;
  }

  async function send(formOverride) {
    const form = formOverride || readForm();
    let request;
    try {
      request = buildRequest(form, false);
    } catch (err) {
      showInputError(err.message);
      return;
    }
    hideInputError();
    if (asyncPoll) asyncPoll.stopped = true;
    resetResponse();
    $('send').disabled = true;
    const answer = await api(request.method, request.path, request.body);
    $('send').disabled = false;
    showAnswer(answer, request);
    addHistory(form, answer, request);
    if (request.async && answer.ok && answer.json && answer.json.job_id) {
      state.lastJob = { jobId: answer.json.job_id, signature: requestSignature(request) };
      updateSnippet();
      followJob(answer.json.job_id, answer.json.status, request);
    }
  }

  async function followJob(jobId, status, request) {
    const poll = { jobId, stopped: false, request };
    asyncPoll = poll;
    $('async-box').hidden = false;
    $('async-job-id').textContent = jobId;
    setPill($('async-job-status'), status || 'pending');
    $('async-cancel').disabled = false;
    let delay = 200;
    while (!poll.stopped) {
      await sleep(delay);
      if (poll.stopped) return;
      delay = Math.min(delay * 1.5, 2000);
      const answer = await api('GET', '/jobs/' + encodeURIComponent(jobId));
      if (poll.stopped) return;
      if (!answer.ok || !answer.json) {
        // The badge and the body keep the last record read; the failure shows on its own.
        $('error-code').textContent = answer.json && answer.json.code ? answer.json.code : 'poll_failed';
        $('error-detail').textContent = 'Polling the job failed: ' + describeError(answer);
        $('error-box').hidden = false;
        continue;
      }
      showJob(poll, answer.json);
    }
  }

  /**
   * Shows one job record of the followed job: its badge and its body together, from the same
   * answer (a badge from one poll above a body from another disagreed). A record once finished
   * stops the poll, so a slower, older answer cannot show an earlier state afterwards.
   */
  function showJob(poll, job) {
    if (poll.stopped || asyncPoll !== poll || !job || job.job_id !== poll.jobId) return;
    setPill($('async-job-status'), job.status);
    $('response-body').textContent = pretty(job);
    $('error-box').hidden = true;
    if (!TERMINAL.has(job.status)) return;
    poll.stopped = true;
    $('async-cancel').disabled = true;
    if (job.version) $('response-version').textContent = job.version;
    if (job.status === 'succeeded') renderVisual(job.result, poll.request, job.version);
    else {
      $('error-code').textContent = job.error_type || job.status;
      $('error-detail').textContent = job.error_message || '';
      $('error-box').hidden = false;
    }
    updateHistoryJob(job.job_id, job.status);
  }

  async function cancelJob(jobId) {
    return api('POST', '/jobs/' + encodeURIComponent(jobId) + '/cancel');
  }

  // ---------------------------------------------------------------- history

  function loadHistory() {
    const history = storageGet(STORAGE.history, []);
    return Array.isArray(history) ? history : [];
  }

  function addHistory(form, answer, request) {
    const history = loadHistory();
    history.unshift({
      at: new Date().toISOString(),
      form: storableForm(form, true),
      path: request.path,
      status: answer.status,
      code: answer.json && answer.json.code ? answer.json.code : null,
      rtt: answer.rtt,
      version: answer.headers.get('X-Model-Version') || (answer.json && answer.json.version) || null,
      jobId: answer.json && answer.json.job_id ? answer.json.job_id : null,
      jobStatus: request.async && answer.json ? answer.json.status || null : null,
    });
    storageSet(STORAGE.history, history.slice(0, HISTORY_MAX));
    if (activeView === 'history') renderHistory();
  }

  function updateHistoryJob(jobId, status) {
    const history = loadHistory();
    const entry = history.find((h) => h.jobId === jobId && h.jobStatus);
    if (!entry) return;
    entry.jobStatus = status;
    storageSet(STORAGE.history, history);
    if (activeView === 'history') renderHistory();
  }

  function describeInput(form) {
    const source = form.inputMode === 'json' ? form.json : form.inputMode === 'text' ? form.text
      : form.inputMode === 'image' ? (form.images || []).map((image) => image.name).join(', ') : form.csv;
    const flat = String(source || '').replace(/\s+/g, ' ').trim();
    return form.inputMode.toUpperCase() + (form.batch ? ' batch' : '') + ': ' + (flat.length > 60 ? flat.slice(0, 60) + '…' : flat);
  }

  function renderHistory() {
    const history = loadHistory();
    const body = $('history-body');
    body.replaceChildren();
    $('history-empty').hidden = history.length > 0;
    history.forEach((entry, index) => {
      const form = entry.form || {};
      const load = el('button', { type: 'button', class: 'ghost small', 'data-testid': 'history-load', text: 'Load' });
      const replay = el('button', { type: 'button', class: 'small', 'data-testid': 'history-replay', text: 'Replay' });
      load.addEventListener('click', () => {
        writeForm(form);
        showView('try');
      });
      replay.addEventListener('click', () => {
        writeForm(form);
        showView('try');
        send(readForm());
      });
      const status = el('span', { class: statusClass(entry.status), text: String(entry.status || 'no answer') + (entry.code ? ' ' + entry.code : '') });
      const statusCell = el('td', {}, status);
      if (entry.jobStatus) statusCell.append(' ', el('span', { class: statusClass(entry.jobStatus), text: 'job ' + entry.jobStatus }));
      body.append(el('tr', { 'data-testid': 'history-row', 'data-index': String(index) },
        el('td', { class: 'mono', text: formatTime(entry.at) }),
        el('td', { class: 'mono', text: 'POST ' + entry.path + ' · ' + form.model + ':' + (form.version || 'routed' + (entry.version ? ' → ' + entry.version : '')) }),
        el('td', { class: 'mono', text: describeInput(form) }),
        statusCell,
        el('td', { class: 'mono', text: formatMs(entry.rtt) }),
        el('td', { class: 'actions' }, load, replay)));
    });
  }

  // ---------------------------------------------------------------- jobs

  let jobsTimer = 0;
  let jobsCursor = null;
  let selectedJobId = null;
  let jobsLoading = false;

  function scheduleJobsRefresh() {
    window.clearInterval(jobsTimer);
    jobsTimer = 0;
    if (activeView === 'jobs' && $('jobs-auto').checked) {
      jobsTimer = window.setInterval(() => refreshJobs(true), 2000);
    }
  }

  function jobsQuery(cursor) {
    const params = new URLSearchParams();
    if ($('jobs-status').value) params.set('status', $('jobs-status').value);
    if ($('jobs-model').value) params.set('model', $('jobs-model').value);
    params.set('limit', $('jobs-limit').value);
    if (cursor) params.set('cursor', cursor);
    return '/jobs?' + params.toString();
  }

  function setJobsNotice(text) {
    $('jobs-notice').textContent = text || '';
    $('jobs-notice').hidden = !text;
  }

  async function refreshJobs(fromStart) {
    if (jobsLoading) return;
    if (!state.key) {
      setJobsNotice('Enter an API key to list your jobs.');
      $('jobs-body').replaceChildren();
      return;
    }
    jobsLoading = true;
    const answer = await api('GET', jobsQuery(fromStart ? null : jobsCursor));
    jobsLoading = false;
    if (!answer.ok || !answer.json || !Array.isArray(answer.json.jobs)) {
      setJobsNotice('Could not list the jobs: ' + describeError(answer));
      return;
    }
    setJobsNotice('');
    if (fromStart) $('jobs-body').replaceChildren();
    for (const job of answer.json.jobs) $('jobs-body').append(jobRow(job));
    if (!$('jobs-body').children.length) {
      $('jobs-body').append(el('tr', {}, el('td', { colspan: '7', class: 'muted', text: 'No jobs match.' })));
    }
    jobsCursor = answer.json.next_cursor || null;
    $('jobs-more').hidden = !jobsCursor;
    if (selectedJobId) refreshJobDetail(selectedJobId, false);
  }

  /** Milliseconds since the epoch of an RFC 3339 time, keeping its microseconds (Date keeps only milliseconds). */
  function preciseMs(iso) {
    const fraction = /\.(\d+)Z$/.exec(iso);
    const whole = Date.parse(fraction ? iso.slice(0, fraction.index) + 'Z' : iso);
    return whole + (fraction ? Number('0.' + fraction[1]) * 1000 : 0);
  }

  function jobDuration(job) {
    if (!job.started_at) return '–';
    const end = job.finished_at ? preciseMs(job.finished_at) : Date.now();
    return formatMs(end - preciseMs(job.started_at)) + (job.finished_at ? '' : '…');
  }

  function jobRow(job) {
    const row = el('tr', { 'data-testid': 'job-row', 'data-job-id': job.job_id, class: job.job_id === selectedJobId ? 'selected' : null },
      el('td', { class: 'mono', title: job.job_id, text: job.job_id.slice(0, 8) + '…' + job.job_id.slice(-6) }),
      el('td', {}, el('span', { class: statusClass(job.status), 'data-testid': 'job-status', text: job.status })),
      el('td', { text: job.mode }),
      el('td', { class: 'mono', text: job.model + ':' + (job.version || '?') }),
      el('td', { class: 'mono', text: formatTime(job.created_at) }),
      el('td', { class: 'mono', text: jobDuration(job) }),
      el('td', { class: 'mono', text: job.attempts + '/' + job.max_attempts }));
    row.addEventListener('click', () => {
      selectedJobId = job.job_id;
      for (const other of $('jobs-body').children) other.classList.toggle('selected', other === row);
      showJobDetail(job);
      refreshJobDetail(job.job_id, true);
    });
    return row;
  }

  function showJobDetail(job) {
    $('job-empty').hidden = true;
    setPill($('job-detail-status'), job.status);
    const facts = $('job-facts');
    facts.replaceChildren();
    const fields = [
      ['job id', job.job_id], ['model', job.model + ':' + (job.version || '?')], ['mode', job.mode],
      ['tenant', job.tenant_id], ['request id', job.request_id], ['created', job.created_at],
      ['started', job.started_at || '–'], ['finished', job.finished_at || '–'],
      ['attempts', job.attempts + ' of ' + job.max_attempts],
    ];
    if (job.error_type) fields.push(['error', job.error_type + (job.error_message ? ': ' + job.error_message : '')]);
    for (const [term, value] of fields) facts.append(el('dt', { text: term }), el('dd', { text: String(value) }));
    $('job-json').hidden = false;
    $('job-json').textContent = pretty(job);
    $('job-cancel').disabled = TERMINAL.has(job.status);
    $('job-cancel').dataset.jobId = job.job_id;
  }

  async function refreshJobDetail(jobId, showErrors) {
    const answer = await api('GET', '/jobs/' + encodeURIComponent(jobId));
    if (selectedJobId !== jobId) return;
    if (answer.ok && answer.json) showJobDetail(answer.json);
    else if (showErrors) setJobsNotice('Could not read the job: ' + describeError(answer));
  }

  async function cancelSelectedJob() {
    const jobId = $('job-cancel').dataset.jobId;
    if (!jobId) return;
    $('job-cancel').disabled = true;
    const answer = await cancelJob(jobId);
    if (answer.ok && answer.json) {
      showJobDetail(answer.json);
      setJobsNotice('');
    } else {
      setJobsNotice('Cancel refused: ' + describeError(answer));
    }
    refreshJobs(true);
  }

  // ---------------------------------------------------------------- benchmark

  const bench = { running: false, controller: null, latencies: [], statuses: new Map(), started: 0, finished: 0, n: 0, dirty: false };

  // The Benchmark tab has its own model, version and input: what it measures does not change
  // behind its back when the Try tab is used (it copies the Try request only when asked).

  function renderBenchPicker() {
    const select = $('bench-model');
    const previous = select.value;
    const names = modelNames();
    if (!names.length && previous) return; // a list that failed to load keeps the pick
    select.replaceChildren();
    for (const name of names) select.append(el('option', { value: name, text: name }));
    if (previous && !names.includes(previous)) select.append(el('option', { value: previous, text: previous }));
    if (previous) {
      select.value = previous;
      renderBenchVersions($('bench-version').value);
    } else if (names.length) {
      select.value = names[0];
      renderBenchVersions('');
      fillBenchExample();
    }
    renderBenchTarget();
  }

  function renderBenchVersions(wanted) {
    const select = $('bench-version');
    select.replaceChildren(el('option', { value: '', text: 'routed (engine decides)' }));
    const versions = versionsOf($('bench-model').value).map((m) => m.version);
    if (wanted && !versions.includes(wanted)) versions.push(wanted);
    for (const version of versions) select.append(el('option', { value: version, text: version }));
    select.value = wanted || '';
  }

  function showBenchInputError(message) {
    $('bench-input-error').textContent = message || '';
    $('bench-input-error').hidden = !message;
  }

  let benchExampleRun = 0;

  /** Fills the Benchmark input with an example for its model (as "Fill example" does in Try). */
  async function fillBenchExample() {
    const run = ++benchExampleRun;
    const name = $('bench-model').value;
    const version = detailsVersion(name, $('bench-version').value);
    if (!name || !version) return;
    let details;
    try {
      details = await fetchDetails(name, version);
    } catch (err) {
      if (run === benchExampleRun) showBenchInputError('Could not read the model details: ' + err.message);
      return;
    }
    if (run !== benchExampleRun) return;
    const preprocess = details.preprocess;
    const example = preprocess && preprocess.kind === 'text' ? TEXT_EXAMPLE
      : preprocess && preprocess.kind === 'image' ? { image_base64: exampleImage(preprocess).base64 }
        : exampleInput(details);
    $('bench-input').value = pretty($('bench-batch').checked ? [example] : example);
    showBenchInputError('');
    renderBenchTarget();
  }

  /** Takes the Try tab's request (model, version, batch and input) once. */
  function copyTryToBench() {
    let request;
    try {
      request = buildRequest(readForm(), true);
    } catch (err) {
      showBenchInputError('The Try request is not valid: ' + err.message);
      return;
    }
    benchExampleRun += 1; // an example still being fetched must not overwrite the copy
    const select = $('bench-model');
    if (![...select.options].some((o) => o.value === request.body.model)) select.append(el('option', { value: request.body.model, text: request.body.model }));
    select.value = request.body.model;
    renderBenchVersions(request.body.version || '');
    $('bench-batch').checked = request.batch;
    $('bench-input').value = pretty(request.batch ? request.body.items : request.body.data);
    showBenchInputError('');
    renderBenchTarget();
  }

  /** The Benchmark tab's request: `{method, path, body}`; throws InputError when it cannot be built. */
  function buildBenchRequest() {
    const model = $('bench-model').value;
    if (!model) throw new InputError('Pick a model first (the list needs an API key that can read the models).');
    let data;
    try {
      data = JSON.parse($('bench-input').value);
    } catch (err) {
      throw new InputError('JSON: ' + err.message);
    }
    const batch = $('bench-batch').checked;
    if (batch && !Array.isArray(data)) throw new InputError('Batch: the JSON must be an array, one element per item.');
    const body = { model };
    if ($('bench-version').value) body.version = $('bench-version').value;
    if (batch) body.items = data;
    else body.data = data;
    return { method: 'POST', path: batch ? '/predict/batch' : '/predict', body };
  }

  function renderBenchTarget() {
    try {
      const request = buildBenchRequest();
      $('bench-target').textContent = 'POST ' + request.path + ' · ' + request.body.model + ':' + (request.body.version || 'routed');
      showBenchInputError('');
    } catch (err) {
      $('bench-target').textContent = 'Fix the request first';
      showBenchInputError(err.message);
    }
  }

  function percentile(sorted, p) {
    if (!sorted.length) return null;
    const rank = Math.ceil((p / 100) * sorted.length);
    return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
  }

  async function startBenchmark() {
    let request;
    try {
      request = buildBenchRequest();
    } catch (err) {
      $('bench-state').textContent = 'Fix the request first: ' + err.message;
      return;
    }
    const n = Math.max(1, Math.min(100000, Math.floor(Number($('bench-n').value) || 0)));
    const c = Math.max(1, Math.min(64, Math.floor(Number($('bench-c').value) || 0)));
    bench.running = true;
    bench.controller = new AbortController();
    bench.latencies = [];
    bench.statuses = new Map();
    bench.errors = 0;
    bench.n = n;
    bench.started = performance.now();
    bench.finished = 0;
    $('bench-start').disabled = true;
    $('bench-stop').disabled = false;
    $('bench-state').textContent = 'Running ' + n + ' requests at concurrency ' + c + '…';
    $('bench-state').dataset.state = 'running';
    let next = 0;
    const worker = async () => {
      while (bench.running && next < n) {
        next += 1;
        const answer = await api(request.method, request.path, request.body, { signal: bench.controller.signal });
        if (!bench.running && answer.status === 0) return;
        const key = answer.status === 0 ? 'network' : String(answer.status);
        bench.statuses.set(key, (bench.statuses.get(key) || 0) + 1);
        if (answer.ok) bench.latencies.push(answer.rtt);
        else bench.errors += 1;
        bench.finished = performance.now();
        markBenchDirty();
      }
    };
    await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
    const stopped = !bench.running;
    bench.running = false;
    $('bench-start').disabled = false;
    $('bench-stop').disabled = true;
    renderBench();
    const done = sumStatuses();
    $('bench-state').textContent = (stopped ? 'Stopped after ' : 'Finished: ') + done + ' requests in ' + formatMs(bench.finished - bench.started) + '.';
    $('bench-state').dataset.state = stopped ? 'stopped' : 'finished';
  }

  function stopBenchmark() {
    if (!bench.running) return;
    bench.running = false;
    bench.controller.abort();
  }

  function sumStatuses() {
    let total = 0;
    for (const count of bench.statuses.values()) total += count;
    return total;
  }

  function markBenchDirty() {
    if (bench.dirty) return;
    bench.dirty = true;
    window.requestAnimationFrame(() => {
      bench.dirty = false;
      renderBench();
    });
  }

  function renderBench() {
    const done = sumStatuses();
    const sorted = bench.latencies.slice().sort((a, b) => a - b);
    const elapsed = (bench.finished || performance.now()) - bench.started;
    $('bench-done').textContent = done + ' / ' + bench.n;
    $('bench-rps').textContent = elapsed > 0 && done ? (done / (elapsed / 1000)).toFixed(1) : '–';
    $('bench-p50').textContent = formatMs(percentile(sorted, 50));
    $('bench-p95').textContent = formatMs(percentile(sorted, 95));
    $('bench-p99').textContent = formatMs(percentile(sorted, 99));
    $('bench-mean').textContent = sorted.length ? formatMs(sorted.reduce((a, b) => a + b, 0) / sorted.length) : '–';
    $('bench-max').textContent = formatMs(sorted.length ? sorted[sorted.length - 1] : null);
    $('bench-errors').textContent = String(bench.errors || 0);
    $('bench-progress').style.width = (bench.n ? (100 * done) / bench.n : 0) + '%';
    const body = $('bench-status-body');
    body.replaceChildren();
    for (const [status, count] of [...bench.statuses.entries()].sort()) {
      body.append(el('tr', { 'data-status': status }, el('td', {}, el('span', { class: statusClass(status === 'network' ? 0 : Number(status)), text: status })), el('td', { class: 'mono', text: String(count) })));
    }
    drawHistogram($('bench-histogram'), sorted);
  }

  /** Sizes a canvas's backing store to its CSS box (crisp on high-DPI screens); returns its 2D context. */
  function fitCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext('2d');
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    return { context, width, height };
  }

  function drawHistogram(canvas, sorted) {
    const { context, width, height } = fitCanvas(canvas);
    canvas.dataset.samples = String(sorted.length);
    const left = 44;
    const bottom = 26;
    const top = 10;
    const plotWidth = width - left - 10;
    const plotHeight = height - top - bottom;
    context.font = '11px system-ui, sans-serif';
    context.fillStyle = '#6b7280';
    context.strokeStyle = '#e3e6eb';
    context.lineWidth = 1;
    if (!sorted.length) {
      context.fillText('No samples yet: start a benchmark.', left, top + plotHeight / 2);
      return;
    }
    const bins = 30;
    const min = sorted[0];
    const max = sorted[sorted.length - 1];
    const span = Math.max(max - min, 0.001);
    const counts = new Array(bins).fill(0);
    for (const value of sorted) counts[Math.min(bins - 1, Math.floor(((value - min) / span) * bins))] += 1;
    const highest = Math.max(...counts);
    for (let i = 0; i <= 4; i += 1) {
      const y = top + plotHeight - (plotHeight * i) / 4;
      context.beginPath();
      context.moveTo(left, Math.round(y) + 0.5);
      context.lineTo(left + plotWidth, Math.round(y) + 0.5);
      context.stroke();
      context.textAlign = 'right';
      context.fillText(String(Math.round((highest * i) / 4)), left - 6, y + 4);
    }
    const barWidth = plotWidth / bins;
    context.fillStyle = '#6366f1';
    counts.forEach((count, i) => {
      if (!count) return;
      const h = (plotHeight * count) / highest;
      context.fillRect(left + i * barWidth + 1, top + plotHeight - h, Math.max(1, barWidth - 2), h);
    });
    const marks = [[50, '#12805c'], [95, '#a15c00'], [99, '#c0262d']];
    for (const [p, color] of marks) {
      const value = percentile(sorted, p);
      const x = left + ((value - min) / span) * plotWidth;
      context.strokeStyle = color;
      context.setLineDash([4, 3]);
      context.beginPath();
      context.moveTo(x, top);
      context.lineTo(x, top + plotHeight);
      context.stroke();
      context.setLineDash([]);
      context.fillStyle = color;
      context.textAlign = 'left';
      context.fillText('p' + p, Math.min(x + 3, left + plotWidth - 20), top + 10 + (p === 95 ? 12 : p === 99 ? 24 : 0));
    }
    context.fillStyle = '#6b7280';
    context.textAlign = 'left';
    context.fillText(formatMs(min), left, height - 8);
    context.textAlign = 'center';
    context.fillText(formatMs(min + span / 2), left + plotWidth / 2, height - 8);
    context.textAlign = 'right';
    context.fillText(formatMs(max), left + plotWidth, height - 8);
  }

  // ---------------------------------------------------------------- health strip

  const metricHistory = { rps: [], errors: [], p99: [], loaded: [], queue: [] };
  let previousScrape = null;
  let healthTimer = 0;

  /** Prometheus text → [{name, labels, value}] (comments and blank lines skipped). */
  function parsePrometheus(text) {
    const samples = [];
    const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    for (const raw of text.split('\n')) {
      if (!raw || raw[0] === '#') continue;
      const match = line.exec(raw);
      if (!match) continue;
      const labels = {};
      if (match[2]) {
        for (const pair of match[2].matchAll(label)) labels[pair[1]] = pair[2];
      }
      const value = match[3] === '+Inf' ? Infinity : match[3] === '-Inf' ? -Infinity : Number(match[3]);
      samples.push({ name: match[1], labels, value });
    }
    return samples;
  }

  function sumOf(samples, name) {
    return samples.filter((s) => s.name === name).reduce((total, s) => total + (Number.isFinite(s.value) ? s.value : 0), 0);
  }

  /** Cumulative bucket counts by upper bound, summed over every series of a histogram. */
  function buckets(samples, name) {
    const byBound = new Map();
    for (const sample of samples) {
      if (sample.name !== name + '_bucket') continue;
      const bound = sample.labels.le === '+Inf' ? Infinity : Number(sample.labels.le);
      byBound.set(bound, (byBound.get(bound) || 0) + sample.value);
    }
    return byBound;
  }

  /** Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank. */
  function histogramQuantile(q, byBound) {
    const bounds = [...byBound.keys()].sort((a, b) => a - b);
    if (!bounds.length) return null;
    const total = byBound.get(bounds[bounds.length - 1]);
    if (!(total > 0)) return null;
    const rank = q * total;
    let previousBound = 0;
    let previousCount = 0;
    for (const bound of bounds) {
      const count = byBound.get(bound);
      if (count >= rank) {
        if (bound === Infinity) return previousBound;
        if (count === previousCount) return bound;
        return previousBound + (bound - previousBound) * ((rank - previousCount) / (count - previousCount));
      }
      previousBound = bound;
      previousCount = count;
    }
    return previousBound;
  }

  let healthRun = 0;

  async function refreshHealth() {
    // A key change starts a new round at once; an older round still in flight then stops.
    const run = ++healthRun;
    window.clearTimeout(healthTimer);
    const ready = await api('GET', '/ready');
    if (run !== healthRun) return;
    const readyState = $('ready-state');
    if (ready.status === 0) setPill(readyState, 'unreachable');
    else if (ready.ok) setPill(readyState, 'ready');
    else setPill(readyState, (ready.json && ready.json.status) || String(ready.status), 'degraded');
    readyState.title = ready.json && ready.json.reason ? ready.json.reason : '';
    await refreshMetrics(run);
    if (run !== healthRun) return;
    healthTimer = window.setTimeout(refreshHealth, document.hidden ? 15000 : 3000);
  }

  /** The key /metrics refused: not asked again (no 403 every few seconds) until the key changes. */
  let metricsRefusedKey = null;

  async function refreshMetrics(run) {
    if (!state.key) {
      setAdmin(false, 'Live figures from /metrics appear with an admin key.');
      return;
    }
    if (state.key === metricsRefusedKey) {
      setAdmin(false, 'Live figures from /metrics need an admin key.');
      return;
    }
    const answer = await api('GET', '/metrics');
    if (run !== healthRun) return;
    if (answer.status === 401 || answer.status === 403) {
      metricsRefusedKey = state.key;
      setAdmin(false, 'Live figures from /metrics need an admin key.');
      return;
    }
    if (!answer.ok) {
      setAdmin(false, 'Metrics unavailable: ' + describeError(answer));
      return;
    }
    setAdmin(true, '');
    const samples = parsePrometheus(answer.text);
    const now = performance.now();
    const scrape = {
      at: now,
      requests: sumOf(samples, 'inference_requests_total'),
      errors: sumOf(samples, 'inference_errors_total'),
      latency: buckets(samples, 'inference_latency_seconds'),
    };
    const loaded = sumOf(samples, 'models_loaded');
    const queue = sumOf(samples, 'job_queue_depth');
    let rps = null;
    let errorRate = null;
    let p99 = null;
    if (previousScrape) {
      const seconds = (now - previousScrape.at) / 1000;
      const requests = Math.max(0, scrape.requests - previousScrape.requests);
      const errors = Math.max(0, scrape.errors - previousScrape.errors);
      rps = seconds > 0 ? requests / seconds : 0;
      errorRate = requests > 0 ? Math.min(1, errors / requests) : 0;
      const recent = new Map();
      for (const [bound, count] of scrape.latency) recent.set(bound, Math.max(0, count - (previousScrape.latency.get(bound) || 0)));
      p99 = histogramQuantile(0.99, recent);
    } else {
      p99 = histogramQuantile(0.99, scrape.latency);
    }
    previousScrape = scrape;
    pushMetric('rps', rps, rps === null ? '–' : rps.toFixed(1));
    pushMetric('errors', errorRate, errorRate === null ? '–' : (errorRate * 100).toFixed(1) + ' %');
    // No requests since the last scrape: no latency to report (and no point on the chart).
    pushMetric('p99', p99 === null ? null : p99 * 1000, p99 === null ? 'idle' : formatMs(p99 * 1000));
    pushMetric('loaded', loaded, String(loaded));
    pushMetric('queue', queue, String(queue));
  }

  function setAdmin(isAdmin, note) {
    if (state.isAdmin !== isAdmin) previousScrape = null;
    state.isAdmin = isAdmin;
    $('metrics-strip').hidden = !isAdmin;
    $('metrics-note').hidden = isAdmin;
    $('metrics-note').textContent = note;
  }

  function pushMetric(name, value, text) {
    const series = metricHistory[name];
    series.push(value);
    if (series.length > 40) series.shift();
    $('metric-' + name).textContent = text;
    drawSparkline($('spark-' + name), series);
  }

  /** The last 40 samples as a line over a filled area, newest at the right (a dot marks it). */
  function drawSparkline(canvas, series) {
    const { context, width, height } = fitCanvas(canvas);
    const points = [];
    const right = width - 3;
    const step = right / 39;
    const values = series.filter((v) => v !== null && Number.isFinite(v));
    const max = Math.max(...values, 1e-9);
    series.forEach((value, i) => {
      if (value === null || !Number.isFinite(value)) return;
      points.push([right - (series.length - 1 - i) * step, height - 3 - (value / max) * (height - 6)]);
    });
    canvas.dataset.points = String(points.length);
    context.strokeStyle = '#e3e6eb';
    context.lineWidth = 1;
    context.beginPath();
    context.moveTo(0, height - 2.5);
    context.lineTo(width, height - 2.5);
    context.stroke();
    if (!points.length) return;
    context.beginPath();
    points.forEach(([x, y], i) => (i ? context.lineTo(x, y) : context.moveTo(x, y)));
    context.strokeStyle = '#4f46e5';
    context.lineWidth = 1.5;
    context.stroke();
    context.lineTo(points[points.length - 1][0], height);
    context.lineTo(points[0][0], height);
    context.closePath();
    context.fillStyle = 'rgba(79, 70, 229, 0.12)';
    context.fill();
    const [lastX, lastY] = points[points.length - 1];
    context.beginPath();
    context.arc(lastX, lastY, 2.2, 0, 2 * Math.PI);
    context.fillStyle = '#4f46e5';
    context.fill();
  }

  // ---------------------------------------------------------------- CSV files

  async function loadCsvFile(file) {
    if (!file) return;
    const text = await file.text();
    $('csv-input').value = text;
    setInputMode('csv');
    renderCsvPreview();
    updateSnippet();
  }

  function initDropzone() {
    const zone = $('csv-drop');
    const targets = [zone, $('csv-input')];
    for (const target of targets) {
      target.addEventListener('dragover', (event) => {
        event.preventDefault();
        zone.classList.add('over');
      });
      target.addEventListener('dragleave', () => zone.classList.remove('over'));
      target.addEventListener('drop', (event) => {
        event.preventDefault();
        zone.classList.remove('over');
        const file = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
        if (file) loadCsvFile(file);
        else if (event.dataTransfer) {
          const text = event.dataTransfer.getData('text/plain');
          if (text) {
            $('csv-input').value = text;
            renderCsvPreview();
            updateSnippet();
          }
        }
      });
    }
    $('csv-file').addEventListener('change', () => loadCsvFile($('csv-file').files[0]));

    const imageZone = $('image-drop');
    for (const target of [imageZone, $('image-previews')]) {
      target.addEventListener('dragover', (event) => {
        event.preventDefault();
        imageZone.classList.add('over');
      });
      target.addEventListener('dragleave', () => imageZone.classList.remove('over'));
      target.addEventListener('drop', (event) => {
        event.preventDefault();
        imageZone.classList.remove('over');
        const files = event.dataTransfer && event.dataTransfer.files;
        if (files && files.length) loadImageFiles(files);
      });
    }
    $('image-file').addEventListener('change', async () => {
      const input = $('image-file');
      await loadImageFiles(input.files);
      input.value = ''; // the same file chosen again is a change too
    });
    $('image-clear').addEventListener('click', () => {
      setImages([]);
      hideInputError();
    });
  }

  // ---------------------------------------------------------------- wiring

  function persistForm() {
    storageSet(STORAGE.form, storableForm(readForm()));
  }

  function init() {
    initKey();
    initDropzone();
    for (const view of views) $('tab-' + view).addEventListener('click', () => showView(view));
    for (const button of document.querySelectorAll('[data-input-mode]')) {
      button.addEventListener('click', () => {
        state.modeClicks += 1;
        setInputMode(button.dataset.inputMode);
      });
    }
    for (const button of document.querySelectorAll('[data-exec]')) button.addEventListener('click', () => setExec(button.dataset.exec));
    for (const button of document.querySelectorAll('[data-snippet]')) {
      button.addEventListener('click', () => {
        state.snippetLang = button.dataset.snippet;
        for (const other of document.querySelectorAll('[data-snippet]')) other.setAttribute('aria-pressed', String(other === button));
        renderSnippet();
      });
    }
    $('model-select').addEventListener('change', () => {
      renderVersionPicker('');
      refreshModelKind(true);
      updateSnippet();
    });
    $('version-select').addEventListener('change', () => {
      refreshModelKind(true);
      updateSnippet();
    });
    for (const id of ['model-manual', 'version-manual']) $(id).addEventListener('input', updateSnippet);
    for (const id of ['json-input', 'text-input', 'text-pair-input', 'csv-input', 'timeout-ms']) $(id).addEventListener('input', () => {
      hideInputError();
      if (id === 'csv-input') renderCsvPreview();
      if (id === 'text-input' || id === 'text-pair-input') renderTextPreview();
      updateSnippet();
    });
    for (const id of ['batch-toggle', 'csv-header']) $(id).addEventListener('change', () => {
      renderCsvPreview();
      renderTextPreview();
      renderImages();
      updateSnippet();
    });
    $('send').addEventListener('click', () => send());
    for (const id of ['json-input', 'text-input', 'text-pair-input', 'csv-input']) {
      $(id).addEventListener('keydown', (event) => {
        if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          send();
        }
      });
    }
    $('format-json').addEventListener('click', () => {
      try {
        $('json-input').value = pretty(JSON.parse($('json-input').value));
        hideInputError();
      } catch (err) {
        showInputError('JSON: ' + err.message);
      }
    });
    $('fill-example-try').addEventListener('click', fillExampleForTry);
    $('show-details').addEventListener('click', () => {
      const name = $('model-select').value;
      const versions = versionsOf(name);
      if (!versions.length) return;
      showView('models');
      selectModelDetails(name, $('version-select').value || versions[0].version);
    });
    $('fill-example').addEventListener('click', () => {
      if (!selectedDetails) return;
      fillExampleFrom(selectedDetails, selectedDetails.version);
      showView('try');
    });
    $('use-model').addEventListener('click', () => {
      if (!selectedDetails) return;
      useModel(selectedDetails.name, selectedDetails.version);
      showView('try');
    });
    $('models-refresh').addEventListener('click', loadModels);
    $('copy-snippet').addEventListener('click', copySnippet);
    $('async-cancel').addEventListener('click', async () => {
      const poll = asyncPoll;
      if (!poll) return;
      $('async-cancel').disabled = true;
      const answer = await cancelJob(poll.jobId);
      if (answer.ok && answer.json) showJob(poll, answer.json);
      else {
        $('async-job-status').title = describeError(answer);
        $('async-cancel').disabled = false;
      }
    });
    $('bench-model').addEventListener('change', () => {
      renderBenchVersions('');
      renderBenchTarget();
      fillBenchExample();
    });
    $('bench-version').addEventListener('change', () => {
      renderBenchTarget();
      fillBenchExample();
    });
    $('bench-batch').addEventListener('change', () => {
      // The input follows the mode: an item becomes a list of one, a list of one its item.
      try {
        const data = JSON.parse($('bench-input').value);
        if ($('bench-batch').checked && !Array.isArray(data)) $('bench-input').value = pretty([data]);
        else if (!$('bench-batch').checked && Array.isArray(data) && data.length === 1) $('bench-input').value = pretty(data[0]);
      } catch (_) {
        // Not JSON yet: the target line says so.
      }
      renderBenchTarget();
    });
    $('bench-input').addEventListener('input', renderBenchTarget);
    $('bench-example').addEventListener('click', fillBenchExample);
    $('bench-from-try').addEventListener('click', copyTryToBench);
    $('bench-start').addEventListener('click', startBenchmark);
    $('bench-stop').addEventListener('click', stopBenchmark);
    $('jobs-refresh').addEventListener('click', () => refreshJobs(true));
    $('jobs-more').addEventListener('click', () => refreshJobs(false));
    for (const id of ['jobs-status', 'jobs-model', 'jobs-limit']) $(id).addEventListener('change', () => refreshJobs(true));
    $('jobs-auto').addEventListener('change', scheduleJobsRefresh);
    $('job-cancel').addEventListener('click', cancelSelectedJob);
    $('history-clear').addEventListener('click', () => {
      storageSet(STORAGE.history, []);
      renderHistory();
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) refreshHealth();
    });
    window.addEventListener('beforeunload', persistForm);
    window.addEventListener('hashchange', () => showView(window.location.hash.slice(1)));

    writeForm(storageGet(STORAGE.form, null));
    showView(window.location.hash.slice(1) || 'try');
    renderSnippet();
    drawHistogram($('bench-histogram'), []);
    loadModels();
    refreshHealth();
  }

  init();
}());
