// Times the dashboard in Debian's Chromium, headless, for `syncsets bench --fleet-dashboard`:
// first render of the Sets page and of the fleet map (median of 3 fresh loads each), beside
// the lists the map needs fetched and parsed alone in the same browser; then, on the map,
// how long redraws, tasks and frames take while the bench changes a set on every cluster.
//
// Environment: DASHBOARD_URL (the address `syncsets dashboard` printed), CHROMIUM. Prints
// `MAP READY` when the map is drawn, waits for a line on stdin (the change has reached
// every cluster), then prints one line of JSON.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const stdin = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => stdin.once('line', resolve));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const WAIT = 120_000;

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const first = await context.newPage();
  await first.goto(process.env.DASHBOARD_URL); // sets the cookie
  const origin = new URL(first.url()).origin;
  await first.waitForFunction(() => window.syncsetsDashboard?.firstRender != null, null, { timeout: WAIT });

  // The four lists the map needs, fetched and parsed in parallel as the page does.
  const lists = [];
  for (let i = 0; i < 3; i++) {
    lists.push(await first.evaluate(async () => {
      const headers = { 'X-Syncsets-Dashboard-Token': localStorage.getItem(`syncsets-dashboard-token-${location.port}`) };
      const started = performance.now();
      await Promise.all([
        '/apis/hive.openshift.io/v1/clusterdeployments',
        '/apis/hiveinternal.openshift.io/v1alpha1/clustersyncs',
        '/apis/hive.openshift.io/v1/syncsets',
        '/apis/hive.openshift.io/v1/selectorsyncsets',
      ].map(async (p) => {
        const res = await fetch(p, { headers });
        if (!res.ok) throw new Error(`${p}: ${res.status}`);
        return res.json();
      }));
      return performance.now() - started;
    }));
  }
  await first.close();

  /** Milliseconds from navigation to the first render of `hash`, in a fresh page. */
  const marks = {};
  async function firstRender(hash) {
    const page = await context.newPage();
    await page.goto(`${origin}/${hash}`);
    await page.waitForFunction(() => window.syncsetsDashboard?.firstRender != null, null, { timeout: WAIT });
    const ms = await page.evaluate(() => window.syncsetsDashboard.firstRender);
    // Where the time went: answers, parses, the first draw (the last load's).
    marks[hash] = await page.evaluate(() => Object.fromEntries(performance.getEntriesByType('mark')
      .filter((m) => m.name !== 'syncsets:draw' || !window.seenDraw && (window.seenDraw = true))
      .map((m) => [m.name.replace('syncsets:', ''), Math.round(m.startTime)])));
    await page.close();
    return ms;
  }
  const sets = [];
  const map = [];
  for (let i = 0; i < 3; i++) {
    sets.push(await firstRender('#/sets'));
    map.push(await firstRender('#/fleet'));
  }
  const cells = [];

  // Updates on the map: redraws, long tasks and frame gaps while every cluster changes.
  const page = await context.newPage();
  await page.goto(`${origin}/#/fleet`);
  await page.waitForFunction(() => window.syncsetsDashboard?.firstRender != null, null, { timeout: WAIT });
  cells.push(await page.evaluate(() => window.syncsetsDashboard.map().keys.length));
  await page.evaluate(() => {
    const d = window.syncsetsDashboard;
    d.renders = 0;
    d.longestRenderMs = 0;
    window.measured = { longestTask: 0, longestGap: 0 };
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.measured.longestTask = Math.max(window.measured.longestTask, e.duration);
    }).observe({ type: 'longtask' });
    let last = performance.now();
    const frame = (now) => {
      window.measured.longestGap = Math.max(window.measured.longestGap, now - last);
      last = now;
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  });
  console.log('MAP READY');
  await nextLine();
  await page.waitForTimeout(1000); // the last events drawn
  const updates = await page.evaluate(() => ({
    renders: window.syncsetsDashboard.renders,
    longestRenderMs: window.syncsetsDashboard.longestRenderMs,
    ...window.measured,
    insync: Object.values(window.syncsetsDashboard.map().states).filter((s) => s === 'insync').length,
  }));
  console.log(JSON.stringify({
    listsMs: median(lists), setsMs: median(sets), mapMs: median(map), cells: cells[0], marks, ...updates,
  }));
} finally {
  await browser.close();
  stdin.close();
}
