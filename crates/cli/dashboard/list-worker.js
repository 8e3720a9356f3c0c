// Lists a large collection off the page's thread: fetches and parses it (the fleet's
// ClusterDeployments and ClusterSyncs parse in parallel, each in its own worker, while the
// page stays responsive), then hands the page only the fields its overviews read — a
// fraction of each object, quick to pass over. A cluster's own page follows its whole
// objects.

import { TRIM } from './fleet.js';

self.onmessage = async ({ data: { url, token, plural } }) => {
  try {
    const res = await fetch(url, { headers: { 'X-Syncsets-Dashboard-Token': token } });
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      try { message = (await res.json()).message || message; } catch { /* not JSON */ }
      self.postMessage({ status: res.status, message });
      return;
    }
    const list = await res.json();
    const trim = TRIM[plural];
    self.postMessage({ status: 200, rv: list.metadata.resourceVersion || '', items: list.items.map(trim) });
  } catch (e) {
    self.postMessage({ status: 0, message: `the dashboard did not answer: ${e.message}` });
  }
};
