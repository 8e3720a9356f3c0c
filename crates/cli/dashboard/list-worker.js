// Lists a large collection off the page's thread: fetches and parses it (the fleet's
// ClusterDeployments and ClusterSyncs parse in parallel, each in its own worker, while the
// page stays responsive), then hands the page only the fields its overviews read — a
// fraction of each object, quick to pass over. A cluster's own page follows its whole
// objects.

import { TRIM, listAt } from './fleet.js';

self.onmessage = async ({ data: { url, token, plural } }) => {
  try {
    const answer = await listAt(url, token);
    if (answer.status === 200) answer.items = answer.items.map(TRIM[plural]);
    self.postMessage(answer);
  } catch (e) {
    self.postMessage({ status: 0, message: `the dashboard's answer could not be read: ${e.message}` });
  }
};
