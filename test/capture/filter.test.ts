// `--filter` parsing: what is accepted, and what is refused with a message naming the problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCidr, parseFilter } from '../../capture/packets/filter.js';

test('filter specs: kinds, comma-separated values, repeats', () => {
  assert.deepEqual(parseFilter(['net=10.0.0.0/8,fd00::/64', 'port=80', 'port=443,0', 'proto=udp']), {
    nets: ['10.0.0.0/8', 'fd00::/64'],
    ports: [80, 443, 0],
    protos: ['udp'],
  });
  assert.deepEqual(parseFilter([]), { nets: [], ports: [], protos: [] });
});

test('bad filter specs are refused with what is wrong', () => {
  for (const [spec, message] of [
    ['host=10.0.0.1', /expected net=CIDR, port=N or proto=tcp\|udp/],
    ['net=10.0.0.0/33', /prefix length must be 0-32/],
    ['net=fd00::/129', /prefix length must be 0-128/],
    ['net=10.0.0.256', /not an address or CIDR/],
    ['net=10.0.0.0/8/1', /not an address or CIDR/],
    ['port=65536', /not a port number/],
    ['port=http', /not a port number/],
    ['proto=icmp', /tcp or udp/],
    ['port=', /expected net=CIDR/],
  ] as const) {
    assert.throws(() => parseFilter([spec]), (err: Error & { code?: string }) => err.code === 'INVALID_ARGUMENT' && message.test(err.message), spec);
  }
});

test('addresses to bytes', () => {
  assert.deepEqual(parseCidr('192.168.1.7'), { family: 4, addr: Uint8Array.of(192, 168, 1, 7), prefixLen: 32 });
  assert.equal(parseCidr('2001:db8::/32').prefixLen, 32);
});
