// Drives the dashboard in Debian's Chromium, headless (tests/dashboard.rs starts the hub,
// the simulated fleet and two dashboards — the admin's and team-a's — then runs this).
//
// Environment: ADMIN_URL and TEAM_URL (the addresses `syncsets dashboard` printed),
// SCREENSHOTS (a directory), CHROMIUM (the browser). It prints `READY` when the Sets page
// is open and waits for a line on stdin (the test creates the set then), and exits
// non-zero with the reason when a check fails.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const { ADMIN_URL, TEAM_URL, SCREENSHOTS } = process.env;
const WAIT = 60_000;
mkdirSync(SCREENSHOTS, { recursive: true });
const stdin = createInterface({ input: process.stdin });
/** The test's next line; the test gone (it failed) ends this too. */
const nextLine = () => new Promise((resolve, reject) => {
  stdin.once('line', resolve);
  stdin.once('close', () => reject(new Error('the test stopped')));
});

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

/** A screenshot of the page, checked to show something: not blank, not one colour. */
async function shoot(page, name) {
  const png = await page.screenshot({ fullPage: true });
  writeFileSync(join(SCREENSHOTS, `${name}.png`), png);
  // Colours drawn: a blank or failed page has one or two.
  const colours = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = new OffscreenCanvas(img.width, img.height);
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const data = g.getImageData(0, 0, img.width, img.height).data;
    const seen = new Set();
    for (let i = 0; i < data.length && seen.size < 50; i += 4 * 7) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    return seen.size;
  }, png.toString('base64'));
  check(colours >= 5, `the ${name} screenshot renders (${colours}+ colours, ${png.length} bytes)`);
}

/** Every form control has a label; the document does not scroll sideways. */
async function accessible(page, what) {
  const unlabelled = await page.$$eval('input, select', (els) => els.filter((e) => !e.labels.length && !e.getAttribute('aria-label')).length);
  check(unlabelled === 0, `${what}: every control is labelled`);
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const requests = [];
  page.on('request', (r) => { const u = new URL(r.url()); if (u.pathname.startsWith('/api') || u.pathname === '/watch') requests.push(u.pathname + u.search); });

  // Sets: open before the set exists, then watch its counts change to converged.
  await page.goto(ADMIN_URL);
  check(!page.url().includes('token'), 'the token is taken from the address, which no longer shows it');
  await page.waitForFunction(() => window.syncsetsDashboard && window.syncsetsDashboard.firstRender != null, null, { timeout: WAIT });
  await page.waitForSelector('#live.ok', { timeout: WAIT });
  await page.evaluate(() => {
    window.seenCounts = [];
    new MutationObserver(() => {
      const row = document.querySelector('tr[data-set="sss/fleet-baseline"]');
      if (!row) return;
      const text = `${row.querySelector('[data-col=rollout]').textContent.trim()} | ${row.querySelector('[data-col=progress] .counts').textContent}`;
      if (window.seenCounts[window.seenCounts.length - 1] !== text) window.seenCounts.push(text);
    }).observe(document.getElementById('main'), { subtree: true, childList: true, characterData: true });
  });
  console.log('READY');
  await nextLine();
  await page.waitForFunction(() => (window.seenCounts || []).some((t) => t.startsWith('Complete') && t.includes('| 12/12 in sync')), null, { timeout: WAIT })
    .catch(async (e) => { throw new Error(`${e.message}; rollout seen: ${JSON.stringify(await page.evaluate(() => window.seenCounts))}`); });
  const seen = await page.evaluate(() => window.seenCounts);
  console.log(`rollout seen: ${JSON.stringify(seen)}`);
  check(seen.some((t) => /wave [1-3]\/4.*\| [1-9]\/12 in sync/.test(t)), 'the rollout showed its waves and counts part of the way');
  check(seen.findIndex((t) => /\| [1-9]\/12 in sync/.test(t)) < seen.findIndex((t) => t.includes('| 12/12 in sync')), 'the counts changed live, up to converged');
  // Each collection listed once, as a streaming list, then only watched.
  const isList = (r) => r.startsWith('/watch') && r.includes('sendInitialEvents');
  const lists = requests.filter(isList);
  check(lists.length === 4 && !requests.some((r) => r.startsWith('/api')), `the page listed each collection once and then only watched (${JSON.stringify(requests)})`);
  // One stream carries every watch: each opening replaces the last (a collection joined).
  const streams = requests.filter((r) => r.startsWith('/watch') && !isList(r));
  const last = new URLSearchParams(streams[streams.length - 1].split('?')[1]);
  const watched = [...last.getAll('w'), ...last.getAll('s')];
  check(watched.length === 4 && streams.length <= 4, `its four watches share one stream (${streams.length} opened, the last with ${watched.length})`);
  check(last.getAll('s').length === 2, 'clusters and their ClusterSyncs come as summaries');
  const row = await page.textContent('tr[data-set="sss/fleet-baseline"]');
  check(row.includes('fleet.syncsets.io/simulated=true') && row.includes('Upsert') && row.includes('careful'), 'a set shows its selector, mode and rollout policy');
  const revision = await page.textContent('tr[data-set="sss/fleet-baseline"] td.num');
  const bar = await page.getAttribute('tr[data-set="sss/fleet-baseline"] .bar', 'aria-label');
  check(/^\d+/.test(revision.trim()) && /12\/12 in sync/.test(bar) && /\d+ healthy/.test(bar), `a set shows its revision and a progress bar with health ("${revision.trim()}", "${bar}")`);
  await accessible(page, 'Sets');
  // WCAG AA contrast of the palette: text 4.5:1 on the page and on the failing badge, the
  // state squares 3:1 on the page.
  const palette = await page.evaluate(() => {
    const css = getComputedStyle(document.documentElement);
    return Object.fromEntries(['fg', 'muted', 'link', 'bg', 'insync', 'progressing', 'pending', 'failing', 'degraded', 'idle']
      .map((v) => [v, css.getPropertyValue(`--${v}`).trim()]));
  });
  const luminance = (hex) => {
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
      .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((m, n) => n - m); return (x + 0.05) / (y + 0.05); };
  const low = [
    ...['fg', 'muted', 'link'].map((v) => [v, contrast(palette[v], palette.bg), 4.5]),
    ['badge', contrast('#ffffff', palette.failing), 4.5],
    ...['insync', 'progressing', 'pending', 'failing', 'degraded', 'idle'].map((v) => [v, contrast(palette[v], palette.bg), 3]),
  ].filter(([, ratio, min]) => !(ratio >= min));
  check(low.length === 0, `the palette meets WCAG AA contrast (${JSON.stringify(low)})`);
  await shoot(page, 'sets');

  // Failures: grouped by message, each group linking to its clusters.
  await page.click('nav a[data-page="failures"]');
  const group = page.locator('section.failure').first();
  await group.waitFor({ timeout: WAIT });
  const heading = await group.locator('h2').textContent();
  check(/^6 clusters: .*missing/.test(heading.trim()), `failures are grouped by message ("${heading.trim()}")`);
  await group.locator('summary').click();
  const links = group.locator('ul.links a');
  await links.first().waitFor();
  check(await links.count() === 6, 'the group links to its 6 clusters');
  await shoot(page, 'failures');

  // Cluster: a failing cluster says why.
  await links.first().click();
  await page.waitForSelector('#cluster h1', { timeout: WAIT });
  const cluster = await page.textContent('#cluster');
  check(page.url().includes('#/cluster/team-a/a-0000'), `the link opens the cluster (${page.url()})`);
  check(cluster.includes('SyncSet team-a/broken') && cluster.includes('missing'), 'the failing cluster shows its set and error');
  check(cluster.includes('fleet.syncsets.io/simulated=true'), 'the cluster shows its labels');
  check(cluster.includes('Circuit breaker'), 'the cluster shows its breaker');
  // Transition times and resources come with the cluster's whole ClusterSync, which the
  // page reads beside the fleet's summaries.
  await page.waitForFunction(() => [...document.querySelectorAll('#cluster table:not(#events) tbody tr td:nth-child(5)')].every((td) => td.textContent.trim() !== '—'), null, { timeout: WAIT }).catch(() => {});
  const setRows = await page.$$eval('#cluster table:not(#events) tbody tr', (trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent.trim())));
  check(setRows.length >= 2 && setRows.every((r) => r[4] !== '—' && /resources? applied, \d+ to delete/.test(r[5])), `each set targeting the cluster shows its last transition and resources applied and to delete (${JSON.stringify(setRows.map((r) => [r[0], r[4], r[5].split('\n')[0]]))})`);
  await page.waitForFunction(() => !document.querySelector('#cluster')?.textContent.includes('No events.'), null, { timeout: WAIT });
  const reasons = await page.$$eval('#events tbody tr td:nth-child(2)', (tds) => tds.map((td) => td.textContent));
  check(reasons.includes('SyncFailed'), `the cluster shows its Events (${reasons})`);
  await shoot(page, 'cluster');

  // Fleet map: one square per cluster, grouped, filtered, named on hover, opened on click.
  const mapped = () => page.evaluate(() => window.syncsetsDashboard.map());
  const count = (n) => page.waitForFunction((n) => window.syncsetsDashboard.map()?.keys.length === n, n, { timeout: WAIT });
  await page.click('nav a[data-page="fleet"]');
  await count(12);
  check(true, 'one square per cluster');
  await page.selectOption('#group', 'namespace');
  await page.waitForFunction(() => document.querySelectorAll('#groups section.group').length === 2, null, { timeout: WAIT });
  const groups = await page.$$eval('#groups h3', (hs) => hs.map((h) => h.textContent));
  check(groups[0].startsWith('namespace=team-a') && groups[1].startsWith('namespace=team-b'), `grouped by namespace (${groups})`);
  await page.fill('#selector', 'fleet.syncsets.io/group in (0,1)');
  await count(4);
  check(page.url().includes('selector='), 'the filter is kept in the address');
  await page.fill('#selector', 'fleet.syncsets.io/group in (0');
  await page.waitForFunction(() => document.getElementById('selector-error').textContent.includes(')'), null, { timeout: WAIT });
  check(true, 'a bad selector is explained');
  check((await mapped()).keys.length === 4, 'the map keeps the last valid selector meanwhile');
  await page.fill('#selector', '');
  await page.waitForFunction(() => window.syncsetsDashboard.map()?.keys.length === 12 && !document.getElementById('selector-error').textContent, null, { timeout: WAIT });
  const { states } = await mapped();
  check(Object.values(states).filter((s) => s === 'failing').length === 6, `the map colours team-a's 6 clusters failing (${JSON.stringify(states)})`);
  // The square painted where the map says, in its state's colour.
  const at = await page.evaluate(() => window.syncsetsDashboard.cellCenter('team-a/a-00002'));
  const pixel = await page.evaluate(({ x, y }) => {
    const c = document.elementFromPoint(x, y);
    const r = c.getBoundingClientRect();
    const d = c.getContext('2d').getImageData(Math.round((x - r.left) * devicePixelRatio), Math.round((y - r.top) * devicePixelRatio) + 2, 1, 1).data;
    return [d[0], d[1], d[2]];
  }, at);
  check(pixel[0] > 150 && pixel[1] < 120, `a failing cluster's square is red (${pixel})`);
  await page.mouse.move(at.x, at.y);
  const tipText = await page.textContent('#tip');
  check(tipText === 'team-a/a-00002: failing', `hovering names the cluster ("${tipText}")`);
  await accessible(page, 'Fleet map');
  await shoot(page, 'fleet');
  await page.mouse.click(at.x, at.y);
  await page.waitForFunction(() => location.hash === '#/cluster/team-a/a-00002', null, { timeout: WAIT });
  check(true, 'a click opens the cluster');
  await page.goBack();
  await count(12);
  // Keyboard: Tab reaches a group, the arrow keys choose a cluster (announced), Enter opens it.
  await page.focus('#groups canvas');
  await page.keyboard.press('ArrowRight');
  const said = await page.textContent('#map-status');
  check(said === 'team-a/a-00001: failing', `arrow keys choose a cluster, announced ("${said}")`);
  const label = await page.evaluate(() => document.activeElement.getAttribute('aria-label'));
  check(label.startsWith('namespace=team-a: 6 clusters, 6 failing.'), `the group says what it holds ("${label}")`);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#/cluster/team-a/a-00001', null, { timeout: WAIT });
  check(true, 'Enter opens the chosen cluster');

  // Narrow window: readable, nothing wider than the screen but the tables' own scrollers.
  await page.setViewportSize({ width: 380, height: 800 });
  for (const hash of ['#/sets', '#/fleet', '#/failures', '#/cluster/team-a/a-00000']) {
    await page.goto(new URL(hash, page.url()).href);
    await page.waitForSelector('main h1', { timeout: WAIT });
    await page.waitForTimeout(300); // the layout settles
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(wide <= 0, `${hash} fits a narrow window (${wide}px too wide)`);
  }
  await shoot(page, 'narrow-cluster');
  check(errors.length === 0, `no script errors (${errors})`);

  // Several tabs at once stay live: each holds one connection (a browser allows six per
  // host), and a change reaches all of them.
  const tabs = [];
  for (let i = 1; i <= 4; i++) {
    const tab = await context.newPage();
    await tab.goto(new URL(`#/cluster/team-a/a-0000${i}`, page.url()).href);
    tabs.push(tab);
  }
  for (const tab of tabs) await tab.waitForSelector('#live.ok', { timeout: WAIT });
  await page.goto(new URL('#/sets', page.url()).href);
  await page.waitForSelector('#live.ok', { timeout: WAIT });
  check(true, 'five tabs are live at once');
  console.log('TABS READY');
  await nextLine();
  for (const tab of tabs) {
    await tab.waitForFunction(() => document.querySelector('#cluster')?.textContent.includes('SyncSet team-a/late'), null, { timeout: WAIT });
  }
  await page.waitForSelector('tr[data-set="ss/team-a/late"]', { timeout: WAIT });
  check(true, 'a set created reaches every tab');
  for (const tab of tabs) await tab.close();

  // team-a sees its own sets, not team-b's nor the SelectorSyncSets it may not read.
  const team = await context.newPage();
  await team.goto(TEAM_URL);
  await team.waitForFunction(() => window.syncsetsDashboard && window.syncsetsDashboard.firstRender != null, null, { timeout: WAIT });
  await team.waitForSelector('tr[data-set="ss/team-a/team-a-config"]', { timeout: WAIT });
  const teamSets = await team.$$eval('tbody tr[data-set]', (rows) => rows.map((r) => r.dataset.set));
  check(JSON.stringify(teamSets.sort()) === JSON.stringify(['ss/team-a/broken', 'ss/team-a/late', 'ss/team-a/team-a-config']), `team-a sees only its sets (${teamSets})`);
  const notes = await team.textContent('#notes');
  check(notes.includes('SelectorSyncSets cannot be shown') && notes.includes('forbidden'), `team-a is told what it may not see ("${notes}")`);
  await shoot(team, 'team-a-sets');
  await team.click('nav a[data-page="fleet"]');
  await team.waitForFunction(() => window.syncsetsDashboard.map()?.keys.length > 0, null, { timeout: WAIT });
  const teamCells = (await team.evaluate(() => window.syncsetsDashboard.map())).keys;
  check(teamCells.length === 6 && teamCells.every((k) => k.startsWith('team-a/')), `team-a's map shows only its clusters (${teamCells.length})`);
  console.log('PASS');
} finally {
  await browser.close();
  stdin.close();
}
