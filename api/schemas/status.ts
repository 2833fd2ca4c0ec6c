// The capture status: attached points and their counters, the drop tracer's
// counters, the flow-log writer's state.
import { Type, type Static } from 'typebox';

/** Kernel counters of a capture point (struct nt_point_stats); every packet a program sees lands in one. */
const KernelCounters = {
  events: Type.Optional(Type.Integer({ description: 'written to the ring buffer' })),
  filtered: Type.Optional(Type.Integer({ description: 'left out by the capture filter' })),
  not_ip: Type.Optional(Type.Integer()),
  other_l4: Type.Optional(Type.Integer({ description: 'IP but neither TCP nor UDP' })),
};

const ConntrackCounters = {
  events: Type.Integer({ description: 'conntrack event messages received (NEW, UPDATE, DESTROY)' }),
  dumps: Type.Integer({ description: 'dumps of a table completed' }),
  overflows: Type.Integer({ description: 'times a receive buffer overflowed (ENOBUFS): events were lost, and a dump followed each' }),
};

/** NAT tracking's sources (nat-tracker/): conntrack readers summed over the namespaces tracked now and per namespace, IPVS, OVS. */
export const NatTrackingSchema = Type.Object({
  conntrack: Type.Object({
    namespaces: Type.Integer({ description: 'namespaces whose conntrack table is read' }),
    ...ConntrackCounters,
    per_namespace: Type.Array(Type.Object({ netns: Type.String(), ...ConntrackCounters })),
  }),
  ipvs: Type.Object({
    available: Type.Boolean({ description: 'the kernel has IPVS: /proc/net/ip_vs_conn is read in every namespace' }),
    namespaces: Type.Integer(),
    failing: Type.Array(Type.Object({ netns: Type.String(), error: Type.String() }), { description: 'namespaces whose last read failed' }),
  }),
  ovs: Type.Array(
    Type.Object({ rundir: Type.String(), error: Type.Union([Type.String(), Type.Null()], { description: 'why its last poll failed; null: it reads' }) }),
    { description: 'each ovs-vswitchd run directory polled (--ovs-rundir)' },
  ),
});

/** The drop tracer's counters (capture/drops/tracer.ts): every kfree_skb in a traced namespace counts in `seen` and one other. */
export const DropTracingSchema = Type.Object({
  namespaces: Type.Integer({ description: 'namespaces traced' }),
  seen: Type.Integer({ description: 'kfree_skb calls in traced namespaces: every free, not every loss' }),
  reported: Type.Integer({ description: 'frees reported, whatever their fate (copies and consumed packets included): see fates for the losses' }),
  ignored: Type.Integer({ description: 'a reason in ignored_reasons (no loss of a packet in flight)' }),
  unparsed: Type.Integer({ description: 'no IPv4/IPv6 TCP/UDP header (ARP, ICMP, ...)' }),
  filtered: Type.Integer({ description: 'left out by the capture filter' }),
  rate_limited: Type.Integer(),
  ring_full: Type.Integer(),
  malformed: Type.Integer({ description: 'events user space could not decode' }),
  rate_limit: Type.Integer({ description: 'events per second per CPU; 0: none' }),
  ignored_reasons: Type.Array(Type.String()),
  fates: Type.Optional(
    Type.Object(
      {
        lost: Type.Integer({ description: 'no capture point saw the packet after the drop: the losses' }),
        copy: Type.Integer({ description: 'the same packet went on elsewhere' }),
        consumed: Type.Integer({ description: 'its endpoint processed it, then the kernel freed it' }),
        unknown: Type.Integer({ description: 'not decided (the store could not be asked); counted as lost' }),
      },
      { description: 'reported drops whose fate this process decided, per fate (docs/drops.md, "Fate")' },
    ),
  ),
});

/** The flow-log writer's state per table (flowlog/writer.ts): rows accepted, written, refused, buffered; failing inserts. */
export const StoreStatusSchema = Type.Object({
  failing: Type.Boolean({ description: 'inserts into some table fail: its rows stay buffered (up to the bound, then are counted dropped) and are retried' }),
  tables: Type.Record(
    Type.String(),
    Type.Object({
      accepted: Type.Integer(),
      written: Type.Integer(),
      dropped: Type.Integer({ description: 'refused: the buffer was full' }),
      failures: Type.Integer({ description: 'failed inserts (retried)' }),
      consecutive_failures: Type.Integer({ description: 'failed inserts since the last that succeeded; > 0 while the store refuses this table' }),
      buffered_rows: Type.Integer(),
      buffered_bytes: Type.Integer(),
    }),
  ),
});

export const CaptureStatusSchema = Type.Object({
  capturing: Type.Boolean(),
  points: Type.Array(
    Type.Object({
      node: Type.String(),
      netns: Type.String(),
      iface: Type.String(),
      ifindex: Type.Integer(),
      hooks: Type.Array(Type.String()),
      packets: Type.Integer(),
      lost: Type.Integer(),
      ...KernelCounters,
      malformed: Type.Optional(Type.Integer({ description: 'truncated or inconsistent headers' })),
      events_per_s: Type.Optional(Type.Number({ description: 'per second since an earlier read of the status 1 to 60 s before; absent at a first read' })),
      lost_per_s: Type.Optional(Type.Number({ description: 'per second since an earlier read of the status 1 to 60 s before; absent at a first read' })),
      by_hook: Type.Optional(Type.Array(Type.Object({ hook: Type.String(), ...KernelCounters, lost: Type.Integer(), malformed: Type.Integer() }))),
    }),
  ),
  packets: Type.Integer(),
  lost: Type.Integer(),
  malformed: Type.Integer(),
  skipped: Type.Array(Type.Object({ netns: Type.String(), iface: Type.String(), reason: Type.String() })),
  ...KernelCounters,
  events_per_s: Type.Optional(Type.Number({ description: 'per second since an earlier read of the status 1 to 60 s before; absent at a first read' })),
  lost_per_s: Type.Optional(Type.Number({ description: 'per second since an earlier read of the status 1 to 60 s before; absent at a first read' })),
  undecodable: Type.Optional(Type.Integer({ description: 'ring-buffer records user space could not decode (part of malformed)' })),
  unattributed_fragments: Type.Optional(Type.Integer({ description: 'later IP fragments whose first fragment was not seen' })),
  ring_bytes: Type.Optional(Type.Integer()),
  snaplen: Type.Optional(Type.Integer({ description: '0: the L2-L4 headers only' })),
  xdp: Type.Optional(Type.String()),
  filter: Type.Optional(Type.Object({ nets: Type.Array(Type.String()), ports: Type.Array(Type.Integer()), protos: Type.Array(Type.String()) })),
  drops: Type.Optional(DropTracingSchema),
  nat: Type.Optional(NatTrackingSchema),
  store: Type.Optional(StoreStatusSchema),
});

export type DropTracingJson = Static<typeof DropTracingSchema>;
export type NatTrackingJson = Static<typeof NatTrackingSchema>;
export type CaptureStatusJson = Static<typeof CaptureStatusSchema>;
