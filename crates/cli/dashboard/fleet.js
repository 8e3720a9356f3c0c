// The fleet as the hub's API shows it to this user: each collection listed once, then
// kept current by a watch from the list's resourceVersion (no polling), and what the
// pages derive from it — which sets target which cluster, and how each cluster is doing.

const HIVE = 'apis/hive.openshift.io/v1';
const INTERNAL = 'apis/hiveinternal.openshift.io/v1alpha1';

export const KINDS = {
  clusterdeployments: { api: HIVE, namespaced: true, title: 'ClusterDeployments' },
  clustersyncs: { api: INTERNAL, namespaced: true, title: 'ClusterSyncs' },
  syncsets: { api: HIVE, namespaced: true, title: 'SyncSets' },
  selectorsyncsets: { api: HIVE, namespaced: false, title: 'SelectorSyncSets' },
};

export const key = (o) => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- Reading through the dashboard -------------------------------------------------------

let token = null;
/** Remembers the dashboard's token, which every read carries. */
export function setToken(t) { token = t; }

/** The dashboard's answer to `path` (its token attached); `onUnauthorized` on a 401. */
export const hooks = { onUnauthorized: () => {} };
export async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { 'X-Syncsets-Dashboard-Token': token || '' } });
  if (res.status === 401) hooks.onUnauthorized();
  return res;
}

/** The message of a Kubernetes Status answer, or the HTTP status. */
async function failure(res) {
  try {
    const s = await res.json();
    if (s && s.message) return s.message;
  } catch { /* not JSON */ }
  return `${res.status} ${res.statusText}`;
}

/** A list or watch that may work if asked again later. */
class Transient extends Error {}

/** The query that lists a collection as a stream (Kubernetes' streaming list). */
const STREAMING_LIST = {
  watch: '1', sendInitialEvents: 'true', resourceVersionMatch: 'NotOlderThan', allowWatchBookmarks: 'true',
};

/**
 * Lists `feed` as a stream through the dashboard's `/watch`, handing its objects to
 * `onItems` a batch at a time as they arrive: the hub sends the first at once, and they
 * are parsed while later ones are read. Ends with `{status, message}`, or
 * `{status: 200, rv}` at the bookmark that ends the initial state.
 */
async function streamList(feed, onItems) {
  const q = new URLSearchParams();
  q.set(feed.param(), feed.path() + feed.query(STREAMING_LIST));
  let res;
  try {
    res = await api(`/watch?${q}`);
  } catch (e) {
    return { status: 0, message: `the dashboard did not answer: ${e.message}` };
  }
  if (!res.ok) return { status: res.status, message: await failure(res) };
  for await (const lines of streamLines(res)) {
    const batch = [];
    for (const m of lines) {
      if (m.status !== undefined) return { status: m.status, message: (m.e && m.e.message) || `the hub answered ${m.status}` };
      if (m.end) return { status: 0, message: 'the list ended before its last object' };
      const { type, object } = m.e;
      if (type === 'ADDED') batch.push(object);
      else if (type === 'ERROR') return { status: object.code || 0, message: object.message || 'the list failed' };
      else if (type === 'BOOKMARK' && (object.metadata.annotations || {})['k8s.io/initial-events-end'] === 'true') {
        onItems(batch);
        return { status: 200, rv: object.metadata.resourceVersion };
      }
    }
    onItems(batch);
  }
  return { status: 0, message: 'the list ended before its last object' };
}

/**
 * The lines of a `/watch` answer, parsed, those of each chunk read together; leaving the
 * loop cancels the answer.
 */
async function* streamLines(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = [];
      let from = 0;
      let nl;
      while ((nl = buffer.indexOf('\n', from)) >= 0) {
        const line = buffer.slice(from, nl);
        from = nl + 1;
        if (line.trim()) lines.push(JSON.parse(line));
      }
      buffer = buffer.slice(from);
      yield lines;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/**
 * One collection: `items` (key → object), listed once and then kept current by the page's
 * one watch stream ([`Watches`]). `state` is `loading`, `live`, `forbidden` or `error`
 * (both final, with `error` saying why); `version` counts changes. A `summary` feed holds
 * the dashboard's summaries of its objects (what overviews read: of 10,000 clusters a few
 * MB rather than tens); the others, the objects whole.
 */
export class Feed {
  constructor(plural, { namespace, fieldSelector, fallback, summary } = {}) {
    this.plural = plural;
    this.kind = KINDS[plural] || { api: 'api/v1', namespaced: true, title: plural };
    this.namespace = namespace || null;
    this.fallback = fallback || null; // a promise of a namespace
    this.fieldSelector = fieldSelector || '';
    this.summary = Boolean(summary);
    this.items = new Map();
    this.state = 'loading';
    this.error = null;
    this.rv = '';
    this.version = 0;
    this.stopped = false;
    this.loaded = new Promise((resolve) => { this.resolveLoaded = resolve; });
  }

  path() {
    const ns = this.namespace ? `/namespaces/${encodeURIComponent(this.namespace)}` : '';
    return `/${this.kind.api}${ns}/${this.plural}`;
  }

  query(extra) {
    const q = new URLSearchParams(extra);
    if (this.fieldSelector) q.set('fieldSelector', this.fieldSelector);
    const s = q.toString();
    return s ? `?${s}` : '';
  }

  /** How `/watch` takes it: `s` for overviews' summaries of its objects, `w` for them whole. */
  param() { return this.summary ? 's' : 'w'; }

  /** Where its watch resumes. */
  watchPath() {
    return this.path() + this.query({ watch: '1', allowWatchBookmarks: 'true', resourceVersion: this.rv });
  }

  /**
   * Lists (again), falling back to the user's namespace when the whole hub is forbidden.
   * False when it never will (forbidden, not served); throws [`Transient`] otherwise.
   */
  async list() {
    for (;;) {
      const items = new Map();
      const answer = await streamList(this, (batch) => { for (const o of batch) items.set(key(o), o); });
      performance.mark(`syncsets:listed:${this.plural}`);
      if (answer.status === 200) {
        this.items = items;
        this.rv = answer.rv;
        this.version++;
        return true;
      }
      if (answer.status === 401) hooks.onUnauthorized();
      const fallback = this.kind.namespaced && !this.namespace && await this.fallback;
      if (answer.status === 403 && fallback) {
        this.namespace = fallback;
        continue;
      }
      if ([401, 403, 404].includes(answer.status)) {
        this.state = answer.status === 403 ? 'forbidden' : 'error';
        this.error = answer.message;
        return false;
      }
      throw new Transient(answer.message);
    }
  }

  /** Lists until it can, then joins `watches`. */
  async start(watches) {
    let delay = 500;
    while (!this.stopped) {
      try {
        const ok = await this.list();
        if (this.stopped) return; // its page has gone meanwhile
        if (ok) {
          this.state = 'live';
          watches.add(this);
        }
        this.resolveLoaded();
        watches.cleared();
        return;
      } catch (e) {
        watches.trouble(e.message);
        await sleep(delay);
        delay = Math.min(delay * 2, 10000);
      }
    }
  }

  /** Applies one watch event; `gone` when its resourceVersion is too old to watch from. */
  apply(event) {
    if (event.type === 'ERROR') {
      if (event.object && event.object.code === 410) return 'gone';
      throw new Transient((event.object && event.object.message) || 'watch error');
    }
    const o = event.object;
    if (o && o.metadata && o.metadata.resourceVersion) this.rv = o.metadata.resourceVersion;
    if (event.type === 'BOOKMARK') return 'bookmark';
    if (event.type === 'DELETED') this.items.delete(key(o));
    else this.items.set(key(o), o);
    this.version++;
    return 'changed';
  }
}

/**
 * The page's one watch stream: every collection's watch multiplexed by the dashboard
 * (`/watch`), so that a page holds one connection however many it follows (a browser
 * allows six per host over HTTP/1.1, across all its tabs). A collection joining or
 * leaving, a watch ending or a 410 Gone reopens it from each collection's
 * resourceVersion: nothing is missed, nothing listed again but what must be.
 */
export class Watches {
  constructor(onChange) {
    this.onChange = onChange;
    this.feeds = [];
    this.state = 'connecting';
    this.error = null;
    this.abort = null;
    this.wakeUp = () => {};
    this.run();
  }

  add(feed) {
    if (feed.stopped || this.closed) return;
    this.feeds.push(feed);
    this.reopen();
  }

  remove(feed) {
    feed.stopped = true;
    const before = this.feeds.length;
    this.feeds = this.feeds.filter((f) => f !== feed);
    if (this.feeds.length !== before) this.reopen();
  }

  /** A list that had trouble worked: the stream's own state holds again. */
  cleared() {
    if (this.state === 'reconnecting' && this.open) { this.state = 'live'; this.error = null; }
    this.onChange();
  }

  /** Stops for good (the dashboard no longer lets this page in). */
  close() {
    this.closed = true;
    this.feeds = [];
    if (this.abort) this.abort.abort();
  }

  trouble(why) {
    this.state = 'reconnecting';
    this.error = why;
    this.onChange();
  }

  /** Reopens the stream soon: collections joining together make one reopening. */
  reopen() {
    clearTimeout(this.reopening);
    this.reopening = setTimeout(() => {
      if (this.abort) this.abort.abort();
      this.wakeUp();
    }, 50);
  }

  async run() {
    let delay = 500;
    while (!this.closed) {
      const feeds = [...this.feeds];
      if (!feeds.length) {
        await new Promise((resolve) => { this.wakeUp = resolve; });
        continue;
      }
      this.abort = new AbortController();
      const opened = performance.now();
      let outcome;
      try {
        outcome = await this.stream(feeds, this.abort.signal);
        delay = 500;
      } catch (e) {
        if (this.abort.signal.aborted) continue; // reopened on purpose
        this.trouble(e.message);
        await sleep(delay);
        delay = Math.min(delay * 2, 10000);
        continue;
      }
      if (outcome !== 'reopen' && performance.now() - opened < 1000) await sleep(1000);
    }
  }

  /** One multiplexed stream, until a watch in it ends. */
  async stream(feeds, signal) {
    const q = new URLSearchParams();
    for (const f of feeds) q.append(f.param(), f.watchPath());
    const res = await api(`/watch?${q}`, { signal });
    if (!res.ok) throw new Error(await failure(res));
    this.state = 'live';
    this.error = null;
    this.open = true;
    this.onChange();
    try {
      for await (const lines of streamLines(res)) {
        let changed = false;
        for (const m of lines) {
          const feed = feeds[m.i];
          if (!feed) continue;
          if (m.status !== undefined) {
            if (m.status === 410) { await this.relist(feed); return 'gone'; }
            if ([401, 403, 404].includes(m.status)) {
              feed.state = m.status === 403 ? 'forbidden' : 'error';
              feed.error = (m.e && m.e.message) || `${m.status}`;
              this.feeds = this.feeds.filter((f) => f !== feed);
              this.onChange();
              return 'reopen';
            }
            throw new Error((m.e && m.e.message) || `the hub answered ${m.status}`);
          }
          if (m.end) { if (changed) this.onChange(); return 'ended'; }
          if (feed.apply(m.e) === 'gone') { await this.relist(feed); return 'gone'; }
          changed = true;
        }
        if (changed) this.onChange();
      }
      return 'ended';
    } finally {
      this.open = false;
    }
  }

  async relist(feed) {
    if (feed.stopped) return;
    await feed.list();
    this.onChange();
  }
}

// ---- Label selectors -------------------------------------------------------------------

/** A LabelSelector object's requirements. */
export function fromLabelSelector(sel) {
  const reqs = [];
  if (!sel) return reqs;
  for (const [k, v] of Object.entries(sel.matchLabels || {})) reqs.push({ key: k, op: 'In', values: [v] });
  for (const e of sel.matchExpressions || []) reqs.push({ key: e.key, op: e.operator, values: e.values || [] });
  return reqs;
}

/** Whether `labels` satisfy every requirement. */
export function matches(reqs, labels) {
  const l = labels || {};
  return reqs.every(({ key: k, op, values }) => {
    const has = Object.prototype.hasOwnProperty.call(l, k);
    switch (op) {
      case 'In': return has && values.includes(l[k]);
      case 'NotIn': return !has || !values.includes(l[k]);
      case 'Exists': return has;
      case 'DoesNotExist': return !has;
      default: return false;
    }
  });
}

/**
 * Parses kubectl's selector syntax (`env=prod,tier!=db,region in (a,b),!legacy`);
 * throws an Error saying what is wrong.
 */
export function parseSelector(text) {
  const reqs = [];
  const s = text.trim();
  let i = 0;
  const ws = () => { while (i < s.length && s[i] === ' ') i++; };
  const word = () => {
    ws();
    const m = /^[A-Za-z0-9._\-/]+/.exec(s.slice(i));
    if (!m) return '';
    i += m[0].length;
    return m[0];
  };
  const valueWord = () => {
    ws();
    const m = /^[A-Za-z0-9._\-]*/.exec(s.slice(i));
    i += m[0].length;
    return m[0];
  };
  while (i < s.length) {
    ws();
    if (s[i] === '!') {
      i++;
      const k = word();
      if (!k) throw new Error(`a label key is expected after "!" at ${i + 1}`);
      reqs.push({ key: k, op: 'DoesNotExist', values: [] });
    } else {
      const k = word();
      if (!k) throw new Error(`a label key is expected at ${i + 1}`);
      ws();
      const rest = s.slice(i);
      let m;
      if ((m = /^(==|=|!=)/.exec(rest))) {
        i += m[0].length;
        const v = valueWord();
        reqs.push({ key: k, op: m[0] === '!=' ? 'NotIn' : 'In', values: [v] });
      } else if ((m = /^(in|notin)\s*\(/.exec(rest))) {
        i += m[0].length;
        const close = s.indexOf(')', i);
        if (close < 0) throw new Error(`")" is missing after "${k} ${m[1]} ("`);
        const values = s.slice(i, close).split(',').map((v) => v.trim());
        if (values.some((v) => !/^[A-Za-z0-9._\-]*$/.test(v))) throw new Error(`invalid value in "${s.slice(i, close)}"`);
        i = close + 1;
        reqs.push({ key: k, op: m[1] === 'in' ? 'In' : 'NotIn', values });
      } else {
        reqs.push({ key: k, op: 'Exists', values: [] });
      }
    }
    ws();
    if (i < s.length) {
      if (s[i] !== ',') throw new Error(`"," is expected at ${i + 1}: "${s.slice(i)}"`);
      i++;
    }
  }
  return reqs;
}

/** A LabelSelector object, written as kubectl would take it. */
export function selectorText(sel) {
  return fromLabelSelector(sel).map(({ key: k, op, values }) => {
    switch (op) {
      case 'In': return values.length === 1 ? `${k}=${values[0]}` : `${k} in (${values.join(',')})`;
      case 'NotIn': return `${k} notin (${values.join(',')})`;
      case 'Exists': return k;
      case 'DoesNotExist': return `!${k}`;
      default: return `${k} ${op} (${values.join(',')})`;
    }
  }).join(', ');
}

// ---- States ----------------------------------------------------------------------------

/** Cluster and set states, worst first. */
export const STATES = ['failing', 'degraded', 'pending', 'progressing', 'insync', 'idle'];
export const STATE_LABEL = {
  failing: 'failing', degraded: 'degraded', pending: 'pending', progressing: 'progressing',
  insync: 'in sync', idle: 'no sets',
};

/** `SyncSet` or `SelectorSyncSet` and the id pages use: `ss/NS/NAME` or `sss/NAME`. */
export const setId = (s) => (s.kind === 'SyncSet' ? `ss/${s.metadata.namespace}/${s.metadata.name}` : `sss/${s.metadata.name}`);

const truthy = (v) => ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v);

/** Why the controllers sync nothing to cluster `cd` now, if so (their order of checks). */
export function skipReason(cd) {
  const a = cd.metadata.annotations || {};
  if (truthy(a['hive.openshift.io/syncset-pause']) || truthy(a['hive.openshift.io/reconcile-pause'])) return 'syncing is paused';
  if (a['hive.openshift.io/relocate'] !== undefined) return 'the cluster is being relocated';
  if (cd.metadata.deletionTimestamp) return 'the cluster is being deleted';
  if (!cd.spec || cd.spec.installed !== true) return 'the cluster is not installed';
  return null;
}

/** The SelectorSyncSets a cluster may be attached to (its `use` grants), if limited. */
function usable(cd) {
  const v = (cd.metadata.annotations || {})['syncsets.io/usable-selectorsyncsets'];
  return v === undefined ? null : new Set(v.split(',').map((n) => n.trim()).filter(Boolean));
}

/** Whether the controllers apply set `s` (an entry of `Fleet.sets()`) to cluster `cd`. */
export function targets(s, cd) {
  const set = s.set;
  if (set.metadata.deletionTimestamp || skipReason(cd)) return false;
  if (set.kind === 'SyncSet') {
    return set.metadata.namespace === cd.metadata.namespace &&
      (set.spec.clusterDeploymentRefs || []).some((r) => r.name === cd.metadata.name);
  }
  if (!s.reqs) return false; // no selector: no cluster
  const allowed = usable(cd);
  return matches(s.reqs, cd.metadata.labels) && (!allowed || allowed.has(set.metadata.name));
}

/** The result of `set` in a ClusterSync, if any. */
export function resultOf(cs, set) {
  if (!cs || !cs.status) return undefined;
  const list = set.kind === 'SyncSet' ? cs.status.syncSets : cs.status.selectorSyncSets;
  return (list || []).find((r) => r.name === set.metadata.name);
}

/** How `set` is doing on one cluster, from its result there. */
export function stateOf(result, set) {
  if (!result) return 'pending';
  if (result.result === 'Failure') return 'failing';
  if (result.observedGeneration !== (set.metadata.generation || 0)) return 'pending';
  if (result.health === 'Degraded') return 'degraded';
  if (result.health === 'Progressing') return 'progressing';
  return 'insync';
}

/** The worse of two states. */
export const worse = (a, b) => (STATES.indexOf(a) <= STATES.indexOf(b) ? a : b);

/** Orders names as people do: sim-2 before sim-10. */
export const collator = new Intl.Collator('en', { numeric: true });

/** Everything the pages read, and what they derive from it. */
export class Fleet {
  /** `namespace`: a promise of the namespace to fall back to (`null`: none). */
  constructor(namespace, onChange) {
    this.namespace = null;
    namespace.then((ns) => { this.namespace = ns; });
    this.watches = new Watches(onChange);
    this.feeds = {};
    for (const plural of Object.keys(KINDS)) {
      const summary = plural === 'clusterdeployments' || plural === 'clustersyncs';
      this.feeds[plural] = new Feed(plural, { fallback: namespace, summary });
    }
  }

  /**
   * Lists every collection. With `setsFirst` (a page showing only sets), the sets first —
   * a few — and, once they are drawn and painted, the clusters and their ClusterSyncs
   * (thousands: parsing them would hold the page back); otherwise all at once.
   */
  async start(setsFirst) {
    const { selectorsyncsets, syncsets, clusterdeployments, clustersyncs } = this.feeds;
    for (const f of [selectorsyncsets, syncsets]) f.start(this.watches);
    if (setsFirst) {
      await Promise.all([selectorsyncsets.loaded, syncsets.loaded]);
      // A task queued from the next frame runs after its paint (a hidden page has no
      // frames: not past 200 ms).
      await Promise.race([new Promise((r) => requestAnimationFrame(() => setTimeout(r))), sleep(200)]);
    }
    for (const f of [clusterdeployments, clustersyncs]) f.start(this.watches);
    return Promise.all(Object.values(this.feeds).map((f) => f.loaded));
  }

  /** Follows one more collection (a page's own), until `stop(feed)`. */
  follow(feed) { feed.start(this.watches); return feed; }

  stop(feed) { this.watches.remove(feed); }

  get clusters() { return this.feeds.clusterdeployments.items; }
  get syncs() { return this.feeds.clustersyncs.items; }

  /** Every set, sorted, each with its parsed selector (`null`: none, so no cluster). */
  sets() {
    const version = `${this.feeds.selectorsyncsets.version}/${this.feeds.syncsets.version}`;
    if (this.setsCache && this.setsCache.version === version) return this.setsCache.sets;
    const out = [];
    for (const s of this.feeds.selectorsyncsets.items.values()) {
      const sel = s.spec.clusterDeploymentSelector;
      out.push({ set: s, id: setId(s), reqs: sel ? fromLabelSelector(sel) : null });
    }
    for (const s of this.feeds.syncsets.items.values()) out.push({ set: s, id: setId(s), reqs: [] });
    out.sort((a, b) => collator.compare(a.id, b.id));
    this.setsCache = { version, sets: out };
    return out;
  }

  /** The sets (of `sets`) that may target `cd`: SyncSets naming it, every SelectorSyncSet. */
  candidates(cd, sets) {
    const index = this.index(sets);
    const refs = index.refs.get(key(cd));
    return refs ? [...refs, ...index.selectors] : index.selectors;
  }

  /** `sets` indexed: SelectorSyncSets, SyncSets by the clusters they name, sets by id. */
  index(sets) {
    if (!sets.index) {
      sets.index = { selectors: [], refs: new Map() };
      for (const s of sets) {
        if (s.set.kind !== 'SyncSet') { sets.index.selectors.push(s); continue; }
        for (const r of s.set.spec.clusterDeploymentRefs || []) {
          const k = `${s.set.metadata.namespace}/${r.name}`;
          if (!sets.index.refs.has(k)) sets.index.refs.set(k, []);
          sets.index.refs.get(k).push(s);
        }
      }
      sets.index.byId = new Map(sets.map((s) => [s.id, s]));
    }
    return sets.index;
  }

  /** The sets targeting cluster `cd`, with their result and state in ClusterSync `cs`. */
  setsOf(cd, cs = this.syncs.get(key(cd))) {
    const out = [];
    for (const s of this.candidates(cd, this.sets())) {
      if (!targets(s, cd)) continue;
      const result = resultOf(cs, s.set);
      out.push({ ...s, result, state: stateOf(result, s.set) });
    }
    return out;
  }

  /** Cluster key → state, over every set or only `only` (a set id). */
  states(only) {
    let sets = this.sets();
    if (only) sets = sets.filter((s) => s.id === only);
    const out = new Map();
    for (const [k, cd] of this.clusters) {
      const cs = this.syncs.get(k);
      let st = 'idle';
      for (const s of this.candidates(cd, sets)) {
        if (targets(s, cd)) st = worse(st, stateOf(resultOf(cs, s.set), s.set));
      }
      out.set(k, st);
    }
    return out;
  }

  /** Failing results of sets targeting their cluster, grouped by message, most clusters first. */
  failures() {
    const { clusterdeployments, clustersyncs, selectorsyncsets, syncsets } = this.feeds;
    const version = [clusterdeployments, clustersyncs, selectorsyncsets, syncsets].map((f) => f.version).join('/');
    if (this.failuresCache && this.failuresCache.version === version) return this.failuresCache.groups;
    const groups = new Map();
    const { byId } = this.index(this.sets());
    for (const [k, cs] of this.syncs) {
      const st = cs.status;
      if (!st) continue;
      for (const [list, kind] of [[st.selectorSyncSets, 'sss'], [st.syncSets, 'ss']]) for (const r of list || []) {
        if (r.result !== 'Failure') continue;
        const s = byId.get(kind === 'ss' ? `ss/${cs.metadata.namespace}/${r.name}` : `sss/${r.name}`);
        const cd = this.clusters.get(k);
        if (!s || !cd || !targets(s, cd)) continue;
        const message = r.failureMessage || '(no message)';
        let g = groups.get(message);
        if (!g) { g = { message, clusters: new Set(), sets: new Set() }; groups.set(message, g); }
        g.clusters.add(k);
        g.sets.add(s.id);
      }
    }
    const sorted = [...groups.values()].sort((a, b) => b.clusters.size - a.clusters.size || a.message.localeCompare(b.message));
    this.failuresCache = { version, groups: sorted };
    return sorted;
  }
}
