// Addresses and CIDR ranges (model/address.ts), checked against node's own
// parser, URL's RFC 5952 formatting and BlockList's subnet membership on
// random and hand-picked inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockList, isIP } from 'node:net';
import {
  canonicalAddress, fromMappedBytes, fromMappedText, isLoopbackHost, parseAddress, parseAddressRange, toMappedBytes,
} from '../../model/address.js';
import { pick } from '../support/api-fixture.js';
import { prng } from '../../bench/support/prng.js';

const SEED = 0xadd7e55;

/** Random text that looks like an address often enough to exercise both outcomes. */
function addressLike(random: () => number): string {
  const hex = () => Math.floor(random() * 0x10000).toString(16);
  const octet = () => String(pick(random, [0, 1, 9, 10, 99, 127, 192, 255, 256, 300, Math.floor(random() * 256)]));
  switch (Math.floor(random() * 6)) {
    case 0:
      return Array.from({ length: pick(random, [3, 4, 4, 4, 5]) }, octet).join('.');
    case 1:
      return Array.from({ length: pick(random, [7, 8, 8, 9]) }, hex).join(':');
    case 2: {
      const groups = Array.from({ length: 8 }, () => (random() < 0.5 ? '0' : hex()));
      const at = Math.floor(random() * 8);
      const length = 1 + Math.floor(random() * (8 - at));
      return `${groups.slice(0, at).join(':')}::${groups.slice(at + length).join(':')}`;
    }
    case 3:
      return `::ffff:${Array.from({ length: 4 }, octet).join('.')}`;
    case 4:
      return Array.from({ length: 1 + Math.floor(random() * 12) }, () => pick(random, [...'0123456789abcdefABCDEF.:% x-'])).join('');
    default:
      return pick(random, ['', ' 10.0.0.1', '10.0.0.1 ', '010.0.0.1', '1::2::3', ':::', '::', '::1', 'fe80::1%eth0', '[::1]', '1.2.3.4/8', '0x7f.0.0.1']);
  }
}

test('addresses: parsed as node parses them, and formatted as RFC 5952 (URL) does', (t) => {
  t.diagnostic(`seed ${SEED}`);
  const random = prng(SEED);
  let valid = 0;
  for (let i = 0; i < 20_000; i++) {
    const text = addressLike(random);
    const family = text.includes('%') ? 0 : isIP(text);
    const parsed = parseAddress(text);
    assert.equal(parsed === null ? 0 : parsed.length === 4 ? 4 : 6, family, JSON.stringify(text));
    if (family === 0) continue;
    valid++;
    const expected = family === 4 ? text : new URL(`http://[${text}]/`).hostname.slice(1, -1);
    const canonical = canonicalAddress(text)!;
    if (family === 6 && /^::ffff:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(expected)) {
      // IPv4-mapped: RFC 5952 section 5 writes the IPv4 part dotted, URL does not.
      assert.equal(new URL(`http://[${canonical}]/`).hostname.slice(1, -1), expected, text);
    } else {
      assert.equal(canonical, expected, JSON.stringify(text));
    }
    assert.equal(canonicalAddress(canonical), canonical, 'canonical text is a fixed point');
  }
  assert.ok(valid > 5000, `only ${valid} valid addresses`);
});

test('addresses: the IPv6 form (IPv4-mapped) takes what node does, as 16 bytes', (t) => {
  t.diagnostic(`seed ${SEED + 2}`);
  const random = prng(SEED + 2);
  let valid = 0;
  for (let i = 0; i < 20_000; i++) {
    const text = addressLike(random);
    const family = text.includes('%') ? 0 : isIP(text);
    if (family === 0) {
      assert.equal(toMappedBytes(text), null, JSON.stringify(text));
      continue;
    }
    valid++;
    const bytes = toMappedBytes(text)!;
    assert.equal(bytes.length, 16);
    if (family === 4) assert.deepEqual([...bytes], [...new Array(10).fill(0), 0xff, 0xff, ...text.split('.').map(Number)], text);
    assert.equal(fromMappedBytes(bytes), fromMappedText(canonicalAddress(text)!), JSON.stringify(text));
  }
  assert.ok(valid > 5000, `only ${valid} valid addresses`);
});

test('CIDR ranges contain exactly the addresses BlockList says they do', (t) => {
  t.diagnostic(`seed ${SEED + 1}`);
  const random = prng(SEED + 1);
  const v4 = () => Array.from({ length: 4 }, () => Math.floor(random() * 256)).join('.');
  const v6 = () => Array.from({ length: 8 }, () => (random() < 0.3 ? 0 : Math.floor(random() * 0x10000)).toString(16)).join(':');
  const toBigInt = (text: string) => toMappedBytes(text)!.reduce((value, byte) => (value << 8n) | BigInt(byte), 0n);
  for (let i = 0; i < 3000; i++) {
    const ipv6 = random() < 0.5;
    const network = ipv6 ? v6() : v4();
    const prefix = Math.floor(random() * (ipv6 ? 129 : 33));
    const range = parseAddressRange(`${network}/${prefix}`)!;
    assert.ok(range, `${network}/${prefix}`);
    const list = new BlockList();
    list.addSubnet(network, prefix, ipv6 ? 'ipv6' : 'ipv4');
    for (let j = 0; j < 5; j++) {
      // Addresses near the network and elsewhere.
      const address = random() < 0.5 ? (ipv6 ? v6() : v4()) : network.replace(/[0-9a-f]+$/, (last) => String(ipv6 ? (parseInt(last, 16) ^ 1).toString(16) : Number(last) ^ 1));
      const value = toBigInt(address);
      assert.equal(value >= range.first && value <= range.last, list.check(address, ipv6 ? 'ipv6' : 'ipv4'), `${address} in ${network}/${prefix}`);
    }
  }
  assert.deepEqual(parseAddressRange('10.0.0.1'), { first: 0xffff0a000001n, last: 0xffff0a000001n });
  for (const bad of ['10.0.0.0/33', '10.0.0.0/', '/8', '10.0.0.0/8/8', 'fd00::/129', '10.0.0.0/-1', '10.0.0.0/ 8', 'fe80::/10%eth0', 'x/8', '']) {
    assert.equal(parseAddressRange(bad), null, bad);
  }
});

test('loopback listen hosts', () => {
  for (const host of ['127.0.0.1', '127.0.0.2', '127.255.255.254', '::1', '::ffff:127.0.0.1', 'localhost']) assert.ok(isLoopbackHost(host), host);
  for (const host of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '126.255.255.255', '::2', 'fd00::1', 'example.com', 'localhost.example.com', '']) {
    assert.ok(!isLoopbackHost(host), host);
  }
});

test('addresses to bytes', () => {
  assert.deepEqual([...parseAddress('fd00::1')!], [0xfd, 0, ...Array(13).fill(0), 1]);
  assert.deepEqual([...parseAddress('::ffff:10.1.2.3')!], [...Array(10).fill(0), 0xff, 0xff, 10, 1, 2, 3]);
  assert.deepEqual([...parseAddress('1:2:3:4:5:6:7:8')!], [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
});
