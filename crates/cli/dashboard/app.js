// The dashboard's pages: Sets, Fleet map, Cluster and Failures, rendered from the fleet
// the hub shows this user and redrawn (at most four times a second) as watches report.

import {
  Feed, Fleet, KINDS, STATES, STATE_LABEL, api, collator, hooks, matches, parseSelector, selectorText, setToken,
  skipReason,
} from './fleet.js';

const main = document.getElementById('main');
const live = document.getElementById('live');
const tip = document.getElementById('tip');
const failureCount = document.getElementById('failure-count');

/** What tests and the bench read: when the first page with data was drawn, and how long draws take. */
const perf = { firstRender: null, renders: 0, lastRenderMs: 0, longestRenderMs: 0, page: null };
window.syncsetsDashboard = perf;

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const plural = (n, one, many = `${one}s`) => `${n.toLocaleString('en')} ${n === 1 ? one : many}`;
const when = (t) => (t ? new Date(t).toLocaleString() : '—');
const stateBadge = (st) => `<span class="state s-${st}">${esc(STATE_LABEL[st] || st)}</span>`;
const setLabel = (id) => (id.startsWith('sss/') ? `SelectorSyncSet ${id.slice(4)}` : `SyncSet ${id.slice(3)}`);
const clusterHref = (k) => `#/cluster/${k.split('/').map(encodeURIComponent).join('/')}`;

let fleet;
let page = { name: null };

// ---- Routing and redraws -----------------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || '');
  if (parts[0] === 'cluster' && parts.length === 3) return { name: 'cluster', ns: parts[1], cluster: parts[2], params };
  if (parts[0] === 'fleet' || parts[0] === 'failures') return { name: parts[0], params };
  return { name: 'sets', params };
}

let scheduled = false;
let lastDraw = 0;
/** Redraws soon: watch events arriving in bursts make one redraw, at most every 250 ms. */
function schedule() {
  // Until the page has been drawn once, draw at once: a few sets are ready long before
  // thousands of clusters are parsed, which would hold a deferred draw back.
  if (!perf.painting && page.name) { draw(); return; }
  if (scheduled) return;
  scheduled = true;
  const wait = Math.max(0, 250 - (performance.now() - lastDraw));
  setTimeout(() => requestAnimationFrame(() => { scheduled = false; draw(); }), wait);
}

function draw() {
  lastDraw = performance.now();
  const started = performance.now();
  if (!PAGES[page.name]) return;
  const loaded = PAGES[page.name].needs.every((p) => fleet.feeds[p].state !== 'loading');
  drawHeader();
  if (!loaded) return;
  const marking = perf.firstRender === null;
  if (marking) performance.mark('syncsets:draw');
  PAGES[page.name].update(page);
  if (marking) performance.mark('syncsets:drawn');
  const took = performance.now() - started;
  perf.renders += 1;
  perf.lastRenderMs = took;
  perf.longestRenderMs = Math.max(perf.longestRenderMs, took);
  if (perf.firstRender === null && !perf.painting) {
    // First render: when the frame with the page drawn has been laid out and painted (a
    // task queued from the frame's animation callback runs after its paint).
    perf.painting = true;
    perf.page = page.name;
    requestAnimationFrame(() => setTimeout(() => {
      perf.firstRender = performance.now();
      performance.mark('syncsets:first-render');
    }));
  }
}

function navigate() {
  if (page.leave) page.leave();
  page = route();
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === page.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.innerHTML = '';
  tip.hidden = true;
  PAGES[page.name].mount(page);
  draw();
  main.focus({ preventScroll: true });
}

/**
 * Replaces `container`'s content with `html`, keeping the focus on the element with the
 * same `data-fk` if it had it (a redraw must not throw a keyboard user out).
 */
function replace(container, html) {
  const focused = document.activeElement;
  const fk = focused && container.contains(focused) ? focused.dataset.fk : undefined;
  container.innerHTML = html;
  if (fk) {
    const again = container.querySelector(`[data-fk="${CSS.escape(fk)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

/** Sets `el`'s text only when it changes (live regions announce every write). */
function text(el, value) {
  if (el.textContent !== value) el.textContent = value;
}

function drawHeader() {
  const loading = Object.values(fleet.feeds).some((f) => f.state === 'loading');
  const { state, error } = fleet.watches;
  if (state === 'reconnecting') text(live, `Reconnecting… (${error})`);
  else if (loading || state === 'connecting') text(live, 'Connecting…');
  else text(live, 'Live');
  live.className = state === 'live' && !loading ? 'live ok' : 'live';
  const failing = new Set();
  for (const g of fleet.failures()) for (const k of g.clusters) failing.add(k);
  text(failureCount, failing.size ? `${failing.size.toLocaleString('en')}` : '');
  const link = failureCount.parentElement;
  const label = failing.size ? `Failures: ${failing.size.toLocaleString('en')} failing clusters` : 'Failures';
  if (link.getAttribute('aria-label') !== label) link.setAttribute('aria-label', label);
}

/** Notes for collections this user may not read in full. */
function scopeNotes(...plurals) {
  const notes = [];
  const narrowed = [];
  for (const p of plurals) {
    const f = fleet.feeds[p];
    if (f.state === 'forbidden' || f.state === 'error') {
      notes.push(`<p class="note">${esc(KINDS[p].title)} cannot be shown: ${esc(f.error)}</p>`);
    } else if (f.namespace) {
      narrowed.push(KINDS[p].title);
    }
  }
  if (narrowed.length) {
    notes.unshift(`<p class="note">Showing namespace <code>${esc(fleet.namespace)}</code> only: you may not list ${esc(narrowed.join(' or '))} across namespaces.</p>`);
  }
  return notes.join('');
}

// ---- Sets --------------------------------------------------------------------------------

/** A set's rollout, from the summary the controllers keep on it. */
function summary(set) {
  const st = set.status || {};
  const clusters = st.clusters ?? 0;
  const current = st.observedGeneration === (set.metadata.generation || 0);
  if (!current) return { clusters, inSync: 0, failing: 0, pending: clusters, current };
  const inSync = st.inSync ?? 0;
  const failing = st.failing ?? 0;
  return {
    clusters, inSync, failing, pending: Math.max(0, clusters - inSync - failing), current,
    healthy: st.healthy, progressing: st.progressing, degraded: st.degraded,
  };
}

function progressBar(s) {
  const segments = [];
  if (s.healthy !== undefined || s.progressing !== undefined || s.degraded !== undefined) {
    const healthy = s.healthy ?? 0;
    const progressing = s.progressing ?? 0;
    const degraded = s.degraded ?? 0;
    segments.push(['insync', healthy + Math.max(0, s.inSync - healthy - progressing - degraded)], ['progressing', progressing], ['degraded', degraded]);
  } else {
    segments.push(['insync', s.inSync]);
  }
  segments.push(['failing', s.failing], ['pending', s.pending]);
  const parts = [`${s.inSync.toLocaleString('en')}/${s.clusters.toLocaleString('en')} in sync`];
  if (s.failing) parts.push(`${s.failing.toLocaleString('en')} failing`);
  if (s.pending) parts.push(`${s.pending.toLocaleString('en')} pending`);
  if (s.healthy !== undefined) parts.push(`${(s.healthy ?? 0).toLocaleString('en')} healthy`);
  if (s.progressing) parts.push(`${s.progressing.toLocaleString('en')} progressing`);
  if (s.degraded) parts.push(`${s.degraded.toLocaleString('en')} degraded`);
  const text = parts.join(' · ');
  const total = Math.max(1, s.clusters);
  const spans = segments.filter(([, n]) => n > 0)
    .map(([st, n]) => `<span class="s-${st}" style="width:${(100 * n) / total}%"></span>`).join('');
  return `<div class="bar" role="img" aria-label="${esc(text)}">${spans}</div><div class="counts">${esc(text)}</div>`;
}

function targetText(set) {
  if (set.kind !== 'SyncSet' && !set.spec.clusterDeploymentSelector) return '(no selector: no cluster)';
  if (set.kind === 'SyncSet') {
    const refs = (set.spec.clusterDeploymentRefs || []).map((r) => r.name);
    const shown = refs.slice(0, 3).join(', ');
    return refs.length > 3 ? `${shown} +${refs.length - 3}` : shown || '(no clusters)';
  }
  return selectorText(set.spec.clusterDeploymentSelector) || '(every cluster)';
}

function rolloutText(set) {
  const st = set.status || {};
  if (!st.rolloutPolicy) return '<span class="muted">at once</span>';
  const wave = st.rolloutWave ? `, wave ${esc(st.rolloutWave)}` : '';
  return `${esc(st.rolloutPhase || 'Pending')}${wave}<div class="counts">${esc(st.rolloutPolicy)}</div>`;
}

const ALL = Object.keys(KINDS);

const setsPage = {
  needs: ['selectorsyncsets', 'syncsets'],
  mount() {
    main.innerHTML = '<h1>Sets</h1><div id="notes"></div><div class="scroll"><table><caption class="muted">Every SyncSet and SelectorSyncSet you may read, with how far its current revision has rolled out.</caption><thead><tr><th scope="col">Set</th><th scope="col">Targets</th><th scope="col" class="hide-narrow">Mode</th><th scope="col">Revision</th><th scope="col">Rollout</th><th scope="col">Progress</th></tr></thead><tbody id="rows"></tbody></table></div>';
  },
  update(p) {
    const sets = fleet.sets();
    const signature = JSON.stringify([sets.map((s) => s.set.metadata.resourceVersion), fleet.feeds.selectorsyncsets.state, fleet.feeds.syncsets.state]);
    if (signature === p.signature) return;
    p.signature = signature;
    document.getElementById('notes').innerHTML = scopeNotes('selectorsyncsets', 'syncsets');
    const rows = sets.map(({ set, id }) => {
      const s = summary(set);
      return `<tr data-set="${esc(id)}"><th scope="row"><a href="#/fleet?set=${encodeURIComponent(id)}" data-fk="${esc(id)}">${esc(setLabel(id))}</a></th>
        <td><code>${esc(targetText(set))}</code></td>
        <td class="hide-narrow">${esc(set.spec.resourceApplyMode || 'Upsert')}</td>
        <td class="num">${esc(set.metadata.generation ?? '')}${s.current ? '' : ' <span class="muted">(applying)</span>'}</td>
        <td data-col="rollout">${rolloutText(set)}</td>
        <td data-col="progress">${progressBar(s)}</td></tr>`;
    });
    replace(document.getElementById('rows'), rows.join('') || '<tr><td colspan="6" class="muted">No sets yet.</td></tr>');
  },
};

// ---- Fleet map ---------------------------------------------------------------------------

/** The map's view: grouping label, selector and set, kept in the address. */
function mapView(params) {
  return { group: params.get('group'), selector: params.get('selector') || '', set: params.get('set') || '' };
}

function setView(view) {
  const q = new URLSearchParams();
  if (view.group !== null && view.group !== undefined) q.set('group', view.group);
  if (view.selector) q.set('selector', view.selector);
  if (view.set) q.set('set', view.set);
  history.replaceState(null, '', `#/fleet?${q}`);
  page.params = q;
}

/** The label to group by when none was chosen: the first of the usual ones present. */
function defaultGroup(keys) {
  for (const k of ['region', 'topology.kubernetes.io/region', 'hive.openshift.io/cluster-region', 'env', 'environment', 'fleet.syncsets.io/group']) {
    if (keys.has(k)) return k;
  }
  return '';
}

const fleetPage = {
  needs: ALL,
  mount(p) {
    main.innerHTML = `<h1>Fleet map</h1><div id="notes"></div>
      <form class="controls" id="controls" role="search" aria-label="Fleet map view">
        <label>Group by <select id="group"></select></label>
        <label>Label selector <input id="selector" type="search" placeholder="env=prod,region in (eu,us)" autocomplete="off" spellcheck="false" aria-describedby="selector-error"></label>
        <label>Set <select id="set"></select></label>
      </form>
      <p id="selector-error" class="error" aria-live="polite"></p>
      <ul class="legend" id="legend" aria-label="Clusters by state"></ul>
      <p class="muted">Each square is a cluster: hover it to see its name, click to open it. With the keyboard, tab to a group, choose a cluster with the arrow keys (Home, End) and open it with Enter.</p>
      <p id="map-status" class="sr" aria-live="polite"></p>
      <div id="groups"></div>`;
    const view = mapView(p.params);
    const selector = document.getElementById('selector');
    selector.value = view.selector;
    selector.addEventListener('input', () => {
      clearTimeout(p.typing);
      p.typing = setTimeout(() => { setView({ ...mapView(page.params), selector: selector.value.trim() }); draw(); }, 250);
    });
    document.getElementById('controls').addEventListener('submit', (e) => e.preventDefault());
    document.getElementById('group').addEventListener('change', (e) => { setView({ ...mapView(page.params), group: e.target.value }); draw(); });
    document.getElementById('set').addEventListener('change', (e) => { setView({ ...mapView(page.params), set: e.target.value }); draw(); });
    p.map = { signature: null, groups: [], where: new Map(), states: new Map() };
    let resizing;
    const resized = () => { clearTimeout(resizing); resizing = setTimeout(() => layOut(p.map), 100); };
    window.addEventListener('resize', resized);
    p.leave = () => { window.removeEventListener('resize', resized); clearTimeout(p.typing); clearTimeout(resizing); };
  },
  update(p) {
    document.getElementById('notes').innerHTML = scopeNotes('clusterdeployments', 'clustersyncs');
    const view = mapView(p.params);
    // Controls: every label key to group by, every set to show.
    const keys = new Set();
    for (const cd of fleet.clusters.values()) for (const k of Object.keys(cd.metadata.labels || {})) keys.add(k);
    const group = view.group ?? defaultGroup(keys);
    const groupSelect = document.getElementById('group');
    const groupOptions = ['', 'namespace', ...[...keys].sort()];
    const groupSig = groupOptions.join('\n');
    if (groupSelect.dataset.sig !== groupSig) {
      groupSelect.innerHTML = groupOptions.map((k) => `<option value="${esc(k)}">${k === '' ? '(none)' : k === 'namespace' ? '(namespace)' : esc(k)}</option>`).join('');
      groupSelect.dataset.sig = groupSig;
    }
    groupSelect.value = group;
    const sets = fleet.sets();
    const setSelect = document.getElementById('set');
    const setSig = sets.map((s) => s.id).join('\n');
    if (setSelect.dataset.sig !== setSig) {
      setSelect.innerHTML = `<option value="">(every set)</option>${sets.map((s) => `<option value="${esc(s.id)}">${esc(setLabel(s.id))}</option>`).join('')}`;
      setSelect.dataset.sig = setSig;
    }
    setSelect.value = view.set;

    // A selector being typed that does not parse yet leaves the map as it was.
    const error = document.getElementById('selector-error');
    try {
      p.reqs = parseSelector(view.selector);
      text(error, '');
    } catch (e) {
      text(error, `Label selector: ${e.message} (the map shows the last valid one)`);
    }
    const reqs = p.reqs || [];

    // Clusters by group (again only when the clusters or the view changed), their states.
    const states = fleet.states(view.set || undefined);
    const layoutKey = JSON.stringify([fleet.feeds.clusterdeployments.version, group, reqs]);
    if (p.layoutKey !== layoutKey) {
      const byGroup = new Map();
      for (const [k, cd] of fleet.clusters) {
        if (!matches(reqs, cd.metadata.labels)) continue;
        const g = group === '' ? '' : group === 'namespace' ? cd.metadata.namespace : (cd.metadata.labels || {})[group] ?? null;
        if (!byGroup.has(g)) byGroup.set(g, []);
        byGroup.get(g).push(k);
      }
      p.ordered = [...byGroup.entries()].sort(([a], [b]) => (a === null) - (b === null) || collator.compare(String(a), String(b)));
      for (const [, ks] of p.ordered) ks.sort(collator.compare);
      p.layoutKey = layoutKey;
    }
    const { ordered } = p;
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const [, ks] of ordered) for (const k of ks) counts[states.get(k)]++;
    document.getElementById('legend').innerHTML = STATES.filter((s) => counts[s] || s !== 'idle')
      .map((s) => `<li><span class="sw s-${s}" aria-hidden="true"></span>${esc(STATE_LABEL[s])}: <strong>${counts[s].toLocaleString('en')}</strong></li>`).join('');

    const map = p.map;
    const structure = p.structureOf === layoutKey ? p.structure : JSON.stringify([group, ordered]);
    p.structure = structure;
    p.structureOf = layoutKey;
    if (structure !== map.signature) {
      // The layout changed: a canvas per group, every cluster painted.
      const label = (g) => (group === '' ? 'All clusters' : g === null ? `no ${group} label` : `${group}=${g}`);
      const container = document.getElementById('groups');
      container.innerHTML = ordered.map(([g, ks]) => `<section class="group"><h3>${esc(label(g))} <span class="muted">(${plural(ks.length, 'cluster')})</span></h3><canvas class="map" tabindex="0" role="img" aria-describedby="map-status"></canvas></section>`).join('')
        || '<p class="muted">No cluster matches.</p>';
      const canvases = container.querySelectorAll('canvas');
      map.pitch = states.size <= 500 ? 22 : 14;
      map.states = states;
      map.where = new Map();
      map.groups = ordered.map(([g, keys], i) => {
        const grp = { label: label(g), keys, canvas: canvases[i], active: -1 };
        keys.forEach((k, n) => map.where.set(k, [grp, n]));
        listen(map, grp);
        return grp;
      });
      map.signature = structure;
      layOut(map);
      return;
    }
    // Same layout: repaint the clusters whose state changed.
    const before = map.states;
    map.states = states;
    for (const [k, st] of states) {
      if (before.get(k) === st) continue;
      const at = map.where.get(k);
      if (at) paint(map, at[0], at[1]);
    }
    for (const grp of map.groups) name(map, grp);
  },
};

/** The colours of the states, as the style sheet defines them, and stripes. */
let palette;
function colours() {
  if (palette) return palette;
  const css = getComputedStyle(document.documentElement);
  palette = Object.fromEntries(STATES.map((st) => [st, css.getPropertyValue(`--${st}`).trim()]));
  palette.focus = css.getPropertyValue('--focus').trim();
  const tile = document.createElement('canvas');
  tile.width = tile.height = 6;
  const t = tile.getContext('2d');
  t.strokeStyle = 'rgba(255,255,255,.45)';
  t.lineWidth = 2;
  t.beginPath();
  for (const o of [-6, 0, 6]) { t.moveTo(o, 6); t.lineTo(o + 6, 0); }
  t.stroke();
  palette.stripes = t.createPattern(tile, 'repeat');
  return palette;
}

/** Sizes each group's canvas to the page's width and paints every cluster. */
function layOut(map) {
  const dpr = window.devicePixelRatio || 1;
  for (const grp of map.groups) {
    const width = Math.max(map.pitch, grp.canvas.parentElement.clientWidth);
    grp.cols = Math.max(1, Math.floor((width - 2) / map.pitch));
    const rows = Math.ceil(grp.keys.length / grp.cols);
    const w = Math.min(grp.keys.length, grp.cols) * map.pitch + 2;
    const h = rows * map.pitch + 2;
    grp.canvas.style.width = `${w}px`;
    grp.canvas.style.height = `${h}px`;
    grp.canvas.width = Math.round(w * dpr);
    grp.canvas.height = Math.round(h * dpr);
    grp.ctx = grp.canvas.getContext('2d');
    grp.ctx.scale(dpr, dpr);
    paintAll(map, grp);
    name(map, grp);
  }
}

/** Where cluster `i`'s square starts on its group's canvas. */
const cellAt = (map, grp, i) => ({ x: 1 + (i % grp.cols) * map.pitch, y: 1 + Math.floor(i / grp.cols) * map.pitch });

/** Paints every cluster of a freshly sized group: the squares of each state as one path. */
function paintAll(map, grp) {
  const c = colours();
  const cell = map.pitch - 2;
  const ctx = grp.ctx;
  const byState = new Map();
  grp.keys.forEach((k, i) => {
    const st = map.states.get(k);
    if (!byState.has(st)) byState.set(st, new Path2D());
    const { x, y } = cellAt(map, grp, i);
    byState.get(st).rect(x, y, cell, cell);
  });
  for (const [st, path] of byState) {
    ctx.fillStyle = c[st];
    ctx.fill(path);
    if (st === 'failing' || st === 'degraded') {
      ctx.fillStyle = c.stripes;
      ctx.fill(path);
    }
  }
  if (grp.active >= 0) paint(map, grp, grp.active);
}

/** Paints cluster `i` of a group (with the keyboard's cursor if it is there). */
function paint(map, grp, i) {
  const c = colours();
  const cell = map.pitch - 2;
  const { x, y } = cellAt(map, grp, i);
  const ctx = grp.ctx;
  ctx.clearRect(x - 1, y - 1, cell + 2, cell + 2);
  const st = map.states.get(grp.keys[i]);
  ctx.fillStyle = c[st];
  ctx.fillRect(x, y, cell, cell);
  if (st === 'failing' || st === 'degraded') {
    ctx.fillStyle = c.stripes;
    ctx.fillRect(x, y, cell, cell);
  }
  if (i === grp.active && document.activeElement === grp.canvas) {
    ctx.strokeStyle = c.focus;
    ctx.lineWidth = 2;
    ctx.strokeRect(x, y, cell, cell);
  }
}

/** A group's accessible name: what it holds, and how to move in it. */
function name(map, grp) {
  const failing = grp.keys.filter((k) => map.states.get(k) === 'failing').length;
  const label = `${grp.label}: ${plural(grp.keys.length, 'cluster')}${failing ? `, ${failing.toLocaleString('en')} failing` : ''}. Arrow keys choose a cluster, Enter opens it.`;
  if (grp.canvas.getAttribute('aria-label') !== label) grp.canvas.setAttribute('aria-label', label);
}

/** What a cluster's square says: the cluster and its state. */
const cellName = (map, k) => `${k}: ${STATE_LABEL[map.states.get(k)]}`;

/** The cluster under a point of a group's canvas, if any. */
function hit(map, grp, e) {
  const col = Math.floor((e.offsetX - 1) / map.pitch);
  const row = Math.floor((e.offsetY - 1) / map.pitch);
  if (col < 0 || col >= grp.cols || row < 0) return -1;
  const i = row * grp.cols + col;
  return i < grp.keys.length ? i : -1;
}

/** Shows the name of cluster `i` of a group beside its square. */
function showTip(map, grp, i) {
  const r = grp.canvas.getBoundingClientRect();
  const at = cellAt(map, grp, i);
  const x = r.left + at.x;
  const y = r.top + at.y;
  tip.textContent = cellName(map, grp.keys[i]);
  tip.hidden = false;
  tip.style.left = `${Math.max(4, Math.min(x, window.innerWidth - tip.offsetWidth - 4))}px`;
  const below = y + map.pitch + 2;
  tip.style.top = `${below + tip.offsetHeight + 4 > window.innerHeight ? y - tip.offsetHeight - 4 : below}px`;
}

/** Mouse and keyboard on a group's canvas. */
function listen(map, grp) {
  const c = grp.canvas;
  c.addEventListener('mousemove', (e) => {
    const i = hit(map, grp, e);
    if (i < 0) { tip.hidden = true; c.style.cursor = ''; return; }
    c.style.cursor = 'pointer';
    showTip(map, grp, i);
  });
  c.addEventListener('mouseleave', () => { tip.hidden = true; });
  c.addEventListener('click', (e) => {
    const i = hit(map, grp, e);
    if (i >= 0) location.hash = clusterHref(grp.keys[i]);
  });
  const choose = (i) => {
    const was = grp.active;
    grp.active = Math.max(0, Math.min(grp.keys.length - 1, i));
    if (was >= 0) paint(map, grp, was);
    paint(map, grp, grp.active);
    showTip(map, grp, grp.active);
    text(document.getElementById('map-status'), cellName(map, grp.keys[grp.active]));
  };
  c.addEventListener('focus', () => { if (c.matches(':focus-visible')) choose(grp.active < 0 ? 0 : grp.active); });
  c.addEventListener('blur', () => { tip.hidden = true; if (grp.active >= 0) paint(map, grp, grp.active); });
  c.addEventListener('keydown', (e) => {
    const i = Math.max(0, grp.active);
    if (e.key === 'Enter' && grp.active >= 0) { e.preventDefault(); location.hash = clusterHref(grp.keys[i]); return; }
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + grp.cols, ArrowUp: i - grp.cols, Home: 0, End: grp.keys.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    choose(to);
  });
}

/** For tests and the bench: the map's clusters in order, and where one is on the screen. */
perf.map = () => {
  const map = page.map;
  if (!map) return null;
  return { keys: map.groups.flatMap((g) => g.keys), states: Object.fromEntries(map.states) };
};
perf.cellCenter = (k) => {
  const map = page.map;
  const [grp, i] = map.where.get(k);
  const r = grp.canvas.getBoundingClientRect();
  const half = (map.pitch - 2) / 2;
  const at = cellAt(map, grp, i);
  return { x: r.left + at.x + half, y: r.top + at.y + half };
};

// ---- Cluster -----------------------------------------------------------------------------

/** What a set applies, as `Kind namespace/name`. */
function applied(set) {
  const name = (o) => `${o.kind} ${o.metadata && o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata ? o.metadata.name : ''}`;
  const out = (set.spec.resources || []).map(name);
  for (const p of set.spec.patches || []) out.push(`patch ${p.kind} ${p.namespace ? `${p.namespace}/` : ''}${p.name}`);
  for (const m of set.spec.secretMappings || []) out.push(`Secret ${m.targetRef.namespace ? `${m.targetRef.namespace}/` : ''}${m.targetRef.name}`);
  return out;
}

const refText = (r) => `${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}`;

function list(items, empty = 'none') {
  if (!items.length) return `<span class="muted">${empty}</span>`;
  return `<ul>${items.map((i) => `<li><code>${esc(i)}</code></li>`).join('')}</ul>`;
}

const clusterPage = {
  needs: ALL,
  mount(p) {
    main.innerHTML = '<div id="cluster"></div>';
    p.events = fleet.follow(new Feed('events', {
      namespace: p.ns,
      fieldSelector: `involvedObject.kind=ClusterDeployment,involvedObject.name=${p.cluster}`,
    }));
    // The cluster's whole ClusterSync (the fleet's keeps what overviews read).
    p.sync = fleet.follow(new Feed('clustersyncs', { namespace: p.ns, fieldSelector: `metadata.name=${p.cluster}` }));
    p.leave = () => { fleet.stop(p.events); fleet.stop(p.sync); };
    p.signature = null;
  },
  update(p) {
    const k = `${p.ns}/${p.cluster}`;
    const cd = fleet.clusters.get(k);
    const cs = p.sync.items.get(k) || fleet.syncs.get(k);
    const events = [...p.events.items.values()]
      .sort((a, b) => String(b.lastTimestamp || b.eventTime || '').localeCompare(String(a.lastTimestamp || a.eventTime || '')));
    const sets = cd ? fleet.setsOf(cd, cs) : [];
    const signature = JSON.stringify([p.sync.state, p.sync.items.has(k), cd && cd.metadata.resourceVersion, cs && cs.metadata.resourceVersion, sets.map((s) => [s.id, s.set.metadata.resourceVersion]), events.map((e) => e.metadata.resourceVersion), p.events.state]);
    if (signature === p.signature) return;
    p.signature = signature;
    const open = new Set([...main.querySelectorAll('details[open]')].map((d) => d.dataset.id));
    const root = document.getElementById('cluster');
    if (!cd) {
      root.innerHTML = `<h1>Cluster ${esc(k)}</h1><p class="note">No ClusterDeployment ${esc(k)} — it does not exist, or you may not read it.</p>`;
      return;
    }
    let st = 'idle';
    for (const s of sets) st = STATES.indexOf(s.state) < STATES.indexOf(st) ? s.state : st;
    const labels = Object.entries(cd.metadata.labels || {}).map(([l, v]) => `<li><code>${esc(l)}=${esc(v)}</code></li>`).join('');
    const skip = skipReason(cd);
    const breakerEvent = events.find((e) => e.reason === 'CircuitBreakerOpen' || e.reason === 'CircuitBreakerClosed');
    const breaker = breakerEvent && breakerEvent.reason === 'CircuitBreakerOpen'
      ? `<strong class="error">open</strong> since ${esc(when(breakerEvent.lastTimestamp || breakerEvent.eventTime))}: the cluster is tried less often until it answers`
      : breakerEvent ? `closed (${esc(when(breakerEvent.lastTimestamp || breakerEvent.eventTime))})` : 'closed';
    const conditions = ((cs && cs.status && cs.status.conditions) || [])
      .map((c) => `<li><code>${esc(c.type)}=${esc(c.status)}</code> ${esc(c.reason || '')} ${c.message ? `— ${esc(c.message)}` : ''}</li>`).join('');
    const rows = sets.map((s) => {
      const r = s.result;
      const unhealthy = (r && r.unhealthyResources || []).map((u) => `${refText(u)}: ${u.health}: ${u.message}`);
      const toDelete = (r && r.resourcesToDelete || []).map(refText);
      const what = applied(s.set);
      return `<tr><th scope="row">${esc(setLabel(s.id))}</th>
        <td>${stateBadge(s.state)}${r ? ` <span class="counts">${esc(r.result)}</span>` : ''}</td>
        <td class="num">${r ? esc(r.observedGeneration) : '—'} / ${esc(s.set.metadata.generation ?? '')}</td>
        <td>${esc((r && r.health) || '—')}</td>
        <td>${esc(when(r && r.lastTransitionTime))}${r && r.healthTransitionTime ? `<div class="counts">health: ${esc(when(r.healthTransitionTime))}</div>` : ''}</td>
        <td>${r && r.failureMessage ? `<div class="msg error">${esc(r.failureMessage)}</div>` : ''}
          <details data-id="a-${esc(s.id)}"><summary data-fk="a-${esc(s.id)}">${plural(what.length, 'resource')} applied, ${toDelete.length.toLocaleString('en')} to delete${unhealthy.length ? `, ${unhealthy.length} not healthy` : ''}</summary>
          <h3>Applied</h3>${list(what)}<h3>To delete when no longer applied</h3>${list(toDelete)}${unhealthy.length ? `<h3>Not healthy</h3>${list(unhealthy)}` : ''}</details></td></tr>`;
    }).join('');
    const eventRows = events.map((e) => `<tr><td>${esc(e.type)}</td><td>${esc(e.reason)}</td><td class="msg">${esc(e.message)}</td><td class="num">${esc(e.count ?? 1)}</td><td>${esc(when(e.lastTimestamp || e.eventTime))}</td></tr>`).join('');
    replace(root, `<h1>Cluster ${esc(k)} ${stateBadge(st)}</h1>
      ${skip ? `<p class="note">Nothing is synced to it now: ${esc(skip)}.</p>` : ''}
      <h2>Labels</h2><ul class="chips">${labels || '<li class="muted">none</li>'}</ul>
      <h2>Circuit breaker</h2><p>${breaker}</p>
      ${conditions ? `<h2>Conditions</h2><ul>${conditions}</ul>` : ''}
      <h2>Sets targeting it</h2>
      <div class="scroll"><table><thead><tr><th scope="col">Set</th><th scope="col">Result</th><th scope="col">Revision applied / current</th><th scope="col">Health</th><th scope="col">Last transition</th><th scope="col">Details</th></tr></thead>
      <tbody>${rows || '<tr><td colspan="6" class="muted">No set targets this cluster.</td></tr>'}</tbody></table></div>
      <h2>Events</h2>${p.events.state === 'forbidden' || p.events.state === 'error' ? `<p class="note">Events cannot be shown: ${esc(p.events.error)}</p>` : ''}
      <div class="scroll"><table id="events"><thead><tr><th scope="col">Type</th><th scope="col">Reason</th><th scope="col">Message</th><th scope="col">Count</th><th scope="col">Last seen</th></tr></thead>
      <tbody>${eventRows || '<tr><td colspan="5" class="muted">No events.</td></tr>'}</tbody></table></div>`);
    for (const d of root.querySelectorAll('details')) if (open.has(d.dataset.id)) d.open = true;
  },
};

// ---- Failures ----------------------------------------------------------------------------

const failuresPage = {
  needs: ALL,
  mount(p) {
    main.innerHTML = '<h1>Failures</h1><div id="notes"></div><div id="failures"></div>';
    p.signature = null;
    p.groups = [];
    document.getElementById('failures').addEventListener('toggle', (e) => {
      const d = e.target;
      if (d.open && !d.dataset.filled) fillClusters(d, p.groups[Number(d.dataset.i)]);
    }, true);
  },
  update(p) {
    document.getElementById('notes').innerHTML = scopeNotes('clustersyncs');
    const groups = fleet.failures();
    const signature = JSON.stringify(groups.map((g) => [g.message, [...g.clusters], [...g.sets]]));
    if (signature === p.signature) return;
    p.signature = signature;
    const open = new Set([...main.querySelectorAll('details[open]')].map((d) => d.dataset.message));
    p.groups = groups;
    replace(document.getElementById('failures'), groups.map((g, i) => `<section class="failure">
        <h2>${plural(g.clusters.size, 'cluster')}: <span class="msg">${esc(g.message)}</span></h2>
        <p>${[...g.sets].sort().map((id) => `<a href="#/fleet?set=${encodeURIComponent(id)}">${esc(setLabel(id))}</a>`).join(', ')}</p>
        <details data-i="${i}" data-message="${esc(g.message)}"><summary data-fk="f-${esc(g.message)}">Its ${plural(g.clusters.size, 'cluster')}</summary><ul class="links"></ul></details>
      </section>`).join('') || '<p>Nothing fails.</p>');
    for (const d of main.querySelectorAll('details')) {
      if (open.has(d.dataset.message)) { d.open = true; fillClusters(d, groups[Number(d.dataset.i)]); }
    }
  },
};

function fillClusters(details, group) {
  if (!group) return;
  details.dataset.filled = '1';
  const ks = [...group.clusters].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  details.querySelector('ul').innerHTML = ks.map((k) => `<li><a href="${esc(clusterHref(k))}">${esc(k)}</a></li>`).join('');
}

const PAGES = { sets: setsPage, fleet: fleetPage, cluster: clusterPage, failures: failuresPage };

// ---- Start -------------------------------------------------------------------------------

const TOKEN = `syncsets-dashboard-token-${location.port}`;

/** The token of the address `syncsets dashboard` printed: taken from it once, then kept. */
function takeToken() {
  const m = /^#token=([0-9a-f]+)$/.exec(location.hash);
  if (m) {
    localStorage.setItem(TOKEN, m[1]);
    history.replaceState(null, '', `${location.pathname}#/sets`);
  }
  return localStorage.getItem(TOKEN);
}

function locked() {
  document.body.innerHTML = '<main id="main"><h1>syncsets dashboard</h1><p>Open the address <code>syncsets dashboard</code> printed: it carries the token that lets this browser in (the dashboard may have been restarted since).</p></main>';
}

async function start() {
  const t = takeToken();
  if (!t) { locked(); return; }
  setToken(t);
  hooks.onUnauthorized = () => {
    localStorage.removeItem(TOKEN);
    if (fleet) fleet.watches.close();
    page = { name: null };
    locked();
  };
  // The lists start at once; the namespace to fall back to is only needed on a 403.
  const namespace = api('/config.json').then((res) => (res.ok ? res.json() : {})).then((c) => c.namespace || null, () => null);
  fleet = new Fleet(namespace, schedule);
  document.querySelector('.skip').addEventListener('click', (e) => { e.preventDefault(); main.focus(); });
  window.addEventListener('hashchange', navigate);
  navigate();
  // Each collection redraws the page as it arrives.
  await fleet.start(page.name === 'sets');
}

start().catch((e) => { main.innerHTML = `<p class="error">The dashboard could not start: ${esc(e.message)}</p>`; });
