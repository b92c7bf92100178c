// The interactive API page: reads /api/openapi.json (the gateway's routes and every online
// service's operations) and renders each operation with a form that sends it with the token.
// Server data reaches the DOM as text only (textContent, never HTML).
(function () {
  'use strict';

  const TOKEN_KEY = 'orchestrator.token';
  const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c !== null && c !== undefined) node.append(c);
    }
    return node;
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }

  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: the field still holds it */ }
  }

  function takeTokenFromFragment() {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (match) {
      setToken(decodeURIComponent(match[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
  }

  /** Follows a local `$ref` of the document. */
  function deref(doc, value) {
    let v = value;
    for (let i = 0; i < 8 && v && typeof v.$ref === 'string' && v.$ref.startsWith('#/'); i++) {
      v = v.$ref.slice(2).split('/').reduce((o, k) => (o ? o[k.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), doc);
    }
    return v || {};
  }

  function schemaText(doc, schema) {
    const s = deref(doc, schema || {});
    if (schema && schema.$ref) return schema.$ref.split('/').pop();
    if (s.enum) return s.enum.map(String).join(' | ');
    if (s.type === 'array') return schemaText(doc, s.items) + '[]';
    if (Array.isArray(s.anyOf)) return s.anyOf.map((x) => schemaText(doc, x)).join(' | ');
    let t = Array.isArray(s.type) ? s.type.join(' | ') : (s.type || 'any');
    const bounds = [];
    if (s.minimum !== undefined) bounds.push('≥ ' + s.minimum);
    if (s.exclusiveMinimum !== undefined) bounds.push('> ' + s.exclusiveMinimum);
    if (s.maximum !== undefined) bounds.push('≤ ' + s.maximum);
    if (s.exclusiveMaximum !== undefined) bounds.push('< ' + s.exclusiveMaximum);
    if (s.pattern) bounds.push('minta: ' + s.pattern);
    if (bounds.length) t += ' (' + bounds.join(', ') + ')';
    return t;
  }

  /** A sample body from a schema (object properties, first enum value, minimum …). */
  function sample(doc, schema, depth) {
    const s = deref(doc, schema || {});
    if (depth > 5) return null;
    if (s.example !== undefined) return s.example;
    if (Array.isArray(s.examples) && s.examples.length) return s.examples[0];
    if (s.default !== undefined) return s.default;
    if (s.enum) return s.enum[0];
    if (Array.isArray(s.allOf) && s.allOf.length) {
      return Object.assign({}, ...s.allOf.map((x) => sample(doc, x, depth + 1)));
    }
    if (Array.isArray(s.anyOf) && s.anyOf.length) return sample(doc, s.anyOf[0], depth + 1);
    if (Array.isArray(s.oneOf) && s.oneOf.length) return sample(doc, s.oneOf[0], depth + 1);
    const type = Array.isArray(s.type) ? s.type[0] : s.type;
    if (type === 'object' || s.properties) {
      const out = {};
      const required = new Set(s.required || []);
      for (const [k, v] of Object.entries(s.properties || {})) {
        if (required.has(k) || depth === 0) out[k] = sample(doc, v, depth + 1);
      }
      return out;
    }
    if (type === 'array') return [sample(doc, s.items, depth + 1)];
    if (type === 'integer' || type === 'number') return s.minimum !== undefined ? s.minimum : 1;
    if (type === 'boolean') return false;
    if (type === 'string') return '';
    return null;
  }

  function operationCard(doc, path, method, op) {
    const params = (op.parameters || []).map((p) => deref(doc, p)).filter((p) => p.in === 'query' || p.in === 'path');
    const card = el('details', { class: 'op', 'data-method': method, 'data-path': path });
    card.append(el('summary', {},
      el('span', { class: 'method m-' + method, text: method.toUpperCase() }),
      el('code', { class: 'path', text: path }),
      el('span', { class: 'summary', text: op.summary || '' })));
    if (op.description) card.append(el('p', { class: 'desc', text: op.description }));

    const form = el('form', { class: 'try' });
    const inputs = [];
    if (params.length) {
      const table = el('table', { class: 'params' },
        el('thead', {}, el('tr', {}, el('th', { text: 'Paraméter' }), el('th', { text: 'Hol' }),
          el('th', { text: 'Típus' }), el('th', { text: 'Érték' }))));
      const body = el('tbody');
      for (const p of params) {
        const input = el('input', { type: 'text', name: p.name, 'aria-label': p.name });
        if (p.example !== undefined) input.value = String(p.example);
        inputs.push({ p, input });
        body.append(el('tr', {},
          el('td', {}, el('code', { text: p.name }), p.required ? el('span', { class: 'req', text: ' *' }) : null),
          el('td', { text: p.in }),
          el('td', { text: schemaText(doc, p.schema) }),
          el('td', {}, input)));
      }
      table.append(body);
      form.append(table);
    }
    let bodyInput = null;
    const json = op.requestBody && deref(doc, op.requestBody).content && deref(doc, op.requestBody).content['application/json'];
    if (json) {
      bodyInput = el('textarea', { class: 'body', rows: '6', spellcheck: 'false', 'aria-label': 'Kérés törzse (JSON)' });
      bodyInput.value = JSON.stringify(sample(doc, json.schema, 0), null, 2);
      form.append(el('label', { class: 'body-label', text: 'Kérés törzse (JSON)' }), bodyInput);
    }
    const send = el('button', { type: 'submit', text: 'Kipróbálás' });
    form.append(send);
    const out = el('pre', { class: 'answer', hidden: '' });
    form.append(out);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      let url = path;
      const query = new URLSearchParams();
      for (const { p, input } of inputs) {
        const v = input.value;
        if (p.in === 'path') url = url.replace('{' + p.name + '}', encodeURIComponent(v));
        else if (v !== '') query.append(p.name, v);
      }
      const qs = query.toString();
      if (qs) url += '?' + qs;
      const headers = { Accept: 'application/json' };
      const t = token();
      if (t) headers.Authorization = 'Bearer ' + t;
      const init = { method: method.toUpperCase(), headers };
      if (bodyInput) {
        headers['Content-Type'] = 'application/json';
        init.body = bodyInput.value;
      }
      out.hidden = false;
      out.textContent = method.toUpperCase() + ' ' + url + ' …';
      try {
        const res = await fetch(url, init);
        const text = await res.text();
        let shown = text;
        try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
        out.dataset.status = String(res.status);
        out.textContent = 'HTTP ' + res.status + '\n' + shown;
      } catch (e) {
        out.textContent = 'Hálózati hiba: ' + e;
      }
    });
    card.append(form);
    return card;
  }

  function render(doc) {
    const tagsBox = document.getElementById('tags');
    tagsBox.textContent = '';
    document.getElementById('version').textContent = (doc.info && doc.info.version) ? 'v' + doc.info.version : '';
    const described = new Map((doc.tags || []).map((t) => [t.name, t.description || '']));
    const groups = new Map();
    let count = 0;
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        count++;
        const tag = (op.tags && op.tags[0]) || 'egyéb';
        if (!groups.has(tag)) groups.set(tag, []);
        groups.get(tag).push(operationCard(doc, path, method, op));
      }
    }
    for (const [tag, cards] of groups) {
      const section = el('section', { class: 'tag', 'data-tag': tag },
        el('h2', { text: tag }),
        described.get(tag) ? el('p', { class: 'muted', text: described.get(tag) }) : null);
      cards.forEach((c) => section.append(c));
      tagsBox.append(section);
    }
    document.getElementById('status').textContent = count + ' művelet, ' + groups.size + ' csoport';
    document.body.dataset.operations = String(count);
  }

  function applyFilter() {
    const q = document.getElementById('filter').value.trim().toLowerCase();
    for (const card of document.querySelectorAll('details.op')) {
      card.hidden = q !== '' && !card.textContent.toLowerCase().includes(q);
    }
  }

  async function load() {
    try {
      const res = await fetch('/api/openapi.json', { headers: { Accept: 'application/json' } });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      render(await res.json());
      applyFilter();
    } catch (e) {
      document.getElementById('status').textContent = 'A dokumentum nem tölthető be: ' + e.message;
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    takeTokenFromFragment();
    const field = document.getElementById('token');
    field.value = token();
    document.getElementById('auth').addEventListener('submit', (event) => {
      event.preventDefault();
      setToken(field.value.trim());
    });
    document.getElementById('filter').addEventListener('input', applyFilter);
    load();
  });
})();
