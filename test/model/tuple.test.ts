import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTuple, tupleFromQuery, TupleError } from '../../model/tuple.js';
import { isoNs, parseTime, TimeError } from '../../model/time.js';

test('every notation of the contract parses to the same tuple', () => {
  const expected = { proto: 'tcp', src: '10.0.0.1', sport: 43210, dst: '10.0.0.2', dport: 80 };
  for (const text of [
    '10.0.0.1:43210 -> 10.0.0.2:80',
    '10.0.0.1:43210->10.0.0.2:80',
    '10.0.0.1:43210 10.0.0.2:80',
    '10.0.0.1:43210,10.0.0.2:80',
    'tcp 10.0.0.1:43210 -> 10.0.0.2:80',
    '  TCP   10.0.0.1:43210  ->  10.0.0.2:80 ',
    '10.0.0.1:43210 → 10.0.0.2:80',
    '10.0.0.1:43210→10.0.0.2:80',
  ]) {
    assert.deepEqual(parseTuple(text), expected, text);
  }
  assert.deepEqual(parseTuple('udp [FD00:0:0::1]:53 -> [fd00::2]:5353'), { proto: 'udp', src: 'fd00::1', sport: 53, dst: 'fd00::2', dport: 5353 });
  assert.deepEqual(tupleFromQuery({ src: '10.0.0.1', sport: '43210', dst: '10.0.0.2', dport: '80' }), expected);
  assert.deepEqual(tupleFromQuery({ src: '[fd00::1]', sport: '1', dst: 'fd00::2', dport: '2', proto: 'udp' }).src, 'fd00::1');
});

test('malformed tuples say what is wrong', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /expected "SRC:SPORT -> DST:DPORT"/],
    ['10.0.0.1:1', /expected/],
    ['10.0.0.1:70000 -> 10.0.0.2:80', /source port "70000"/],
    ['10.0.0.1:1 -> 10.0.0.300:80', /destination address "10.0.0.300"/],
    ['fd00::1:1 -> fd00::2:80', /brackets/],
    ['[10.0.0.1]:1 -> 10.0.0.2:80', /only for IPv6/],
    ['sctp 10.0.0.1:1 -> 10.0.0.2:80', /protocol "sctp"/],
    ['10.0.0.1:1 -> [fd00::2]:80', /mix IPv4 and IPv6/],
    ["10.0.0.1:1' OR 1=1 -- -> 10.0.0.2:80", /expected|port/],
    ['x'.repeat(500), /longer than 200/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseTuple(text), (err: unknown) => err instanceof TupleError && message.test(err.message), text);
  }
  assert.throws(() => tupleFromQuery({ src: '10.0.0.1' }), /missing sport, dst, dport/);
  assert.throws(() => tupleFromQuery({ tuple: '10.0.0.1:1 -> 10.0.0.2:2', src: '10.0.0.1' }), /not both/);
});

test('times: nanosecond ISO out, ISO or epoch ms in', () => {
  assert.equal(isoNs(1795290183123456789n), '2026-11-21T19:43:03.123456789Z');
  assert.equal(parseTime('2026-11-21T19:43:03.123456789Z', 'at'), 1795290183123456789n);
  assert.equal(parseTime('2026-11-21T20:43:03.5+01:00', 'at'), 1795290183500000000n);
  assert.equal(parseTime('1795290183123', 'at'), 1795290183123000000n);
  assert.throws(() => parseTime('yesterday', 'from'), (err: unknown) => err instanceof TimeError && /from "yesterday"/.test(err.message));
});
