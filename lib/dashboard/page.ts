/**
 * The dashboard page: one self-contained HTML document (inline CSS and a small inline
 * script, no build step, nothing loaded from anywhere else) that polls
 * `<page path>/api/state` and renders it with DOM text nodes only, so no value from the
 * server is ever parsed as HTML. A Content-Security-Policy pins the script by hash and
 * allows network access to this origin only.
 */
import { createHash } from 'node:crypto';

const STYLE = `
:root{--bg:#0f1419;--panel:#171e26;--line:#263241;--text:#d9e1ea;--dim:#8a9aab;--ok:#2fbf71;--warn:#e0a526;--bad:#e5484d;--info:#4f9dde}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--text);font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif}
header{display:flex;gap:16px;align-items:center;padding:14px 22px;border-bottom:1px solid var(--line);background:var(--panel)}
header h1{font-size:17px;margin:0;font-weight:600}header .sp{flex:1}
.badge{display:inline-block;padding:2px 9px;border-radius:10px;font-size:12px;font-weight:600;background:var(--line);color:var(--text)}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}.dim{color:var(--dim)}
.badge.ok{background:#173b29;color:var(--ok)}.badge.warn{background:#3f3215;color:var(--warn)}.badge.bad{background:#451b1e;color:var(--bad)}
main{display:grid;grid-template-columns:1fr 1fr;gap:16px;padding:16px 22px}
section{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}
section.wide{grid-column:1/-1}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--dim);margin:0 0 8px}
table{width:100%;border-collapse:collapse}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--dim);font-weight:500}td.num{text-align:right;font-variant-numeric:tabular-nums}
.chip{display:inline-block;margin:1px 3px 1px 0;padding:1px 7px;border-radius:4px;font-size:12px;border:1px solid var(--line)}
.chip.valid{border-color:var(--ok);color:var(--ok)}.chip.bad{border-color:var(--bad);color:var(--bad)}.chip.down{border-color:var(--warn);color:var(--warn)}
.margin{font-weight:700;font-size:15px}
#banner{display:none;margin:12px 22px 0;padding:8px 12px;border-radius:6px;background:#451b1e;color:#ffd7d9}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.empty{color:var(--dim);font-style:italic}
`;

const SCRIPT = `
"use strict";
(function () {
  var refresh = Number(document.querySelector('meta[name="fedkms-refresh"]').content) || 5;
  // An absolute URL from location.origin, which never carries user:password@. Opened with
  // credentials in its address, the page's relative fetch() would resolve against them and throw.
  var api = location.origin + location.pathname.replace(/\\/+$/, '') + '/api/state';
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, String(attrs[k]));
    (kids || []).forEach(function (c) { if (c !== undefined && c !== null) e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c))); });
    return e;
  }
  function rows(id, list, empty, make, cols) {
    var body = document.getElementById(id);
    body.replaceChildren();
    if (!list.length) { body.appendChild(el('tr', {}, [el('td', { colspan: cols, class: 'empty' }, [empty])])); return; }
    list.forEach(function (x) { body.appendChild(make(x)); });
  }
  function ago(iso) {
    if (!iso) return 'never';
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return s < 5 ? 'just now' : s < 120 ? s + ' s ago' : s < 7200 ? Math.round(s / 60) + ' min ago' : new Date(iso).toLocaleString();
  }
  function time(iso) { return new Date(iso).toLocaleTimeString(); }
  var TAMPER = { invalid_share: 1, corrupted: 1, inconsistent: 1 };
  function chipClass(s) { return s === 'valid' ? 'valid' : TAMPER[s] ? 'bad' : s === 'cancelled' ? '' : 'down'; }
  function chip(n) { return el('span', { class: 'chip ' + chipClass(n.status), 'data-node': n.nodeId, 'data-status': n.status, title: n.status }, [n.nodeId + ': ' + n.status.replace('_', ' ') + (n.latencyMs !== undefined ? ' ' + n.latencyMs.toFixed(0) + ' ms' : '')]); }
  function render(s) {
    var f = s.federation;
    var q = document.getElementById('quorum');
    q.textContent = f.nodesUp + ' of ' + f.total + ' nodes up, threshold ' + f.threshold;
    q.className = 'badge ' + (f.nodesUp === f.total ? 'ok' : f.quorum ? 'warn' : 'bad');
    rows('nodes', s.nodes, 'no nodes configured', function (n) {
      return el('tr', { 'data-node': n.nodeId, 'data-state': n.state }, [
        el('td', {}, [n.nodeId]),
        el('td', { class: n.state === 'up' ? 'ok' : n.state === 'degraded' ? 'warn' : 'bad' }, [n.state.toUpperCase()]),
        el('td', { class: 'num' }, [n.latencyMs !== undefined ? n.latencyMs.toFixed(1) + ' ms' : '']),
        el('td', {}, [n.lastSeen ? ago(n.lastSeen) + (n.lastSeenSource === 'audit' ? ' (last audited action)' : '') : 'never']),
        el('td', {}, [n.version || '']),
        el('td', { class: 'num' }, [n.keyCount === undefined || n.keyCount === null ? '' : n.keyCount]),
        el('td', { class: 'dim' }, [n.reason || '']),
      ]);
    }, 7);
    var keyNote = document.getElementById('keys-note');
    keyNote.textContent = !s.keys.ok ? 'key listing failed: ' + s.keys.error : s.keys.truncated ? 'showing the first ' + s.keys.items.length + ' keys' : '';
    rows('keys', s.keys.items, s.keys.ok ? 'no keys yet' : 'unavailable', function (k) {
      var m = k.quorumMargin;
      return el('tr', { 'data-key': k.keyId, 'data-margin': m, 'data-usable': k.usable }, [
        el('td', { class: 'mono' }, [k.keyId]),
        el('td', {}, [k.type || '?']),
        el('td', {}, [k.threshold + ' of ' + k.total]),
        el('td', { class: 'num' }, [k.version !== undefined ? 'v' + k.version : '']),
        el('td', {}, [k.state || (k.error ? k.error.replace(/_/g, ' ') : '')]),
        el('td', {}, k.nodes.map(chip)),
        k.usable === null
          ? el('td', { class: 'num margin warn', 'data-margin': 'unknown', title: 'nodes that were busy or slow could still make the quorum' }, ['unknown: ' + k.silent + (k.silent === 1 ? ' node' : ' nodes') + ' did not answer'])
          : el('td', { class: 'num margin ' + (m <= 0 ? 'bad' : m === 1 ? 'warn' : 'ok'), 'data-margin': m, title: m < 0 ? 'unusable: fewer than t valid fragments' : m === 0 ? 'one more failure makes this key unusable' : '' }, [(m < 0 ? m + ' (unusable)' : String(m)) + (k.silent ? ' (' + k.silent + ' did not answer)' : '')]),
      ]);
    }, 7);
    rows('events', s.events, 'no operations yet', function (e) {
      return el('tr', { 'data-event': e.action, 'data-key': e.keyId || '', 'data-outcome': e.outcome }, [
        el('td', { class: 'mono' }, [time(e.time)]),
        el('td', {}, [e.action]),
        el('td', { class: 'mono' }, [e.keyId || '']),
        el('td', { class: e.outcome === 'success' ? 'ok' : 'bad' }, [e.outcome + (e.reason ? ' (' + e.reason + ')' : '')]),
        el('td', { class: 'dim' }, [e.actor]),
        el('td', {}, e.nodes.map(chip)),
      ]);
    }, 6);
    rows('security', s.security, 'nothing to report', function (x) {
      return el('tr', { 'data-security': x.kind, 'data-node': x.nodeId || '', 'data-key': x.keyId || '' }, [
        el('td', { class: 'mono' }, [time(x.time)]),
        el('td', { class: x.kind === 'tamper' || x.kind === 'audit' ? 'bad' : 'warn' }, [x.kind]),
        el('td', {}, [x.nodeId || x.component]),
        el('td', { class: 'mono' }, [x.keyId || '']),
        el('td', {}, [x.detail]),
        el('td', { class: 'num' }, [x.count > 1 ? '\\u00d7' + x.count : '']),
      ]);
    }, 6);
    var a = s.audit;
    var an = document.getElementById('audit-note');
    an.textContent = !a.ok ? 'audit log unavailable (' + a.error + ')' : !a.complete ? 'partial scan of ' + a.records + ' records: run \`fedkms audit verify\` for a full verification' : a.records + ' records, every chain recomputed';
    an.className = !a.ok || a.verified === false ? 'bad' : a.complete ? 'ok' : 'warn';
    rows('components', a.components, 'no audit records', function (c) {
      return el('tr', { 'data-component': c.component, 'data-ok': c.ok }, [
        el('td', { class: 'mono' }, [c.component]),
        el('td', { class: c.ok ? 'ok' : 'bad' }, [c.ok ? 'intact' : 'BROKEN']),
        el('td', { class: 'num' }, [c.chains]),
        el('td', { class: 'num' }, [c.records]),
      ]);
    }, 4);
    rows('streams', a.streams, '', function (t) {
      return el('tr', { 'data-stream': t.stream, 'data-ok': t.ok }, [
        el('td', { class: 'mono' }, [t.stream]),
        el('td', { class: t.ok ? 'ok' : 'bad' }, [t.ok ? 'verified through #' + t.verifiedThrough : 'broken at #' + t.firstBroken.seq + ': ' + t.firstBroken.reason + ' (verified through #' + t.verifiedThrough + ')']),
      ]);
    }, 2);
    rows('checkpoints', a.checkpoints || [], 'no witnessed checkpoint', function (c) {
      return el('tr', { 'data-checkpoint': c.component, 'data-witnesses': c.witnesses.length }, [
        el('td', { class: 'mono' }, [c.component]),
        el('td', { class: 'num' }, ['#' + c.length]),
        el('td', { class: c.ageS > 3600 ? 'warn' : '' }, [ago(c.time)]),
        el('td', {}, [c.witnesses.join(', ') || 'none']),
      ]);
    }, 4);
    document.getElementById('updated').textContent = 'updated ' + time(s.generatedAt);
    document.body.setAttribute('data-loaded', s.generatedAt);
  }
  var banner = document.getElementById('banner');
  function poll() {
    fetch(api, { credentials: 'same-origin', cache: 'no-store', headers: { accept: 'application/json' } })
      .then(function (r) { if (r.status === 401) throw new Error('HTTP 401: the viewer token was not accepted; open ' + location.origin + location.pathname + ' and sign in when asked'); if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (s) { banner.style.display = 'none'; render(s); })
      .catch(function (e) { banner.textContent = 'Cannot refresh: ' + e.message + ' (retrying every ' + refresh + ' s)'; banner.style.display = 'block'; })
      .finally(function () { setTimeout(poll, refresh * 1000); });
  }
  poll();
})();
`;

export const SCRIPT_HASH = `sha256-${createHash('sha256').update(SCRIPT, 'utf8').digest('base64')}`;

export const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': `default-src 'none'; script-src '${SCRIPT_HASH}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

export function renderPage(opts: { refreshS: number }): string {
  const table = (id: string, heads: string[]) => `<table><thead><tr>${heads.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody id="${id}"></tbody></table>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="fedkms-refresh" content="${Math.trunc(opts.refreshS)}">
<link rel="icon" href="data:,"><title>fedkms federation</title><style>${STYLE}</style></head>
<body>
<header><h1>fedkms federation</h1><span id="quorum" class="badge">loading…</span><span class="sp"></span><span id="updated" class="dim">waiting for the first answer…</span></header>
<div id="banner" role="alert"></div>
<main>
<section class="wide"><h2>Nodes</h2>${table('nodes', ['Node', 'State', 'Latency', 'Last seen', 'Version', 'Keys', 'Detail'])}</section>
<section class="wide"><h2>Keys: fragment availability and quorum margin</h2><div id="keys-note" class="dim"></div>${table('keys', ['Key', 'Type', 'Threshold', 'Version', 'State', 'Fragments per node', 'Quorum margin'])}</section>
<section class="wide"><h2>Latest operations</h2>${table('events', ['Time', 'Operation', 'Key', 'Outcome', 'Requester', 'Per-node results'])}</section>
<section class="wide"><h2>Security log</h2>${table('security', ['Last seen', 'Kind', 'Node', 'Key', 'What', 'Count'])}</section>
<section><h2>Audit chains per component</h2><div id="audit-note"></div>${table('components', ['Component', 'Status', 'Chains', 'Records'])}</section>
<section><h2>Audit streams</h2>${table('streams', ['Stream', 'Verification'])}</section>
<section class="wide"><h2>Last witnessed checkpoint per component</h2>${table('checkpoints', ['Component', 'Length', 'Age', 'Witnesses'])}</section>
</main>
<script>${SCRIPT}</script>
</body></html>`;
}
