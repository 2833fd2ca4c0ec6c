// The web UI in a real browser (Debian chromium driven by playwright-core): a real
// connection through the lab's DNAT + MASQUERADE router, looked up by typing its
// tuple on the home page and by deep link; the NAT path, capture points, sequence
// diagram and downloaded PCAP must agree with the API and tshark.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import type { ConnectionJson, PacketJson } from '../../api/schemas/connections.js';
import type { FlowJson } from '../../api/schemas/flows.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { getJson, labWithService, NODE, pathPoints, requestRecorded, reversed, serviceTuple, tupleText } from '../support/service-fixture.js';
import {
  ARTIFACTS,
  assertDuration,
  countBy,
  epochNs,
  openBrowser,
  panel,
  pointKey,
  sameTuple,
  sighting,
  squash,
  textOf,
  uiTime,
} from '../support/ui-browser.js';

interface LadderRowSeen {
  packetId: string;
  /** The capture points that saw it, in time order (node/netns/iface). */
  points: string[];
  direction: string;
  /** The arrow's ends and the lane centres (SVG x). */
  x1: number;
  x2: number;
  /** Hop delays drawn on its segments, with the lane each ends at. */
  hops: Array<{ to: string; text: string }>;
  loss: boolean;
  label: string;
  title: string[];
}

/**
 * Every row of the (windowed) ladder diagram: scrolls it top to bottom and collects the
 * rendered rows, keyed by packet id and first sighting; and the lanes' titles and centres.
 */
async function allLadderRows(page: Page): Promise<{ rows: LadderRowSeen[]; lanes: Array<{ title: string; x: number }>; renderedAtOnce: number }> {
  await page.locator('.ladder svg g.ladder-row').first().waitFor({ state: 'visible' });
  return page.evaluate(async () => {
    const scroller = document.querySelector<HTMLElement>('.ladder')!;
    const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    const rows = new Map<string, LadderRowSeen>();
    let renderedAtOnce = 0;
    const collect = () => {
      const rendered = scroller.querySelectorAll('g.ladder-row');
      renderedAtOnce = Math.max(renderedAtOnce, rendered.length);
      for (const g of rendered) {
        const title = g.querySelector('title')?.textContent ?? '';
        const arrow = g.querySelector('line.ladder-row__arrow');
        rows.set(`${g.getAttribute('data-packet-id')}|${title}`, {
          packetId: g.getAttribute('data-packet-id') ?? '',
          points: (g.getAttribute('data-points') ?? '').split(' → ').filter(Boolean),
          direction: g.getAttribute('data-direction') ?? '',
          x1: Number(arrow?.getAttribute('x1')),
          x2: Number(arrow?.getAttribute('x2')),
          hops: [...g.querySelectorAll('text.ladder-row__hop')].map((h) => ({ to: h.getAttribute('data-to') ?? '', text: h.textContent ?? '' })),
          loss: g.querySelector('.ladder-row__loss') !== null,
          label: g.querySelector('text.ladder-row__label')?.textContent ?? '',
          title: title.split('\n'),
        });
      }
    };
    scroller.scrollTop = 0;
    await frame();
    collect();
    const step = Math.max(1, Math.floor(scroller.clientHeight / 2));
    for (let top = step; top < scroller.scrollHeight; top += step) {
      scroller.scrollTop = top;
      await frame();
      collect();
    }
    scroller.scrollTop = 0;
    await frame();
    const lanes = [...scroller.querySelectorAll<HTMLElement>('.ladder__lane-head')].map((lane) => ({
      title: lane.getAttribute('title') ?? '',
      x: parseFloat(lane.style.left) + parseFloat(lane.style.width) / 2,
    }));
    return { rows: [...rows.values()], lanes, renderedAtOnce };
  });
}

test('the web UI in chromium: tuple lookup, NAT path, sequence diagram, per-hop delay, PCAP download, errors', { timeout: 180_000 }, async (t) => {
  rmSync(path.join(ARTIFACTS, 'ui-failure.png'), { force: true });
  // After-hooks run first to last: the service, the lab and its directory (labWithService); the browser (opened later) last.
  const { lab, service, dir } = await labWithService(t);
  const { client, router } = lab.nodes;
  const points = pathPoints(lab);
  const pointKeys = points.map(pointKey).sort();
  const pathOrder = (key: string) => points.map(pointKey).indexOf(key);
  const origin = new URL(service.url).origin;
  assert.equal(new URL(service.url).hostname, '127.0.0.1', `the service must listen on 127.0.0.1, got ${service.url}`);

  const localPort = randomClientPort();
  await requestRecorded(lab, service, localPort);

  // What the API says, to compare the UI against.
  const clientTuple = serviceTuple(lab, localPort);
  const clientTupleText = tupleText(clientTuple);
  const api = <T>(route: string, tuple: string) => getJson<T>(service, `${route}?tuple=${encodeURIComponent(tuple)}`);
  const { connection } = await api<{ connection: ConnectionJson }>('/api/v1/connections', clientTupleText);
  const { packets } = await api<{ packets: PacketJson[] }>('/api/v1/connections/timeline', clientTupleText);
  assert.equal(connection.hops.length, 1, `API hops: ${JSON.stringify(connection.hops)}`);
  const [hop] = connection.hops;
  assert.deepEqual(hop.before, clientTuple, 'API hop.before is the client side tuple');
  assert.deepEqual(
    { src: hop.after.src, dst: hop.after.dst, dport: hop.after.dport },
    { src: lab.masqueradeIp, dst: lab.server.ip, dport: lab.server.port },
    'API hop.after: masquerade address -> server',
  );
  const serverTupleText = tupleText(hop.after);
  assert.ok(packets.length >= 20, `the timeline API has only ${packets.length} packets`);
  const packetsPerPoint = countBy(packets, pointKey);
  assert.deepEqual(Object.keys(packetsPerPoint), pointKeys, 'the timeline API has packets at the 4 lab interfaces');
  const expectedDirection = (p: PacketJson) =>
    connection.tuples.some((tuple) => sameTuple(p, tuple)) ? 'c2s' : connection.tuples.some((tuple) => sameTuple(p, reversed(tuple))) ? 's2c' : null;
  t.diagnostic(`connection ${clientTupleText} => ${serverTupleText}; ${packets.length} packets ${JSON.stringify(packetsPerPoint)}`);

  // ---- the browser ----
  const { page, pageErrors, consoleErrors, offsite } = await openBrowser(t);

  try {
    // 1. Home page: title, and the lab connection's flows in the recent list.
    await page.goto(service.url);
    assert.equal(await page.title(), 'nettrail', 'home page title');
    assert.equal(await textOf(page.locator('h1.panel__title'), 'the home page heading'), 'Trace a connection');
    // The list shows connections by default; this part checks its flows per capture point.
    await page.locator('.list-view-switch__flows').click();
    const flowRows = page.locator('table.data-table tbody tr');
    await flowRows.first().waitFor({ state: 'visible' }).catch(() => {
      throw new Error('the recent connections table did not appear on the home page');
    });
    const listed = await flowRows.evaluateAll((rows) =>
      rows.map((row) => [...row.querySelectorAll('td')].map((td) => (td.textContent ?? '').replace(/\s+/g, ' ').trim())),
    );
    const { flows } = (await (await fetch(`${origin}/api/v1/flows?limit=20`)).json()) as { flows: FlowJson[] };
    const ours = flows.filter(
      (f) =>
        (f.client.ip === clientTuple.src && f.client.port === clientTuple.sport) ||
        (f.client.ip === hop.after.src && f.client.port === hop.after.sport),
    );
    assert.deepEqual(ours.map(pointKey).sort(), pointKeys, `the flows API lists one flow of the connection per interface: ${JSON.stringify(ours)}`);
    for (const flow of ours) {
      const link = `${flow.client.ip}:${flow.client.port} -> ${flow.server.ip}:${flow.server.port}`;
      const row = listed.find((cells) => cells[1] === link && cells[2] === pointKey(flow));
      assert.ok(row, `recent connections shows no row "${link}" at ${pointKey(flow)}; rows: ${JSON.stringify(listed)}`);
      assert.equal(row[0], 'tcp');
      assert.equal(row[4], `${flow.packets.c2s} / ${flow.packets.s2c}`, `packet counts of ${link} at ${pointKey(flow)}`);
    }
    assert.ok(
      listed.some((cells) => cells[1] === clientTupleText),
      `recent connections lists the client side tuple ${clientTupleText}`,
    );
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-home.png'), fullPage: true });

    // 2. Type the client side tuple and submit: the connection page.
    await page.locator('#tuple-input').fill(clientTupleText);
    await page.locator('form.tuple-form button[type=submit]').click();
    await page
      .waitForURL((url) => url.pathname === '/connection' && url.searchParams.get('tuple') === clientTupleText)
      .catch(() => {
        throw new Error(`submitting ${clientTupleText} did not open /connection?tuple=...; at ${page.url()}`);
      });
    assert.equal(await textOf(page.locator('h1.page-header__title'), 'the connection page heading'), clientTupleText);

    // 3a. NAT path: one FULLNAT hop via iptables on the router, the before and after tuples.
    const checkNatPath = async (where: string) => {
      const hops = page.locator('.nat-path li.nat-hop');
      await hops.first().waitFor({ state: 'visible' }).catch(() => {
        throw new Error(`${where}: no NAT hop shown`);
      });
      assert.equal(await hops.count(), 1, `${where}: NAT hops shown`);
      assert.equal(await textOf(hops.locator('.nat-hop__kind'), 'the hop kind'), 'FULLNAT', `${where}: hop kind`);
      assert.equal(await textOf(hops.locator('.nat-hop__header .muted'), 'the hop mechanism'), 'via iptables', `${where}: hop mechanism`);
      assert.match(await textOf(hops.locator('.nat-hop__where'), 'where the hop is'), new RegExp(`^${NODE}/${router.netns.name} zone `), `${where}: hop location`);
      const tuples = hops.locator('.nat-hop__tuple');
      assert.equal(await tuples.count(), 2, `${where}: before and after lines`);
      const line = async (i: number) =>
        `${squash(await tuples.nth(i).locator('.nat-hop__tuple-label').textContent())}: ${squash(await tuples.nth(i).locator('.tuple').textContent())}`;
      assert.equal(await line(0), `before: ${clientTupleText}`, `${where}: before tuple`);
      assert.equal(await line(0), `before: ${tupleText(hop.before)}`, `${where}: before tuple as the API has it`);
      const afterText = `${lab.masqueradeIp}:${hop.after.sport} -> ${lab.server.ip}:${lab.server.port}`;
      assert.equal(await line(1), `after: ${afterText}`, `${where}: after tuple`);
      assert.equal(await line(1), `after: ${serverTupleText}`, `${where}: after tuple as the API has it`);
      // The rewritten fields are marked: addresses (and the port if masquerading remapped it).
      const changed = (['src', 'sport', 'dst', 'dport'] as const).filter((f) => hop.before[f] !== hop.after[f]);
      assert.deepEqual(await tuples.nth(1).locator('.changed--after').allTextContents(), changed.map((f) => String(hop.after[f])), `${where}: marked new values`);
      assert.deepEqual(await tuples.nth(0).locator('.changed--before').allTextContents(), changed.map((f) => String(hop.before[f])), `${where}: marked old values`);
      const ends = await page.locator('.nat-path li.nat-path__end').evaluateAll((items) =>
        items.map((item) => [...item.querySelectorAll('span')].map((span) => (span.textContent ?? '').trim()).join(': ')),
      );
      assert.deepEqual(ends, [`client: ${client.ifaces[0].ip}:${localPort}`, `server: ${lab.server.ip}:${lab.server.port}`], `${where}: path ends`);
      // Which capture points saw which tuple: the client side two before the hop, the server side two after it.
      const steps = await page.locator('.nat-path > li').evaluateAll((items) => items.map((item) => item.className));
      assert.deepEqual(steps, ['nat-path__end', 'nat-segment', 'nat-hop', 'nat-segment', 'nat-path__end'], `${where}: path steps`);
      const segments = await page.locator('.nat-path .nat-segment').evaluateAll((items) =>
        items.map((item) => ({
          tuple: [...item.querySelectorAll('.nat-segment__tuple span')].map((span) => (span.textContent ?? '').trim()).join(' '),
          points: [...item.querySelectorAll('.nat-segment__point')].map((point) => point.getAttribute('title')),
        })),
      );
      assert.deepEqual(
        segments,
        [
          { tuple: `${clientTuple.src}:${clientTuple.sport} → ${clientTuple.dst}:${clientTuple.dport}`, points: [pointKey(points[0]), pointKey(points[1])] },
          { tuple: `${hop.after.src}:${hop.after.sport} → ${hop.after.dst}:${hop.after.dport}`, points: [pointKey(points[2]), pointKey(points[3])] },
        ],
        `${where}: the tuple each capture point saw`,
      );
    };
    await checkNatPath('typed client tuple');

    // 3b. Capture points: the 4 interfaces with the API's packet counts.
    const pointRows = panel(page, 'Capture points').locator('tbody tr');
    await pointRows.first().waitFor({ state: 'visible' });
    const shownPoints = await pointRows.evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((td) => (td.textContent ?? '').trim())));
    assert.deepEqual(shownPoints.map(([node, netns, iface]) => `${node}/${netns}/${iface}`).sort(), pointKeys, 'capture points table lists the 4 interfaces');
    for (const [node, netns, iface, shownPackets] of shownPoints) {
      const key = `${node}/${netns}/${iface}`;
      const fromApi = connection.points.find((p) => pointKey(p) === key);
      assert.equal(shownPackets, fromApi?.packets.toLocaleString('en-US'), `packets at ${key}: UI vs connection API`);
      assert.equal(Number(shownPackets.replace(/,/g, '')), packetsPerPoint[key], `packets at ${key}: UI vs timeline API`);
    }

    // 3c. Ladder diagram: one row per packet (packet_id), its arrow from the first point that saw it to the last, in the right direction.
    const packetsPanel = panel(page, 'Packets');
    const summary = await textOf(packetsPanel.locator('.toolbar .muted'), 'the packet count line');
    assert.match(summary, new RegExp(`^${packets.length} packets at 4 capture points\\b`), 'packet count line');
    // At a short viewport the diagram renders only a window of its rows; scrolling must reach every one.
    await page.setViewportSize({ width: 1440, height: 500 });
    const { rows: ladderRows, lanes, renderedAtOnce } = await allLadderRows(page);
    await page.setViewportSize({ width: 1440, height: 1000 });
    t.diagnostic(`ladder diagram: ${ladderRows.length} rows, at most ${renderedAtOnce} rendered at once at 500 px`);
    assert.equal(lanes.length, 6, `diagram lanes (client, 4 points, server): ${JSON.stringify(lanes)}`);
    assert.equal(lanes[0].title, `client ${client.ifaces[0].ip}:${localPort}`);
    assert.equal(lanes[5].title, `server ${lab.server.ip}:${lab.server.port}`);
    const pathKeys = pointKeys.slice().sort((a, b) => pathOrder(a) - pathOrder(b));
    assert.deepEqual(lanes.slice(1, 5).map((l) => l.title), pathKeys, 'diagram lanes of the capture points, in path order');
    assert.ok(!ladderRows.some((r) => r.loss), 'no loss marked on a clean connection');
    // The API's packets grouped by packet_id: each is one row, seen at the points its sightings were, in time order.
    const journeys = new Map<string, PacketJson[]>();
    for (const p of packets) journeys.set(p.packet_id, [...(journeys.get(p.packet_id) ?? []), p]);
    assert.equal(ladderRows.length, journeys.size, `ladder rows (${ladderRows.length}) vs distinct packet ids (${journeys.size})`);
    const laneX = (key: string) => lanes.find((l) => l.title === key)!.x;
    for (const row of ladderRows) {
      const sightings = journeys.get(row.packetId);
      assert.ok(sightings, `row of an unknown packet ${row.packetId}`);
      assert.deepEqual(row.points, sightings.map(pointKey), `packet ${row.packetId}: the points that saw it`);
      assert.equal(row.direction, expectedDirection(sightings[0]), `packet ${row.packetId}: direction`);
      // Every packet crossed all 4 points: its arrow spans from the sender's end to the receiver's.
      const [from, to] = row.direction === 'c2s' ? [lanes[0].x, lanes[5].x] : [lanes[5].x, lanes[0].x];
      assert.ok(Math.abs(row.x1 - from) < 1 && Math.abs(row.x2 - to) < 4, `packet ${row.packetId}: arrow ${row.x1}..${row.x2}, ends ${from}..${to}`);
      // 3d. Per-hop delay on each segment: the API timestamps' differences.
      assert.deepEqual(row.hops.map((h) => h.to), sightings.slice(1).map(pointKey), `packet ${row.packetId}: a delay per hop`);
      row.hops.forEach((hop, i) => assertDuration(hop.text, Number(epochNs(sightings[i + 1].ts) - epochNs(sightings[i].ts)), `hop delay of ${row.packetId} to ${hop.to}`));
      for (const key of row.points) assert.ok(laneX(key) > 0);
    }
    const synRow = ladderRows.find((r) => r.label.startsWith('[SYN]'));
    assert.ok(synRow, 'the SYN');
    assert.match(synRow.label, /^\[SYN\] seq=0 len=0 win=\d+ mss=\d+/, `the SYN's label: flags, seq, len, window, options: ${synRow.label}`);
    assert.ok(synRow.title[0].startsWith(uiTime(journeys.get(synRow.packetId)![0].ts)), `absolute time first: ${synRow.title[0]}`);
    // Windows are shown scaled: after the handshake, the window the client advertised times 2^wscale.
    const clientScale = journeys.get(synRow.packetId)![0].options.wscale!;
    const dataRow = ladderRows.find((r) => r.direction === 'c2s' && !r.label.startsWith('[SYN'));
    assert.ok(dataRow, 'a packet from the client after its SYN');
    const firstSighting = journeys.get(dataRow.packetId)![0];
    assert.match(dataRow.label, new RegExp(` win=${firstSighting.win * 2 ** clientScale}( |$)`), `scaled window (raw ${firstSighting.win}, scale ${clientScale}): ${dataRow.label}`);

    // The detail panel of the SYN: every field at every point equals the API's.
    await page.locator(`.ladder g.ladder-row[data-packet-id="${synRow.packetId}"]`).click();
    const detail = packetsPanel.locator('.packet-detail');
    await detail.waitFor({ state: 'visible' });
    const fieldCells = async (field: string) => (await detail.locator(`td[data-field="${field}"]`).allTextContents()).map(squash);
    const synSightings = journeys.get(synRow.packetId)!;
    assert.deepEqual(await detail.locator('thead th.mono').allTextContents(), synSightings.map(pointKey), 'detail columns: the points');
    assert.deepEqual((await fieldCells('flags')), synSightings.map((p) => p.flags.join(',')));
    assert.deepEqual((await fieldCells('seq')).map((v) => v.split(' ')[0]), synSightings.map((p) => String(p.seq)));
    assert.deepEqual((await fieldCells('len')), synSightings.map((p) => String(p.len)));
    assert.deepEqual((await fieldCells('wire_len')), synSightings.map((p) => String(p.wire_len)));
    assert.deepEqual((await fieldCells('ip_id')), synSightings.map((p) => String(p.ip_id)));
    assert.deepEqual((await fieldCells('win')).map((v) => v.split(' ')[0]), synSightings.map((p) => String(p.win)));
    assert.deepEqual((await fieldCells('headers')).map((v) => v.replace(/ /g, '')), synSightings.map((p) => p.headers));
    await detail.locator('button', { hasText: 'Close' }).click();

    // 3e. Per-hop delay summary: every packet crossed the 4 points.
    const previousSighting = new Map<string, PacketJson>();
    const expectedHops = new Map<string, number[]>();
    for (const p of packets) {
      const earlier = previousSighting.get(p.packet_id);
      previousSighting.set(p.packet_id, p);
      if (!earlier) continue;
      const hopName = `${sighting(earlier)}|${sighting(p)}`;
      expectedHops.set(hopName, [...(expectedHops.get(hopName) ?? []), Number(epochNs(p.ts) - epochNs(earlier.ts))]);
    }
    assert.equal(expectedHops.size, 6, `3 hops each way: ${JSON.stringify([...expectedHops.keys()])}`);
    const hopRows = await packetsPanel.locator('table.hop-delays tbody tr').evaluateAll((rows) =>
      rows.map((row) => [...row.querySelectorAll('td')].map((td) => (td.textContent ?? '').trim())),
    );
    assert.deepEqual(hopRows.map(([from, to]) => `${from}|${to}`).sort(), [...expectedHops.keys()].sort(), 'per-hop delay summary: hops');
    for (const [from, to, count, min, median, max] of hopRows) {
      const delays = expectedHops.get(`${from}|${to}`)!.sort((a, b) => a - b);
      assert.equal(count, String(delays.length), `packets over ${from} -> ${to}`);
      const middle = delays.length >> 1;
      const expectedMedian = delays.length % 2 ? delays[middle] : Math.round((delays[middle - 1] + delays[middle]) / 2);
      assertDuration(min, delays[0], `min delay ${from} -> ${to}`);
      assertDuration(median, expectedMedian, `median delay ${from} -> ${to}`);
      assertDuration(max, delays[delays.length - 1], `max delay ${from} -> ${to}`);
    }

    // The table view lists the same packets (checked on its first rows).
    await packetsPanel.locator('button', { hasText: 'Table' }).click();
    const tableRows = packetsPanel.locator('.packet-table tbody tr[title]');
    await tableRows.first().waitFor({ state: 'visible' });
    const firstCells = (await tableRows.first().locator('td').allTextContents()).map(squash);
    assert.equal(firstCells[6], 'SYN', `first table row is the SYN: ${JSON.stringify(firstCells)}`);
    assert.equal(firstCells[5], clientTupleText, 'the SYN at the first point carries the client side tuple');
    await packetsPanel.locator('button', { hasText: 'Sequence diagram' }).click();
    await page.locator('.ladder svg g.ladder-row').first().waitFor({ state: 'visible' });
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-connection.png'), fullPage: true });

    // 5. Download PCAP: tshark reads it, packets at the 4 interfaces, as many as the timeline.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('.pcap-actions a', { hasText: 'Download PCAP' }).click(),
    ]);
    assert.equal(await download.failure(), null, 'the PCAP download failed');
    const pcapFile = path.join(dir, download.suggestedFilename() || 'download.pcapng');
    await download.saveAs(pcapFile);
    assert.match(download.suggestedFilename(), /\.pcapng$/, 'download file name');
    let tsharkOut: string;
    try {
      tsharkOut = execFileSync('tshark', ['-r', pcapFile, '-T', 'fields', '-e', 'frame.interface_name'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    } catch (err) {
      const { stderr } = err as { stderr?: Buffer };
      throw new Error(`tshark cannot read the downloaded PCAP: ${stderr?.toString() ?? (err as Error).message}`);
    }
    const frames = tsharkOut.split('\n').filter(Boolean);
    assert.equal(frames.length, packets.length, `frames in the downloaded PCAP vs timeline API packets`);
    assert.deepEqual(countBy(frames, (f) => f), packetsPerPoint, 'PCAP frames per interface vs timeline API packets per point');

    // 5b. A zip of a pcapng per capture point, and each point's own pcapng from the capture point table.
    const [zipDownload] = await Promise.all([page.waitForEvent('download'), page.locator('.pcap-actions a', { hasText: 'PCAP per point (zip)' }).click()]);
    const zipFile = path.join(dir, 'per-point.zip');
    await zipDownload.saveAs(zipFile);
    const zipNames = execFileSync('unzip', ['-Z1', zipFile]).toString().split('\n').filter(Boolean).sort();
    assert.deepEqual(zipNames, Object.keys(packetsPerPoint).map((p) => `${p.replace(/[^\w.-]/g, '_')}.pcapng`).sort(), 'files in the per-point zip');
    const [onePoint, oneCount] = Object.entries(packetsPerPoint)[0];
    const [pointDownload] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('table.data-table tr', { hasText: onePoint.split('/')[2] }).filter({ hasText: onePoint.split('/')[1] }).locator('a', { hasText: 'pcapng' }).click(),
    ]);
    const pointFile = path.join(dir, 'one-point.pcapng');
    await pointDownload.saveAs(pointFile);
    const pointFrames = execFileSync('tshark', ['-r', pointFile, '-T', 'fields', '-e', 'frame.interface_name'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().split('\n').filter(Boolean);
    assert.deepEqual(countBy(pointFrames, (f) => f), { [onePoint]: oneCount }, 'the point\'s own pcapng');
    assert.equal(await page.locator('.pcap-actions a', { hasText: 'Wireshark profile' }).getAttribute('href'), '/api/v1/wireshark-profile');

    // 4. Deep link with the server side tuple: the same hop.
    await page.goto(`${origin}/connection?tuple=${encodeURIComponent(serverTupleText)}`);
    assert.equal(await textOf(page.locator('h1.page-header__title'), 'the deep-linked page heading'), serverTupleText);
    await checkNatPath('deep link with the server side tuple');

    // 4b. A recent connection's link carries its start time (at=), which picks that connection among port reuses.
    await page.goto(service.url);
    await page.locator('.list-view-switch__flows').click();
    const clientFlow = ours.find((f) => pointKey(f) === pointKey(points[0]))!;
    await page.locator('table.data-table tbody tr', { hasText: pointKey(points[0]) }).locator('a', { hasText: clientTupleText }).first().click();
    await page
      .waitForURL((url) => url.pathname === '/connection' && url.searchParams.get('at') === clientFlow.start)
      .catch(() => {
        throw new Error(`the recent connection link did not open /connection?tuple=...&at=${clientFlow.start}; at ${page.url()}`);
      });
    assert.match(await textOf(page.locator('.page-header__at'), 'the at= line'), /^the connection closest to \d{4}-/);
    await checkNatPath('recent connection link with at=');
    const pcapHref = await page.locator('.pcap-actions a', { hasText: 'Download PCAP' }).getAttribute('href');
    // Found by tuple and time, the connection is pinned by its id: the PCAP is of that one connection.
    assert.equal(new URL(pcapHref ?? '', origin).searchParams.get('id'), clientFlow.connection_id, 'the PCAP link names the connection by its id');

    // 6a. A malformed tuple: the server's 400 message inline, and no navigation.
    const malformed = '10.0.0.1:99999 -> 10.0.0.2:80';
    const rejected = await fetch(`${origin}/api/v1/connections?tuple=${encodeURIComponent(malformed)}`);
    assert.equal(rejected.status, 400, 'the API rejects the malformed tuple');
    const { error } = (await rejected.json()) as { error: { message: string } };
    await page.goto(service.url);
    await page.locator('#tuple-input').fill(malformed);
    await page.locator('form.tuple-form button[type=submit]').click();
    const inline = await textOf(page.locator('form.tuple-form [role=alert]'), 'the inline message for a malformed tuple');
    assert.equal(inline, error.message, 'inline message is the server 400 message');
    assert.match(inline, /99999/, 'the message names the bad port');
    assert.equal(await page.locator('#tuple-input').getAttribute('aria-invalid'), 'true', 'the input is marked invalid');
    assert.equal(new URL(page.url()).pathname, '/', 'a malformed tuple stays on the home page');
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-malformed.png'), fullPage: true });

    // 6b. An unknown tuple's page: not found, with the tuple and the form to try again.
    const unknown = '10.9.9.9:1 -> 10.9.9.8:2';
    const [lookup] = await Promise.all([
      page.waitForResponse((res) => res.url().includes('/api/v1/connections?')),
      page.goto(`${origin}/connection?tuple=${encodeURIComponent(unknown)}`),
    ]);
    assert.equal(lookup.status(), 404, 'the API answers 404 for the unknown tuple');
    const notice = await textOf(page.locator('.notice'), 'the not-found notice');
    assert.ok(notice.startsWith(`No connection matches ${unknown}.`), `not-found notice: ${notice}`);
    assert.equal(await page.locator('.notice--error').count(), 0, 'not found is not shown as an error');
    assert.equal(await page.locator('.nat-path, .pcap-actions').count(), 0, 'no NAT path or PCAP link for an unknown tuple');
    assert.equal(await page.locator('#tuple-input').inputValue(), unknown, 'the form offers the tuple again');
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-not-found.png'), fullPage: true });

    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
    assert.deepEqual(offsite, [], 'requests to hosts other than 127.0.0.1');
    const unexpectedConsole = consoleErrors.filter((m) => !/status of (400|404)/.test(m));
    assert.deepEqual(unexpectedConsole, [], 'console errors other than the expected 400 and 404');
  } catch (err) {
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-failure.png'), fullPage: true }).catch(() => {});
    throw err;
  }
});
