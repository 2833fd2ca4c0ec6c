// The connection page fits the window: a connection through two routers (6 capture
// points, two NAT hops) at 1280 and 1920 px has no element wider than the window
// unless it sits in a scroll container; the lane titles name edge and core router
// apart; the ladder's and the table's hidden parts are one scroll away.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import type { ConnectionJson } from '../../api/schemas/connections.js';
import { randomClientPort } from '../support/lab-fixture.js';
import { getJson, labWithService, requestRecorded, serviceTuple, tupleText } from '../support/service-fixture.js';
import { ARTIFACTS, openBrowser, panel } from '../support/ui-browser.js';

/** Elements that stick out of the window's right edge without a scroll container (overflow-x auto/scroll) around them that does not. */
const overflowingElements = () =>
  [...document.querySelectorAll<HTMLElement>('body *')]
    .filter((element) => {
      const box = element.getBoundingClientRect();
      if (box.width === 0 || box.right <= window.innerWidth + 1) return false;
      for (let parent = element.parentElement; parent; parent = parent.parentElement) {
        const overflow = getComputedStyle(parent).overflowX;
        if ((overflow === 'auto' || overflow === 'scroll' || overflow === 'hidden') && parent.getBoundingClientRect().right <= window.innerWidth + 1) return false;
      }
      return true;
    })
    .map((element) => `${element.tagName.toLowerCase()}.${[...element.classList].join('.')} right=${Math.round(element.getBoundingClientRect().right)}`);

test('the connection page of a two-router connection fits 1280 and 1920 px', { timeout: 120_000 }, async (t) => {
  const { lab, service } = await labWithService(t, { scenario: 'two-routers' });
  const port = randomClientPort();
  await requestRecorded(lab, service, port);
  const tuple = tupleText(serviceTuple(lab, port));
  const { connection } = await getJson<{ connection: ConnectionJson }>(service, `/api/v1/connections?tuple=${encodeURIComponent(tuple)}`);
  assert.equal(connection.hops.length, 2, 'SNAT at the edge, DNAT at the router');
  assert.equal(connection.points.length, 6, 'six capture points');

  const { page, pageErrors } = await openBrowser(t);
  for (const width of [1280, 1920]) {
    await page.setViewportSize({ width, height: 1000 });
    await page.goto(`${new URL(service.url).origin}/connection?id=${connection.id}`);
    await page.locator('.ladder g.ladder-row').first().waitFor();
    await page.locator('.nat-hop').nth(1).waitFor();
    const overflowing = await page.evaluate(overflowingElements);
    await page.screenshot({ path: path.join(ARTIFACTS, `ui-fit-${width}.png`), fullPage: true });
    assert.deepEqual(overflowing, [], `at ${width} px, wider than the window and not in a scroll container`);
    // Both NAT hops and the server end are on screen (the path wraps instead of hiding them).
    for (const locator of [page.locator('.nat-hop').nth(0), page.locator('.nat-hop').nth(1), page.locator('.nat-path__end').last()]) {
      const box = await locator.boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= width, `at ${width} px a NAT path element is cut: ${JSON.stringify(box)}`);
    }
    // Lane heads carry the whole point name; edge and core router lanes differ in what they show.
    const heads = await page.locator('.ladder__lane-head').evaluateAll((els) => els.map((el) => ({ title: el.getAttribute('title') ?? '', text: (el.textContent ?? '').trim() })));
    assert.equal(heads.length, 8, 'client, 6 points, server');
    const routerHeads = heads.filter((h) => h.title.includes(lab.nodes.router.netns.name) || h.title.includes(lab.nodes.edge!.netns.name));
    assert.equal(new Set(routerHeads.map((h) => h.text)).size, 4, `four router lanes, each its own label: ${JSON.stringify(routerHeads)}`);
    for (const head of routerHeads) {
      const role = head.title.includes(lab.nodes.edge!.netns.name) ? 'edge' : 'router';
      assert.match(head.text, new RegExp(role), `the ${role} router's lane says so: ${JSON.stringify(head)}`);
    }
    // Where the ladder is wider than the page, it says so; the table view scrolls too.
    const ladder = await page.locator('.ladder').evaluate((el) => ({ scroll: el.scrollWidth, client: el.clientWidth }));
    assert.equal(await page.locator('.scroll-cue').count(), ladder.scroll > ladder.client + 1 ? 1 : 0, `scroll cue at ${width} px: ${JSON.stringify(ladder)}`);
    await panel(page, 'Packets').locator('button', { hasText: 'Table' }).click();
    await page.locator('.packet-table tbody tr').first().waitFor();
    assert.deepEqual(await page.evaluate(overflowingElements), [], `at ${width} px the table view fits or scrolls`);
    await panel(page, 'Packets').locator('button', { hasText: 'Sequence diagram' }).click();
  }
  assert.deepEqual(pageErrors, []);
});
