// A plain-language cause, with what to look at next, for a drop: from its reason
// (a name read from the kernel's BTF), where the kernel dropped it (the location's
// and the stack's functions) and the packet itself.
import { TCP_FLAG_BIT } from '../../model/protocol.js';
import type { Proto } from '../../model/records.js';

export interface DropFacts {
  /** The reason's name (`NETFILTER_DROP`) or number. */
  reason: string;
  /** The reason's subsystem (`CORE`, `OPENVSWITCH`, ...) or null when unknown. */
  subsystem: string | null;
  /** Function names of the stack, innermost first, starting with the one that dropped the packet. */
  functions: string[];
  netns: string;
  /** The device the packet was on; '' when it had none (e.g. before routing on the transmit path). */
  iface: string;
  proto: Proto;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** TCP flag bits (0 for UDP). */
  tcpFlags: number;
  /** IPv4 TTL or IPv6 hop limit. */
  ttl: number;
}

/** A command run in the drop's namespace, as a shell line. */
export function inNetns(netns: string, command: string): string {
  if (netns === 'root') return command;
  const pid = /^pid:(\d+)$/.exec(netns);
  return pid ? `nsenter -t ${pid[1]} -n ${command}` : `ip netns exec ${netns} ${command}`;
}

/** Netfilter hooks by the IPv4/IPv6 functions that run them; the innermost on the stack tells the chain. */
const NETFILTER_CHAINS: Array<[RegExp, string]> = [
  [/^(ip_forward|ip6_forward)$/, 'FORWARD'],
  [/^(ip_local_deliver|ip6_input)$/, 'INPUT'],
  [/^(__ip_local_out|ip_local_out|__ip6_local_out|ip6_local_out)$/, 'OUTPUT'],
  [/^(ip_output|ip6_output)$/, 'POSTROUTING'],
  [/^(ip_rcv|ipv6_rcv|ip_list_rcv|ipv6_list_rcv)$/, 'PREROUTING'],
  [/^br_/, 'bridge'],
];

function netfilterChain(functions: string[]): string | null {
  for (const fn of functions) {
    for (const [pattern, chain] of NETFILTER_CHAINS) if (pattern.test(fn)) return chain;
  }
  return null;
}

/** `where`: "in namespace X on IF"; `inNs`: "in namespace X", for explanations that name the device themselves. */
type Explain = (f: DropFacts, where: string, inNs: string) => string;

const checksum: Explain = (f, where) =>
  `bad checksum ${where}: the packet was corrupted on the way, or checksum offload is misconfigured ` +
  `(see \`${inNetns(f.netns, `ethtool -k ${f.iface || 'DEV'}`)}\`)`;
const tcpState = (what: string): Explain => (_f, where) => `TCP dropped the segment ${where}: ${what}`;

/** Per reason (the kernel's name without SKB_DROP_REASON_): what happened and what to check. */
const EXPLANATIONS: Record<string, Explain> = {
  NETFILTER_DROP: (f, where) => {
    const chain = netfilterChain(f.functions);
    const rules = `\`${inNetns(f.netns, 'iptables-save')}\` or \`${inNetns(f.netns, 'nft list ruleset')}\``;
    if (chain === 'bridge') return `dropped by a bridge netfilter rule (ebtables / nft bridge family) ${where} (list the rules with ${rules})`;
    return `dropped by a netfilter rule${chain ? ` in the ${chain} chain` : ''} ${where} (list the rules with ${rules})`;
  },
  NO_SOCKET: (f, where) => {
    if (f.proto === 'udp') {
      return `nothing listens on UDP port ${f.dport} ${where}; the kernel answers with ICMP port unreachable ` +
        `(see \`${inNetns(f.netns, 'ss -lun')}\`)`;
    }
    if ((f.tcpFlags & (TCP_FLAG_BIT.SYN | TCP_FLAG_BIT.ACK)) === TCP_FLAG_BIT.SYN) {
      return `nothing listens on TCP port ${f.dport} ${where}; the kernel answers with a RST ` +
        `(see \`${inNetns(f.netns, 'ss -ltn')}\`)`;
    }
    return `no TCP connection ${f.src}:${f.sport} -> ${f.dst}:${f.dport} exists ${where} (closed, reset or never opened there, ` +
      'e.g. after a restart or a NAT/conntrack change); the kernel answers with a RST';
  },
  TC_INGRESS: (f, _where, inNs) =>
    `dropped by a TC program or filter on the ingress of ${f.iface || 'the device'} ${inNs} ` +
    `(see \`${inNetns(f.netns, `tc filter show dev ${f.iface || 'DEV'} ingress`)}\` and \`${inNetns(f.netns, 'bpftool net show')}\`)`,
  TC_EGRESS: (f, _where, inNs) =>
    `dropped by a TC program or filter on the egress of ${f.iface || 'the device'} ${inNs} ` +
    `(see \`${inNetns(f.netns, `tc filter show dev ${f.iface || 'DEV'} egress`)}\` and \`${inNetns(f.netns, 'bpftool net show')}\`)`,
  XDP: (f, _where, inNs) => `dropped by an XDP program on ${f.iface || 'the device'} ${inNs} (see \`${inNetns(f.netns, 'bpftool net show')}\`)`,
  BPF_CGROUP_EGRESS: (_f, where) => `rejected by a cgroup BPF egress program of the sending process ${where} (see \`bpftool cgroup tree\`)`,
  SOCKET_FILTER: (_f, where) => `rejected by a socket filter (SO_ATTACH_FILTER / BPF) on the receiving socket ${where}`,
  SECURITY_HOOK: (_f, where) => `rejected by a security module (SELinux, AppArmor, ...) ${where}`,
  IP_INHDR: (f, where) =>
    f.functions[0] === 'ip_forward' || f.functions[0] === 'ip6_forward'
      ? f.ttl <= 1
        ? `the TTL expired in transit ${where} (it arrived with TTL ${f.ttl}): a routing loop, or the sender's TTL is too low`
        : `the IP header was refused while forwarding ${where}`
      : `invalid IP header ${where} (bad version, length or options)`,
  IP_OUTNOROUTES: (f, where) => `no route to ${f.dst} ${where} (see \`${inNetns(f.netns, `ip route get ${f.dst}`)}\`)`,
  IP_INNOROUTES: (f, where) =>
    `no route for the received packet to ${f.dst} ${where} (see \`${inNetns(f.netns, `ip route get ${f.dst} from ${f.src} iif ${f.iface || 'DEV'}`)}\`)`,
  IP_INADDRERRORS: (f, where) => `invalid destination address ${f.dst} ${where} (e.g. a broadcast or unroutable address)`,
  IP_RPFILTER: (f, where) =>
    `the reverse-path filter refused it ${where}: a reply to ${f.src} would not leave through ${f.iface || 'the receiving device'} ` +
    `(see \`${inNetns(f.netns, 'sysctl net.ipv4.conf.all.rp_filter')}\` and the routes to ${f.src})`,
  IP_LOCAL_SOURCE: (f, where) => `the source address ${f.src} is one of this namespace's own ${where} (a loop or spoofing)`,
  IP_INVALID_SOURCE: (f, where) => `invalid source address ${f.src} ${where} (multicast, broadcast or martian)`,
  IP_LOCALNET: (_f, where) => `a 127.0.0.0/8 address on a non-loopback device ${where} (net.ipv4.conf.*.route_localnet is off)`,
  IP_INVALID_DEST: (f, where) => `invalid destination address ${f.dst} ${where}`,
  IP_NOPROTO: (_f, where) => `no handler for the packet's IP protocol ${where}`,
  OTHERHOST: (_f, where) => `the frame was addressed to another host's MAC address ${where} (e.g. promiscuous mode or a bridge/veth mix-up)`,
  UNICAST_IN_L2_MULTICAST: (_f, where) => `a unicast IP packet in a link-layer multicast/broadcast frame ${where}`,
  XFRM_POLICY: (_f, where) => `an IPsec (xfrm) policy refused it ${where} (see \`ip xfrm policy\`)`,
  IPV6DISABLED: (_f, where) => `IPv6 is disabled ${where} (net.ipv6.conf.*.disable_ipv6)`,
  PKT_TOO_SMALL: (_f, where) => `the packet is shorter than its headers say ${where} (truncated or malformed)`,
  HDR_TRUNC: (_f, where) => `truncated headers ${where}`,
  PKT_TOO_BIG: (f, where) =>
    `larger than the MTU of the way out and not fragmentable ${where} (DF set, or IPv6): check the MTUs along the path and PMTU discovery (ICMP must get through); see \`${inNetns(f.netns, 'ip link')}\``,
  TCP_CSUM: checksum,
  UDP_CSUM: checksum,
  IP_CSUM: checksum,
  ICMP_CSUM: checksum,
  SKB_CSUM: checksum,
  NEIGH_FAILED: (f, where) =>
    `the next hop's link-layer address could not be resolved (ARP / neighbour discovery failed) on ${f.iface || 'the way out'} ${where} ` +
    `(see \`${inNetns(f.netns, 'ip neigh show')}\`; is the next hop up and on that link?)`,
  NEIGH_QUEUEFULL: (f, where) => `too many packets were waiting for the next hop's ARP / neighbour resolution on ${f.iface || 'the way out'} ${where} (unres_qlen)`,
  NEIGH_CREATEFAIL: (_f, where) => `no neighbour entry could be created for the next hop ${where} (neighbour table full? gc_thresh3)`,
  NEIGH_DEAD: (_f, where) => `the next hop's neighbour entry was being removed ${where} (the device went down or the entry was flushed)`,
  NEIGH_HH_FILLFAIL: (_f, where) => `the link-layer header could not be built ${where}`,
  SOCKET_RCVBUFF: (f, where) =>
    `the receiving socket's buffer was full ${where}: the application on port ${f.dport} does not read fast enough, or SO_RCVBUF / net.core.rmem_max is too small`,
  SOCKET_BACKLOG: (_f, where) => `the socket's backlog was full ${where}: the application is busy holding the socket lock`,
  SOCKET_CLOSE: (_f, where) => `the socket was closed with unread data ${where}`,
  PROTO_MEM: (f, where) => `the ${f.proto.toUpperCase()} memory limit was reached ${where} (net.ipv4.${f.proto}_mem)`,
  TCP_LISTEN_OVERFLOW: (f, where) =>
    `the accept queue of the listener on port ${f.dport} was full ${where}: the application does not accept() fast enough (raise its listen backlog and net.core.somaxconn)`,
  TCP_FLAGS: tcpState('its flags are invalid for the connection state'),
  TCP_ZEROWINDOW: tcpState('it arrived while the receive window was zero (the receiving application is not reading)'),
  TCP_OLD_DATA: tcpState('it only carries data already received (a retransmission)'),
  TCP_OVERWINDOW: tcpState('it carries data beyond the receive window'),
  TCP_OFOMERGE: tcpState('its data was already in the out-of-order queue'),
  TCP_OFO_DROP: tcpState('out-of-order data beyond what the receive buffer can hold'),
  TCP_OFO_QUEUE_PRUNE: tcpState('the out-of-order queue was pruned under memory pressure'),
  TCP_RFC7323_PAWS: tcpState('its timestamp is older than the last one seen (PAWS, RFC 7323): often a reused port after a NAT or a restart'),
  TCP_RFC7323_PAWS_ACK: tcpState('its timestamp is older than the last one seen (PAWS on an ACK)'),
  TCP_RFC7323_TW_PAWS: tcpState('PAWS refused it for a TIME-WAIT connection (a reused port)'),
  TCP_RFC7323_TSECR: tcpState('its timestamp echo does not match what was sent'),
  TCP_OLD_SEQUENCE: tcpState('its sequence number is before the receive window'),
  TCP_INVALID_SEQUENCE: tcpState('its sequence number is outside the receive window'),
  TCP_INVALID_END_SEQUENCE: tcpState('its data ends outside the receive window'),
  TCP_INVALID_ACK_SEQUENCE: tcpState('it acknowledges data that was never sent'),
  TCP_OLD_ACK: tcpState('its ACK is older than one already seen'),
  TCP_TOO_OLD_ACK: tcpState('its ACK is too old'),
  TCP_ACK_UNSENT_DATA: tcpState('it acknowledges data not sent yet'),
  TCP_RESET: tcpState('it is a RST'),
  TCP_CLOSE: tcpState('the socket is closed'),
  TCP_INVALID_SYN: tcpState('an unexpected SYN on an established connection'),
  TCP_ABORT_ON_DATA: tcpState('data arrived for a socket already closed by the application (the connection is reset)'),
  TCP_FASTOPEN: tcpState('a TCP Fast Open cookie or data was refused'),
  TCP_MINTTL: (f, where) => `TCP dropped the segment ${where}: its TTL ${f.ttl} is below the socket's IP_MINTTL`,
  TCP_MD5NOTFOUND: tcpState('it lacks the TCP-MD5 signature the socket requires'),
  TCP_MD5UNEXPECTED: tcpState('it carries a TCP-MD5 signature the socket does not expect'),
  TCP_MD5FAILURE: tcpState('its TCP-MD5 signature is wrong'),
  TCP_AONOTFOUND: tcpState('it lacks the TCP-AO signature the socket requires'),
  TCP_AOUNEXPECTED: tcpState('it carries a TCP-AO signature the socket does not expect'),
  TCP_AOKEYNOTFOUND: tcpState('no TCP-AO key matches it'),
  TCP_AOFAILURE: tcpState('its TCP-AO signature is wrong'),
  TCP_AUTH_HDR: tcpState('its TCP authentication option is malformed'),
  QDISC_DROP: (f, _where, inNs) => `the queueing discipline of ${f.iface || 'the device'} dropped it ${inNs} (queue full) (see \`${inNetns(f.netns, `tc -s qdisc show dev ${f.iface || 'DEV'}`)}\`)`,
  QDISC_OVERLIMIT: (f, _where, inNs) => `the queueing discipline of ${f.iface || 'the device'} was over its limit ${inNs} (see \`${inNetns(f.netns, `tc -s qdisc show dev ${f.iface || 'DEV'}`)}\`)`,
  QDISC_CONGESTED: (f, _where, inNs) => `the queueing discipline of ${f.iface || 'the device'} dropped it for congestion (AQM) ${inNs}`,
  CPU_BACKLOG: (_f, where) => `the CPU's input backlog was full ${where} (net.core.netdev_max_backlog)`,
  FULL_RING: (f, _where, inNs) => `the ring buffer of ${f.iface || 'the device'} was full ${inNs}`,
  DEV_READY: (f, _where, inNs) => `${f.iface || 'the device'} was down or not ready ${inNs}`,
  DEV_HDR: (_f, where) => `the link-layer header is invalid ${where}`,
  NOMEM: (_f, where) => `the kernel was out of memory ${where}`,
  UNHANDLED_PROTO: (_f, where) => `no handler for the link-layer protocol ${where}`,
  QUEUE_PURGE: (_f, where) => `a queue was purged ${where} (a socket or device closing)`,
  NOT_SPECIFIED: (f, where) =>
    `the kernel freed the packet without a reason ${where}, in ${f.functions[0] ?? 'an unknown function'}: the location and the stack say which path it took`,
};

/** The cause of a drop in plain language, with what to check. */
export function dropCause(f: DropFacts): string {
  const inNs = `in namespace ${f.netns}`;
  const where = `${inNs}${f.iface ? ` on ${f.iface}` : ''}`;
  const explain = EXPLANATIONS[f.reason];
  if (explain) return explain(f, where, inNs);
  const at = f.functions[0] ? ` in ${f.functions[0]}` : '';
  if (/^\d+$/.test(f.reason)) {
    return `the kernel dropped it with reason ${f.reason}${f.subsystem ? ` of subsystem ${f.subsystem}` : ''}, which this kernel's BTF does not name, ${where}${at}`;
  }
  return `the kernel dropped it with reason ${f.reason}${f.subsystem && f.subsystem !== 'CORE' ? ` (${f.subsystem})` : ''} ${where}${at}`;
}
