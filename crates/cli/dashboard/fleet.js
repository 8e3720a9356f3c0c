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

/** The message of a Kubernetes Status answer, or the HTTP status. */
async function failure(res) {
  try {
    const s = await res.json();
    if (s && s.message) return s.message;
  } catch { /* not JSON */ }
  return `${res.status} ${res.statusText}`;
}

/**
 * One collection: `items` (key → object), listed then watched. `onChange(feed)` is
 * called after every change; `state` is `loading`, `live`, `reconnecting`, `forbidden`
 * or `error` (with `error`).
 */
export class Feed {
  constructor(plural, { namespace, fieldSelector, fallback } = {}, onChange = () => {}) {
    this.plural = plural;
    this.kind = KINDS[plural] || { api: 'api/v1', namespaced: true, title: plural };
    this.namespace = namespace || null;
    this.fallback = fallback || null;
    this.fieldSelector = fieldSelector || '';
    this.onChange = onChange;
    this.items = new Map();
    this.state = 'loading';
    this.error = null;
    this.rv = '';
    this.abort = new AbortController();
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

  /** Lists, falling back to the user's namespace when the whole hub is forbidden. */
  async list() {
    for (;;) {
      const res = await fetch(this.path() + this.query({}), { signal: this.abort.signal });
      if (res.ok) {
        const list = await res.json();
        this.items = new Map(list.items.map((o) => [key(o), o]));
        this.rv = list.metadata.resourceVersion || '';
        return true;
      }
      if (res.status === 403 && !this.namespace && this.kind.namespaced && this.fallback) {
        this.namespace = this.fallback;
        continue;
      }
      this.state = res.status === 403 ? 'forbidden' : 'error';
      this.error = await failure(res);
      return false;
    }
  }

  /** Lists and watches until stopped. */
  async start() {
    let delay = 500;
    let listed = false;
    while (!this.abort.signal.aborted) {
      try {
        if (!listed) {
          listed = await this.list();
          this.resolveLoaded();
          if (!listed) { this.onChange(this); return; }
          this.state = 'live';
          this.onChange(this);
        }
        const ok = await this.watch();
        if (ok === 'gone') listed = false; // too old: list again
        delay = 500;
      } catch (e) {
        if (this.abort.signal.aborted) return;
        this.state = 'reconnecting';
        this.error = String(e && e.message ? e.message : e);
        this.onChange(this);
        await sleep(delay);
        delay = Math.min(delay * 2, 10000);
      }
    }
  }

  /** One watch, until the stream ends; `gone` when the resourceVersion is too old. */
  async watch() {
    const url = this.path() + this.query({ watch: '1', allowWatchBookmarks: 'true', resourceVersion: this.rv });
    const res = await fetch(url, { signal: this.abort.signal });
    if (res.status === 410) return 'gone';
    if (!res.ok) throw new Error(await failure(res));
    if (this.state !== 'live') { this.state = 'live'; this.error = null; this.onChange(this); }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'ended';
      buffer += value;
      let changed = false;
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        const event = JSON.parse(line);
        if (event.type === 'ERROR') {
          if (event.object && event.object.code === 410) { reader.cancel(); return 'gone'; }
          throw new Error((event.object && event.object.message) || 'watch error');
        }
        const o = event.object;
        if (o && o.metadata && o.metadata.resourceVersion) this.rv = o.metadata.resourceVersion;
        if (event.type === 'BOOKMARK') continue;
        if (event.type === 'DELETED') this.items.delete(key(o));
        else this.items.set(key(o), o);
        changed = true;
      }
      if (changed) this.onChange(this);
    }
  }

  stop() { this.abort.abort(); }
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

/** Whether the controllers apply `set` to cluster `cd`. */
export function targets(set, cd, reqs) {
  if (!cd.spec || cd.spec.installed !== true || cd.metadata.deletionTimestamp) return false;
  if (set.kind === 'SyncSet') {
    return set.metadata.namespace === cd.metadata.namespace &&
      (set.spec.clusterDeploymentRefs || []).some((r) => r.name === cd.metadata.name);
  }
  return matches(reqs, cd.metadata.labels);
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
  if (result.observedGeneration < (set.metadata.generation || 0)) return 'pending';
  if (result.health === 'Degraded') return 'degraded';
  if (result.health === 'Progressing') return 'progressing';
  return 'insync';
}

/** The worse of two states. */
export const worse = (a, b) => (STATES.indexOf(a) <= STATES.indexOf(b) ? a : b);

/** Everything the pages read, and what they derive from it. */
export class Fleet {
  constructor(namespace, onChange) {
    const opts = { fallback: namespace };
    this.namespace = namespace;
    this.feeds = {};
    for (const plural of Object.keys(KINDS)) {
      this.feeds[plural] = new Feed(plural, opts, onChange);
    }
    this.version = 0;
    this.derived = null;
  }

  start() {
    for (const f of Object.values(this.feeds)) f.start();
    return Promise.all(Object.values(this.feeds).map((f) => f.loaded));
  }

  get clusters() { return this.feeds.clusterdeployments.items; }
  get syncs() { return this.feeds.clustersyncs.items; }

  /** Every set, SelectorSyncSets first, each with its parsed selector. */
  sets() {
    const out = [];
    for (const s of this.feeds.selectorsyncsets.items.values()) out.push({ set: s, id: setId(s), reqs: fromLabelSelector(s.spec.clusterDeploymentSelector) });
    for (const s of this.feeds.syncsets.items.values()) out.push({ set: s, id: setId(s), reqs: [] });
    out.sort((a, b) => a.id.localeCompare(b.id));
    return out;
  }

  /** The sets targeting cluster `cd`, with their result and state there. */
  setsOf(cd, sets = this.sets()) {
    const cs = this.syncs.get(key(cd));
    const out = [];
    for (const s of sets) {
      if (!targets(s.set, cd, s.reqs)) continue;
      const result = resultOf(cs, s.set);
      out.push({ ...s, result, state: stateOf(result, s.set) });
    }
    return out;
  }

  /** Cluster key → state, over every set or only `only` (a set id). */
  states(only) {
    const sets = this.sets().filter((s) => !only || s.id === only);
    const out = new Map();
    for (const [k, cd] of this.clusters) {
      let st = 'idle';
      for (const s of this.setsOf(cd, sets)) st = worse(st, s.state);
      out.set(k, st);
    }
    return out;
  }

  /** Failing results grouped by identical message, most clusters first. */
  failures() {
    const groups = new Map();
    for (const [k, cs] of this.syncs) {
      const st = cs.status || {};
      const add = (list, kind) => {
        for (const r of list || []) {
          if (r.result !== 'Failure') continue;
          const message = r.failureMessage || '(no message)';
          let g = groups.get(message);
          if (!g) { g = { message, clusters: new Set(), sets: new Set() }; groups.set(message, g); }
          g.clusters.add(k);
          g.sets.add(kind === 'SyncSet' ? `ss/${cs.metadata.namespace}/${r.name}` : `sss/${r.name}`);
        }
      };
      add(st.selectorSyncSets, 'SelectorSyncSet');
      add(st.syncSets, 'SyncSet');
    }
    return [...groups.values()].sort((a, b) => b.clusters.size - a.clusters.size || a.message.localeCompare(b.message));
  }
}
