// The web UI on connections that went wrong, in a real browser against the real service
// capturing the lab: a connection whose SYNs the router's FORWARD chain drops (drop
// markers on the router's lane, causes in the drop list); a 2.5 MB transfer whose reader
// stalls (zero windows) while the router drops a few of its segments (retransmissions),
// thousands of packets that must render windowed and scroll; and the flow search page
// (filters, paging, a rejected filter shown at its field).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import type { PacketJson } from '../../api/schemas/connections.js';
import type { DropJson } from '../../api/schemas/drops.js';
import type { FlowJson } from '../../api/schemas/flows.js';
import { inNetns, probeFrom } from '../../lab/drop-scenarios.js';
import type { Lab } from '../../lab/lab.js';
import { getJson, labWithService, NODE, serviceTuple, settledConnection, tupleText } from '../support/service-fixture.js';
import { ARTIFACTS, epochNs, openBrowser, panel, pointKey, squash, textOf, uiTime } from '../support/ui-browser.js';

const BIG_TRANSFER_BYTES = 2_500_000;
/** How long the big transfer's reader stops reading: its receive buffer fills, the window goes to zero. */
const STALL_MS = 800;
/** The router drops every DROP_EVERY-th segment of the big transfer on its way to the client. */
const DROP_EVERY = 600;
const RENDERED_ROWS_BOUND = 150;

/**
 * An HTTP GET over a plain socket that stops reading for `stallMs` right after sending
 * the request, then reads to the end; run with node -e in the client namespace.
 */
const STALLING_CLIENT = `
const net = require('node:net');
const [host, port, localPort, path, stallMs] = JSON.parse(process.argv[1]);
let bytes = 0;
const socket = net.connect({ host, port, localPort }, () => {
  socket.write('GET ' + path + ' HTTP/1.1\\r\\nHost: lab\\r\\nConnection: close\\r\\n\\r\\n');
  socket.pause();
  setTimeout(() => socket.resume(), stallMs);
});
socket.on('data', (chunk) => (bytes += chunk.length));
socket.on('end', () => process.stdout.write(JSON.stringify({ bytes }) + '\\n'));
socket.on('error', (err) => {
  process.stderr.write(err.message + '\\n');
  process.exit(1);
});
`;

/** The stalling download from the client, while the router's FORWARD chain drops some of its segments. */
async function stalledTransferWithLosses(lab: Lab, localPort: number): Promise<number> {
  const { client, router } = lab.nodes;
  const rule = [
    'FORWARD', '-p', 'tcp', '-s', lab.server.ip, '--sport', String(lab.server.port), '-d', client.ifaces[0].ip, '--dport', String(localPort),
    '-m', 'statistic', '--mode', 'nth', '--every', String(DROP_EVERY), '--packet', String(DROP_EVERY / 2), '-j', 'DROP',
  ];
  await inNetns(router.netns.name, 'iptables', '-I', ...rule);
  try {
    const args = JSON.stringify([lab.service.ip, lab.service.port, localPort, `/bytes/${BIG_TRANSFER_BYTES}`, STALL_MS]);
    const { bytes } = JSON.parse(await inNetns(client.netns.name, process.execPath, '-e', STALLING_CLIENT, args)) as { bytes: number };
    return bytes;
  } finally {
    await inNetns(router.netns.name, 'iptables', '-D', ...rule);
  }
}

/** Rows of the ladder diagram rendered now (one per packet), with what the test looks at. */
async function renderedRows(page: Page) {
  return page.locator('.ladder g.ladder-row').evaluateAll((groups) =>
    groups.map((g) => ({
      description: (g.querySelector('title')?.textContent ?? '').split('\n'),
      classes: [...g.classList],
      label: g.querySelector('text.ladder-row__label')?.textContent ?? '',
      packetId: g.getAttribute('data-packet-id') ?? '',
    })),
  );
}

/** The packets the ladder marks as retransmissions, by packet id, computed from the API's packets: a segment starting below the highest sequence number already seen at a capture point in that direction. */
function expectedRetransmissions(packets: PacketJson[]): Set<string> {
  const seen = new Map<string, { base: number; end: number }>();
  const found = new Set<string>();
  for (const p of packets) {
    const key = `${pointKey(p)}|${p.src}|${p.sport}|${p.dst}|${p.dport}`;
    const space = p.len + (p.flags.includes('SYN') ? 1 : 0) + (p.flags.includes('FIN') ? 1 : 0);
    if (space === 0) continue;
    const range = seen.get(key);
    if (!range) {
      seen.set(key, { base: p.seq, end: space });
      continue;
    }
    const start = (p.seq - range.base) >>> 0;
    if (start < range.end) found.add(p.packet_id);
    range.end = Math.max(range.end, start + space);
  }
  return found;
}

/** The next answer of the flows API to the page. */
const flowsResponse = (page: Page) => page.waitForResponse((res) => new URL(res.url()).pathname === '/api/v1/flows');

const legendCount = async (page: Page, kind: string) =>
  Number(/\(([\d,]+)\)/.exec(await textOf(page.locator(`.sequence-legend__count[data-kind="${kind}"]`), `the ${kind} count`))?.[1].replace(/,/g, ''));

test('the web UI in chromium: drops, a big stalled transfer with retransmissions, flow search', { timeout: 150_000 }, async (t) => {
  const { lab, service } = await labWithService(t);
  const { client, router, server } = lab.nodes;
  const clientIp = client.ifaces[0].ip;
  const origin = new URL(service.url).origin;
  const api = <T>(route: string) => getJson<T>(service, route);
  const serviceTupleText = (localPort: number) => tupleText(serviceTuple(lab, localPort));
  const connectionPage = (localPort: number) => `${origin}/connection?tuple=${encodeURIComponent(serviceTupleText(localPort))}`;

  // ---- the lab's traffic ----
  const [blockedPort, bigPort] = [randomInt(40000, 45000), randomInt(45000, 50000)];
  // A: the router drops this one connection's packets in FORWARD (after DNAT): its SYN and the SYN's retransmission.
  const blockRule = ['FORWARD', '-p', 'tcp', '-s', clientIp, '--sport', String(blockedPort), '-j', 'DROP'];
  await inNetns(router.netns.name, 'iptables', '-I', ...blockRule);
  const blocked = await probeFrom(client.netns.name, { proto: 'tcp', host: lab.service.ip, port: lab.service.port, localPort: blockedPort, timeoutMs: 1500 });
  assert.equal(blocked.outcome, 'timeout', 'the blocked connection gets no answer');
  await inNetns(router.netns.name, 'iptables', '-D', ...blockRule);
  // B: the big stalled transfer with losses.
  const received = await stalledTransferWithLosses(lab, bigPort);
  assert.ok(received > BIG_TRANSFER_BYTES, `the big transfer completes: ${received} bytes with the response head`);
  // C: a few short requests, for the flow search to page through.
  for (let i = 0; i < 4; i++) assert.equal((await lab.request()).status, 200);

  // Wait until the store has the blocked connection's drops (everything captured before them is flushed by then).
  await settledConnection(service, serviceTupleText(blockedPort), "the blocked connection's SYN and its retransmission dropped", (c) => c.drops.length >= 2);

  const { page, pageErrors, consoleErrors, offsite } = await openBrowser(t);
  /** A subtest that leaves a screenshot of the page when it fails. */
  const step = (name: string, artifact: string, body: () => Promise<void>) =>
    t.test(name, async () => {
      rmSync(path.join(ARTIFACTS, `${artifact}-failure.png`), { force: true });
      try {
        await body();
      } catch (err) {
        await page.screenshot({ path: path.join(ARTIFACTS, `${artifact}-failure.png`), fullPage: true }).catch(() => {});
        throw err;
      }
    });

  await step('a dropped connection: drop markers on the router lane, causes in the drop list', 'ui-drop', async () => {
    const { drops } = await api<{ packets: PacketJson[]; drops: DropJson[] }>(
      `/api/v1/connections/timeline?tuple=${encodeURIComponent(serviceTupleText(blockedPort))}`,
    );
    const routerIn = pointKey({ node: NODE, netns: router.netns.name, iface: router.ifaces[0].name });
    for (const drop of drops) {
      assert.equal(pointKey(drop), routerIn, 'dropped on the way in at the router');
      assert.equal(drop.reason, 'NETFILTER_DROP');
    }
    await page.goto(connectionPage(blockedPort));
    await page.locator('.ladder g.ladder-row').first().waitFor();
    const rows = await renderedRows(page);
    // Each dropped SYN is one row that ends, marked, where it was dropped.
    const dropRows = rows.filter((row) => row.classes.includes('ladder-row--drop'));
    assert.equal(dropRows.length, drops.length, `drop rows in the diagram: ${JSON.stringify(rows.map((r) => r.label))}`);
    for (const [index, row] of dropRows.entries()) {
      assert.equal(row.packetId, drops[index].packet_id, 'the row of the dropped packet');
      assert.match(row.label, /^\[SYN\] seq=0 /);
      assert.ok(row.description.some((line) => line.endsWith(`; drop: NETFILTER_DROP at ${drops[index].location} (lost) — click for details`)), `hover names the drop: ${row.description.join(' / ')}`);
    }
    // Its details give where, the cause and the fate.
    await page.locator(`.ladder g.ladder-row[data-packet-id="${drops[0].packet_id}"]`).click();
    const dropDetail = await textOf(panel(page, 'Packets').locator('.packet-detail__drop'), 'the detail panel\'s drop');
    for (const part of [`Dropped at ${routerIn}`, 'NETFILTER_DROP', drops[0].location, 'lost', drops[0].cause]) assert.ok(dropDetail.includes(part), `detail names ${part}: ${dropDetail}`);
    // The ✕ sits on the router's to-client lane.
    const laneHead = await page.locator(`.ladder__lane-head[title="${routerIn}"]`).boundingBox();
    const marks = await page.locator('.ladder .ladder-row__loss').evaluateAll((paths) =>
      paths.map((mark) => {
        const box = mark.getBoundingClientRect();
        return box.left + box.width / 2;
      }),
    );
    assert.ok(laneHead, 'the router to-client lane');
    assert.equal(marks.length, drops.length, 'one ✕ per drop');
    for (const x of marks) assert.ok(Math.abs(x - (laneHead.x + laneHead.width / 2)) < 2, `✕ at x=${x}, lane at ${laneHead.x + laneHead.width / 2}`);
    assert.equal(await legendCount(page, 'drop'), drops.length, 'legend: drops');
    // The client retransmitted its SYN: every SYN after the first, one row each.
    const retransmitted = rows.filter((row) => row.classes.includes('ladder-row--retransmission'));
    assert.equal(retransmitted.length, drops.length - 1, `retransmitted SYNs: ${JSON.stringify(rows.map((r) => r.label))}`);
    for (const row of retransmitted) assert.match(row.label, /^\[SYN\] seq=0 .*retransmission$/);

    // The drop list: the two drops as one kind, where, the cause, and the kernel stack.
    const group = panel(page, 'Drops').locator('li.drop');
    assert.equal(await group.count(), 1, 'one kind of drop');
    await textOf(group.locator('.drop__headline'), 'the drop headline');
    assert.deepEqual(
      (await group.locator('.drop__headline span').allTextContents()).map(squash),
      ['DROP', 'NETFILTER_DROP', drops[0].location, ...(drops.length > 1 ? [`× ${drops.length}`] : [])],
    );
    // A loss, marked as one, with its proof.
    assert.ok((await group.getAttribute('class'))?.split(' ').includes('drop--loss'), 'a loss is marked red');
    assert.match(await textOf(group.locator('.drop__proof'), 'the drop fate proof'), /^no capture point saw it after the drop/);
    assert.ok((await textOf(group.locator('.drop__where'), 'where the drop was')).startsWith(`${routerIn} · ${uiTime(drops[0].ts)}`));
    assert.equal(await textOf(group.locator('.drop__cause'), 'the drop cause'), drops[0].cause);
    assert.match(drops[0].cause, /FORWARD chain/);
    await group.locator('.drop__stack summary').click();
    assert.equal(squash(await group.locator('.drop__stack pre').textContent()), squash(drops[0].stack.join('\n')), 'the kernel stack');
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-drop.png'), fullPage: true });
  });

  await step('what happened: the unanswered handshake, its evidence scrolls the diagram to the SYN', 'ui-diagnosis', async () => {
    const findings = panel(page, 'What happened').locator('li.finding');
    await findings.first().waitFor();
    assert.equal(await findings.count(), 1, 'one finding');
    assert.equal(squash(await findings.locator('.finding__kind').textContent()), 'handshake');
    const routerIn = pointKey({ node: NODE, netns: router.netns.name, iface: router.ifaces[0].name });
    assert.equal(squash(await findings.locator('.finding__where').textContent()), `at ${routerIn}`);
    const evidence = findings.locator('.finding__evidence button');
    assert.ok((await evidence.count()) >= 2, 'the SYNs as evidence');
    await evidence.nth(1).click();
    const focused = page.locator('.ladder g.ladder-row--focused');
    await focused.waitFor();
    assert.match(squash(await focused.locator('text.ladder-row__label').textContent()), /^\[SYN\] seq=0 .*retransmission$/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-diagnosis.png'), fullPage: true });
  });

  await step('a big transfer: windowed rendering, scrolling to the end, retransmissions and zero windows marked', 'ui-big-transfer', async () => {
    const { packets, drops } = await api<{ packets: PacketJson[]; drops: DropJson[] }>(
      `/api/v1/connections/timeline?tuple=${encodeURIComponent(serviceTupleText(bigPort))}`,
    );
    t.diagnostic(`big transfer: ${packets.length} packets, ${drops.length} drops`);
    // Segments dropped in the router's FORWARD chain carry the tuple between DNAT and SNAT: still this connection's.
    assert.ok(drops.some((drop) => drop.reason === 'NETFILTER_DROP'), `the transfer's drops: ${JSON.stringify(drops.map((d) => d.reason))}`);
    assert.ok(packets.length >= 5000, `the big transfer has only ${packets.length} packets`);
    const rowCount = new Set(packets.map((p) => p.packet_id)).size;
    await page.goto(connectionPage(bigPort));
    const diagram = page.locator('.ladder');
    await diagram.locator('g.ladder-row').first().waitFor();
    assert.match(
      await textOf(panel(page, 'Packets').locator('.packet-count'), 'the packet count'),
      new RegExp(`^${packets.length.toLocaleString('en-US')} packets at 4 capture points`),
    );

    // Scrolling anywhere renders a bounded window of rows, fast; at the end the last packet is in view.
    const scrolling = await diagram.evaluate(async (scroller, bound) => {
      const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
      const steps: Array<{ ms: number; rendered: number; inView: boolean }> = [];
      for (let step = 0; step <= 40; step += 1) {
        const started = performance.now();
        scroller.scrollTop = ((scroller.scrollHeight - scroller.clientHeight) * step) / 40;
        await frame();
        const view = scroller.getBoundingClientRect();
        const rows = [...scroller.querySelectorAll('g.ladder-row')];
        const inView = rows.some((row) => {
          const box = row.getBoundingClientRect();
          return box.top >= view.top && box.bottom <= view.bottom;
        });
        steps.push({ ms: performance.now() - started, rendered: rows.length, inView });
      }
      return { steps, scrollHeight: scroller.scrollHeight, bound };
    }, RENDERED_ROWS_BOUND);
    const slowest = Math.max(...scrolling.steps.map((step) => step.ms));
    const mostRendered = Math.max(...scrolling.steps.map((step) => step.rendered));
    t.diagnostic(`scrolling ${rowCount} rows: at most ${mostRendered} rendered, slowest step ${slowest.toFixed(1)} ms (2 frames)`);
    assert.ok(mostRendered <= RENDERED_ROWS_BOUND, `${mostRendered} rows rendered at once`);
    assert.ok(scrolling.steps.every((step) => step.inView), 'rows in view at every scroll position');
    assert.ok(slowest < 1000, `a scroll step took ${slowest} ms`);
    assert.ok(scrolling.scrollHeight >= rowCount * 12, `the diagram is as tall as its ${rowCount} rows: ${scrolling.scrollHeight}px`);
    const last = packets[packets.length - 1];
    const lastShown = await diagram.evaluate((scroller, id) => {
      const rows = [...scroller.querySelectorAll('g.ladder-row')].filter((g) => g.getAttribute('data-packet-id') === id);
      const row = rows[rows.length - 1];
      if (!row) return null;
      const [box, view] = [row.getBoundingClientRect(), scroller.getBoundingClientRect()];
      return { title: row.querySelector('title')?.textContent ?? '', inView: box.top >= view.top && box.bottom <= view.bottom + 1 };
    }, last.packet_id);
    assert.ok(lastShown, 'the last packet is rendered at the end');
    assert.ok(lastShown.inView, 'the last packet is in view at the end');
    // Its row begins at its first sighting (the same packet id within the second before).
    const lastFirstSeen = packets.find((p) => p.packet_id === last.packet_id && epochNs(last.ts) - epochNs(p.ts) <= 1_000_000_000n)!;
    assert.ok(lastShown.title.startsWith(`${uiTime(lastFirstSeen.ts)} `), `the last packet's row, from its first sighting: ${lastShown.title}`);

    // Retransmissions: as many as the API's packets have, each marked; "next" steps through them.
    const retransmissions = expectedRetransmissions(packets);
    t.diagnostic(`${retransmissions.size} retransmissions`);
    assert.ok(retransmissions.size >= 1, 'the lossy transfer retransmitted');
    assert.equal(await legendCount(page, 'retransmission'), retransmissions.size, 'legend: retransmissions');
    const visited = new Set<string>();
    for (let i = 0; i < 5; i++) {
      await page.locator('button[aria-label="Next retransmission"]').click();
      const focused = diagram.locator('g.ladder-row--focused');
      await focused.waitFor();
      const id = (await focused.getAttribute('data-packet-id')) ?? '';
      assert.ok(retransmissions.has(id), `focused row is a retransmission: ${id}`);
      assert.match((await focused.locator('text.ladder-row__label').textContent()) ?? '', /retransmission/);
      assert.match((await focused.getAttribute('class')) ?? '', /ladder-row--retransmission/);
      visited.add(id);
    }
    assert.equal(visited.size, Math.min(5, retransmissions.size), 'next steps to a new retransmission each time');
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-retransmissions.png'), fullPage: false });

    // Zero windows while the reader stalled.
    const zeroWindows = new Set(packets.filter((p) => p.win === 0 && !p.flags.includes('RST')).map((p) => p.packet_id));
    assert.ok(zeroWindows.size >= 1, 'the stalled reader advertised a zero window');
    assert.equal(await legendCount(page, 'zeroWindow'), zeroWindows.size, 'legend: zero windows');
    await page.locator('button[aria-label="Next zero window"]').click();
    const focused = diagram.locator('g.ladder-row--focused.ladder-row--zero-window');
    await focused.waitFor();
    assert.ok(zeroWindows.has((await focused.getAttribute('data-packet-id')) ?? ''), 'the focused row is a zero window');
    assert.match((await focused.locator('text.ladder-row__label').textContent()) ?? '', / win=0 /);

    // Time scale: the stall shows as a gap labelled with its length; zooming out keeps the row in view.
    await page.locator('button', { hasText: 'Time scale' }).click();
    await page.locator('button[aria-label="Zoom out"]').click();
    await page.locator('button[aria-label="Zoom out"]').click();
    const pauses = await diagram.locator('text.ladder-row__pause').allTextContents();
    assert.ok(pauses.some((text) => / later$/.test(text)), `a labelled pause near the zero window: ${JSON.stringify(pauses)}`);
    assert.ok((await renderedRows(page)).length <= RENDERED_ROWS_BOUND, 'still windowed at the smallest zoom');
    const [focusedBox, diagramBox] = [await focused.boundingBox(), await diagram.boundingBox()];
    assert.ok(
      focusedBox && diagramBox && focusedBox.y >= diagramBox.y && focusedBox.y + focusedBox.height <= diagramBox.y + diagramBox.height,
      'the focused row stays in view after changing the spacing and zooming',
    );
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-big-transfer.png'), fullPage: true });
  });

  await step('flow search: filters in the URL, pages without duplicates, a rejected filter at its field', 'ui-flows', async () => {
    const serverNs = server.netns.name;
    const query = `dport=${lab.server.port}&netns=${serverNs}&limit=2`;
    const expected: FlowJson[] = [];
    for (let cursor: string | null = null; ; ) {
      const body: { flows: FlowJson[]; next_cursor: string | null } = await api(`/api/v1/flows?${query}${cursor ? `&cursor=${cursor}` : ''}`);
      expected.push(...body.flows);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    assert.ok(expected.length >= 5, `flows at the server: ${expected.length}`);
    const rowText = (f: FlowJson) => `${f.client.ip}:${f.client.port} -> ${f.server.ip}:${f.server.port} | ${pointKey(f)} | ${uiTime(f.start)}`;

    // Fill the form from the header's link.
    await page.goto(origin);
    await page.locator('.app-header__nav a', { hasText: 'Flow search' }).click();
    await page.waitForURL((url) => url.pathname === '/flows');
    await page.locator('.list-view-switch__flows').click();
    await page.waitForURL((url) => url.searchParams.get('view') === 'flows');
    await page.locator('#flow-filter-dport').fill(String(lab.server.port));
    await page.locator('#flow-filter-netns').fill(serverNs);
    await page.locator('#flow-filter-limit').selectOption('20');
    await Promise.all([flowsResponse(page), page.locator('.flow-filters button[type=submit]').click()]);
    const searched = new URL(page.url()).searchParams;
    assert.deepEqual([searched.get('dport'), searched.get('netns'), searched.get('limit')], [String(lab.server.port), serverNs, '20'], 'the search is in the URL');
    const rows = page.locator('.flow-table tbody tr');
    const shownRows = async () => {
      await rows.first().waitFor();
      return rows.evaluateAll((trs) =>
        trs.map((tr) => {
          const cells = [...tr.querySelectorAll('td')];
          return `${(cells[1].textContent ?? '').replace(/\s+/g, ' ').trim()} | ${(cells[2].textContent ?? '').trim()} | ${cells[3].getAttribute('title')}`;
        }),
      );
    };
    assert.deepEqual(await shownRows(), expected.map(rowText), 'every matching flow on one page of 20');

    // Two per page: next to the end, then back; the URL holds the page.
    await page.goto(`${origin}/flows?${query}&view=flows`);
    assert.equal(await page.locator('#flow-filter-limit').inputValue(), '2', 'the form shows the URL\'s limit');
    const next = page.locator('.pager button', { hasText: 'Next' });
    const previous = page.locator('.pager button', { hasText: 'Previous' });
    const pages: string[][] = [];
    for (;;) {
      pages.push(await shownRows());
      assert.equal(await textOf(page.locator('.pager__page'), 'the page number'), `page ${pages.length}`);
      if (await next.isDisabled()) break;
      await Promise.all([flowsResponse(page), next.click()]);
      assert.ok(new URL(page.url()).searchParams.has('cursor'), 'a later page has its cursor in the URL');
    }
    const all = pages.flat();
    assert.equal(new Set(all).size, all.length, `no flow on two pages: ${JSON.stringify(pages)}`);
    assert.deepEqual(all, expected.map(rowText), 'the pages together are the API\'s flows, in order');
    assert.ok(pages.every((shown) => shown.length <= 2), 'at most 2 per page');
    // Reload on the last page: the cursor is in the URL, the way back in the history entry.
    await page.reload();
    assert.deepEqual(await shownRows(), pages[pages.length - 1], 'a reloaded page shows the same flows');
    for (let index = pages.length - 2; index >= 0; index--) {
      await Promise.all([flowsResponse(page), previous.click()]);
      assert.equal(new URL(page.url()).searchParams.has('cursor'), index > 0, `cursor in the URL of page ${index + 1}`);
      assert.deepEqual(await shownRows(), pages[index], `back on page ${index + 1}`);
    }
    assert.ok(await previous.isDisabled(), 'no previous page before the first');
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-flows.png'), fullPage: true });

    // A row links to its connection at its time.
    await rows.first().locator('a').click();
    await page.waitForURL((url) => url.pathname === '/connection' && url.searchParams.get('at') === expected[0].start);
    await textOf(page.locator('.nat-path .nat-hop'), 'the NAT hop of a flow opened from the search');

    // A filter the server rejects: its message at the field, the input marked.
    const bad = '10.0.0.300';
    const rejected = await fetch(`${origin}/api/v1/flows?src=${bad}`);
    assert.equal(rejected.status, 400);
    const { error } = (await rejected.json()) as { error: { message: string; parameter: string } };
    assert.equal(error.parameter, 'src');
    await page.goto(`${origin}/flows`);
    await page.locator('#flow-filter-src').fill(bad);
    await page.locator('.flow-filters button[type=submit]').click();
    assert.equal(await textOf(page.locator('#flow-filter-src-error'), 'the message at the src field'), error.message);
    assert.equal(await page.locator('#flow-filter-src').getAttribute('aria-invalid'), 'true');
    assert.equal(new URL(page.url()).searchParams.get('src'), bad, 'the rejected search is in the URL too');
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-flows-invalid.png'), fullPage: true });
  });

  assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
  assert.deepEqual(offsite, [], 'requests to hosts other than 127.0.0.1');
  assert.deepEqual(consoleErrors.filter((m) => !/status of 400/.test(m)), [], 'console errors other than the expected 400');
});
