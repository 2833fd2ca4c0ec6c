// The list pages in a real browser (chromium through playwright-core): one row
// per connection by default, each linking to its connection page by id;
// loopback hidden until "show loopback" is ticked; the switch to flows per
// capture point; the same on the search page, kept in its URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { Page } from 'playwright-core';
import type { ConnectionSearchResponseJson } from '../../api/schemas/connection-search.js';
import { sleep } from '../../bench/support/wait.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { TRAFFIC_JS } from '../support/netns-pair.js';
import { getJson, labWithService, pathPoints, serviceTuple, tupleText } from '../support/service-fixture.js';
import { ARTIFACTS, openBrowser, pointKey } from '../support/ui-browser.js';

/** The cells of the rows of the table `selector`, whitespace squashed, and each row's first link. */
const tableRows = (page: Page, selector: string) =>
  page.locator(`${selector} tbody tr`).evaluateAll((rows) =>
    rows.map((row) => ({
      cells: [...row.querySelectorAll('td')].map((td) => (td.textContent ?? '').replace(/\s+/g, ' ').trim()),
      href: row.querySelector('a')?.getAttribute('href') ?? null,
    })),
  );

test('list pages: connections by default, loopback hidden until shown, flows per capture point on the switch', { timeout: 180_000 }, async (t) => {
  const { lab, service } = await labWithService(t);
  const { client } = lab.nodes;
  const ports = [randomClientPort(), randomClientPort() + 1];
  for (const localPort of ports) assert.equal((await lab.request({ localPort })).status, 200);
  execFileSync('ip', ['netns', 'exec', client.netns.name, process.execPath, TRAFFIC_JS, 'refused', '127.0.0.1', '9']);
  await sleep(1500);
  await service.flush();

  const { connections } = await getJson<ConnectionSearchResponseJson>(service, '/api/v1/connections/search?limit=20&loopback=exclude');
  const ours = ports.map((port) => connections.find((c) => tupleText(c.client_tuple) === tupleText(serviceTuple(lab, port)))!);
  assert.ok(ours.every(Boolean), `the API lists both connections: ${JSON.stringify(connections.map((c) => c.client_tuple))}`);
  const { connections: loopback } = await getJson<ConnectionSearchResponseJson>(service, '/api/v1/connections/search?limit=20&loopback=only');
  const refused = loopback.find((c) => c.client_tuple.dst === '127.0.0.1' && c.client_tuple.dport === 9);
  assert.ok(refused, `the API has the refused loopback connection: ${JSON.stringify(loopback)}`);
  const refusedText = tupleText(refused.client_tuple);

  const { page, pageErrors, consoleErrors, offsite } = await openBrowser(t);
  await page.goto(service.url);

  // 1. Connections, one row each, linked by id; loopback hidden.
  await page.locator('table.connection-table tbody tr').first().waitFor({ state: 'visible' });
  const rows = await tableRows(page, 'table.connection-table');
  for (const connection of ours) {
    const shown = rows.filter((row) => row.cells[1] === tupleText(connection.client_tuple));
    assert.equal(shown.length, 1, `one row for ${tupleText(connection.client_tuple)}: ${JSON.stringify(rows)}`);
    const [row] = shown;
    assert.equal(row.href, `/connection?id=${encodeURIComponent(connection.id)}`);
    assert.equal(row.cells[0], 'tcp');
    assert.equal(row.cells[2], tupleText(connection.server_tuple), 'the server side tuple');
    assert.equal(row.cells[3], 'FULLNAT');
    assert.equal(row.cells[4], '4', 'its capture points');
    assert.equal(row.cells[7], connection.conn_state);
  }
  assert.ok(!rows.some((row) => row.cells[1] === refusedText), 'loopback hidden by default');
  assert.equal(await page.locator('input[name=show-loopback]').isChecked(), false);
  await page.screenshot({ path: path.join(ARTIFACTS, 'ui-connections.png'), fullPage: true });

  // 2. Show loopback: the refused connection on lo appears.
  await page.locator('input[name=show-loopback]').check();
  await page.locator('table.connection-table tbody tr', { hasText: refusedText }).first().waitFor({ state: 'visible' });

  // 3. Flows per capture point: the connections' four flows each.
  await page.locator('.list-view-switch__flows').click();
  await page.locator('.flow-table table:not(.connection-table) tbody tr').first().waitFor({ state: 'visible' });
  assert.equal(await page.locator('table.connection-table').count(), 0);
  const flowRows = await tableRows(page, '.flow-table table');
  const [newest] = ours;
  const points = new Set(flowRows.filter((row) => row.cells[1] === tupleText(newest.client_tuple) || row.cells[1] === tupleText(newest.server_tuple)).map((row) => row.cells[2]));
  assert.deepEqual([...points].sort(), pathPoints(lab).map(pointKey).sort(), `the flows of ${newest.id} at its 4 points`);
  await page.locator('.list-view-switch__connections').click();
  await page.locator('table.connection-table tbody tr').first().waitFor({ state: 'visible' });

  // 4. The search page: connections by default, loopback hidden, both choices in the URL.
  await page.goto(new URL(`/flows?src=${encodeURIComponent(client.ifaces[0].ip)}`, service.url).href);
  await page.locator('table.connection-table tbody tr').first().waitFor({ state: 'visible' });
  const searched = await tableRows(page, 'table.connection-table');
  assert.deepEqual(searched.map((row) => row.cells[1]).sort(), ours.map((c) => tupleText(c.client_tuple)).sort());
  await page.locator('input[name=show-loopback]').check();
  await page.waitForURL((url) => url.searchParams.get('loopback') === 'include');
  await page.locator('.list-view-switch__flows').click();
  await page.waitForURL((url) => url.searchParams.get('view') === 'flows' && url.searchParams.get('loopback') === 'include');
  await page.locator('.flow-table table:not(.connection-table) tbody tr').first().waitFor({ state: 'visible' });
  const searchedFlows = await tableRows(page, '.flow-table table');
  assert.equal(searchedFlows.filter((row) => row.cells[1].startsWith(`${client.ifaces[0].ip}:`)).length, 2 * 2, 'the client side flows of both connections at 2 points each');
  await page.screenshot({ path: path.join(ARTIFACTS, 'ui-connections-flows.png'), fullPage: true });

  assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
  assert.deepEqual(offsite, [], 'requests to hosts other than 127.0.0.1');
  assert.deepEqual(consoleErrors, [], 'console errors');
});
