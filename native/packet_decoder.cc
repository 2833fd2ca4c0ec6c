// See packet_decoder.h. The checks are those a record must pass to be stored; what passes is
// written once, column by column.
#include "packet_decoder.h"

#include <linux/types.h>

#include <cstring>

#include "../bpf/capture.h"
#include "header_walk.h"

namespace nettrail {

namespace {

constexpr size_t kEthAddrs = 12;
constexpr size_t kVlanTag = 4;
constexpr uint8_t kNextHeaderFragment = 44;
constexpr uint8_t kNextHeaderAuth = 51;

// FNV-1a over bytes, continuing from `hash`.
inline uint32_t Fnv(uint32_t hash, const void* data, size_t length) {
  const uint8_t* bytes = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < length; i++) hash = (hash ^ bytes[i]) * 0x01000193u;
  return hash;
}
constexpr uint32_t kFnvBasis = 0x811c9dc5u;

// The 16 address bytes of a column: IPv6 as it is, IPv4 as IPv4-mapped IPv6.
void ColumnAddress(const uint8_t* addr, uint8_t family, uint8_t out[16]) {
  if (family == NT_FAMILY_IPV6) {
    memcpy(out, addr, 16);
    return;
  }
  memset(out, 0, 10);
  out[10] = out[11] = 0xff;
  memcpy(out + 12, addr, 4);
}

struct TcpOptions {
  uint8_t present = 0;
  uint16_t mss = 0;
  uint8_t wscale = 0;
  uint32_t tsVal = 0, tsEcr = 0;
  uint8_t sackCount = 0;
  nt_sack_block sack[NT_SACK_MAX];
};

// The options a packet carries; a later option of a kind replaces an earlier one.
void ParseTcpOptions(const uint8_t* bytes, size_t from, size_t to, TcpOptions& o) {
  WalkTcpOptions(bytes, from, to, [&](uint8_t kind, size_t at, size_t length) {
    const uint8_t* v = bytes + at + 2;
    if (kind == kOptionMss) {
      o.present |= NT_OPT_MSS;
      o.mss = Be16(v);
    } else if (kind == kOptionWscale) {
      o.present |= NT_OPT_WSCALE;
      o.wscale = v[0];
    } else if (kind == kOptionSackPerm) {
      o.present |= NT_OPT_SACK_PERM;
    } else if (kind == kOptionSack) {
      o.present |= NT_OPT_SACK;
      o.sackCount = 0;
      for (size_t block = 0; block < (length - 2) / 8 && block < NT_SACK_MAX; block++) {
        o.sack[block] = {Be32(v + 8 * block), Be32(v + 8 * block + 4)};
        o.sackCount++;
      }
    } else if (kind == kOptionTimestamps) {
      o.present |= NT_OPT_TS_VAL | NT_OPT_TS_ECR;
      o.tsVal = Be32(v);
      o.tsEcr = Be32(v + 4);
    }
  });
}

// The IPv6 fragment header's identification and offset, walking the extension headers between l3 and l4.
bool Ipv6Fragment(const uint8_t* bytes, size_t l3, size_t l4, uint32_t* id, uint32_t* offset) {
  uint8_t next = bytes[l3 + 6];
  for (size_t at = l3 + 40; at + 8 <= l4;) {
    if (next == kNextHeaderFragment) {
      *id = Be32(bytes + at + 4);
      *offset = Be16(bytes + at + 2) >> 3;
      return true;
    }
    size_t length = next == kNextHeaderAuth ? (bytes[at + 1] + 2) * 4 : (bytes[at + 1] + 1) * 8;
    next = bytes[at];
    at += length;
  }
  return false;
}

}  // namespace

uint64_t PacketIdOf(const PacketInvariants& p) {
  uint32_t words[12] = {p.proto, p.ipId, p.fragOffset, p.payloadLen, p.payloadHash,
                        p.seq, p.ack, p.flags, p.win, p.urgent, p.tsVal, p.tsEcr};
  int count = p.tcp ? 12 : 5;
  uint32_t a = 0x811c9dc5u, b = 0x9747b28cu;
  for (int i = 0; i < count; i++) {
    for (int shift = 0; shift < 32; shift += 8) {
      uint32_t byte = (words[i] >> shift) & 0xff;
      a = (a ^ byte) * 0x01000193u;
      b = (b ^ byte) * 0x5bd1e995u;
      b ^= b >> 15;
    }
  }
  return uint64_t(a) << 32 | b;
}

PacketColumnsBuilder::PacketColumnsBuilder() {
  for (int c = 0; c < kColumnCount; c++) columns_[c].reserve(kColumnBytes[c] * 4096);
  headers_.reserve(256 * 4096);
}

void PacketColumnsBuilder::PutBytes(PacketColumn column, const uint8_t* from, size_t length) {
  auto& bytes = columns_[column];
  bytes.insert(bytes.end(), from, from + length);
}

size_t PacketColumnsBuilder::BatchBytes() const {
  size_t total = sizeof(nt_columns_header);
  for (int c = 0; c < kColumnCount; c++) total += Align8(kColumnBytes[c] * count_);
  return total + Align8(headers_.size()) + sacks_.size() * sizeof(nt_sack_block);
}

void PacketColumnsBuilder::TakeInto(uint8_t* out, uint32_t malformed, uint32_t unattributedFragments) {
  nt_columns_header header = {NT_COLUMNS_VERSION, count_, count_, malformed, unattributedFragments,
                              uint32_t(headers_.size()), uint32_t(sacks_.size()), 0};
  memcpy(out, &header, sizeof(header));
  size_t at = sizeof(nt_columns_header);
  for (int c = 0; c < kColumnCount; c++) {
    size_t bytes = kColumnBytes[c] * count_;
    if (bytes > 0) memcpy(out + at, columns_[c].data(), bytes);
    memset(out + at + bytes, 0, Align8(bytes) - bytes);
    at += Align8(bytes);
    columns_[c].clear();
  }
  if (!headers_.empty()) memcpy(out + at, headers_.data(), headers_.size());
  memset(out + at + headers_.size(), 0, Align8(headers_.size()) - headers_.size());
  at += Align8(headers_.size());
  if (!sacks_.empty()) memcpy(out + at, sacks_.data(), sacks_.size() * sizeof(nt_sack_block));
  headers_.clear();
  sacks_.clear();
  count_ = 0;
  bytes_ = 0;
}

std::vector<uint8_t>* PacketColumnsBuilder::Take(uint32_t malformed, uint32_t unattributedFragments) {
  auto* out = new std::vector<uint8_t>(BatchBytes());
  TakeInto(out->data(), malformed, unattributedFragments);
  return out;
}

bool PacketDecoder::FragmentKey::operator==(const FragmentKey& other) const {
  return id == other.id && proto == other.proto && memcmp(src, other.src, 16) == 0 && memcmp(dst, other.dst, 16) == 0;
}

size_t PacketDecoder::FragmentKeyHash::operator()(const FragmentKey& key) const {
  uint32_t h = Fnv(kFnvBasis, key.src, 16);
  h = Fnv(h, key.dst, 16);
  h = Fnv(h, &key.id, 4);
  return Fnv(h, &key.proto, 1);
}

void PacketDecoder::RememberFragment(const FragmentKey& key, uint16_t sport, uint16_t dport) {
  auto found = fragmentPorts_.find(key);
  if (found != fragmentPorts_.end()) {
    fragmentAges_.erase(found->second.age);
    fragmentPorts_.erase(found);
  }
  fragmentAges_.push_back(key);
  fragmentPorts_[key] = Ports{sport, dport, std::prev(fragmentAges_.end())};
  if (fragmentPorts_.size() > kFragmentMemory) {
    fragmentPorts_.erase(fragmentAges_.front());
    fragmentAges_.pop_front();
  }
}

uint32_t PacketDecoder::TakeUnattributedFragments() {
  uint32_t n = unattributedFragments_;
  unattributedFragments_ = 0;
  return n;
}

bool PacketDecoder::Decode(const uint8_t* record, size_t size, int64_t clockOffsetNs, PacketColumnsBuilder& out) {
  if (size < sizeof(nt_packet_event)) return false;
  nt_packet_event e;
  memcpy(&e, record, sizeof(e));
  if (e.hook != NT_HOOK_TC && e.hook != NT_HOOK_XDP) return false;
  if (e.direction != NT_DIR_INGRESS && e.direction != NT_DIR_EGRESS) return false;
  if (e.proto != kProtoTcp && e.proto != kProtoUdp) return false;
  if ((e.family != NT_FAMILY_IPV4 && e.family != NT_FAMILY_IPV6) || e.link_type != NT_LINK_ETHERNET) return false;
  size_t capLen = e.cap_len;
  size_t l3 = e.l3_offset, l4 = e.l4_offset, l4End = e.l4_end;
  if (sizeof(nt_packet_event) + capLen > size || l4End > capLen || l4 > l4End || l3 + 20 > l4) return false;
  if (e.frag != 0 && e.frag != NT_FRAG_FIRST && e.frag != NT_FRAG_LATER) return false;

  // The packet bytes, copied once into the header area, with a VLAN tag the device held outside
  // them put back where it belongs.
  const uint8_t* packet = record + sizeof(nt_packet_event);
  size_t headerAt = out.headers_.size();
  uint32_t wireLen = e.wire_len;
  if (e.vlan_proto != 0 && capLen >= kEthAddrs) {
    out.headers_.resize(headerAt + capLen + kVlanTag);
    uint8_t* to = out.headers_.data() + headerAt;
    memcpy(to, packet, kEthAddrs);
    to[kEthAddrs] = e.vlan_proto >> 8;
    to[kEthAddrs + 1] = e.vlan_proto & 0xff;
    to[kEthAddrs + 2] = e.vlan_tci >> 8;
    to[kEthAddrs + 3] = e.vlan_tci & 0xff;
    memcpy(to + kEthAddrs + kVlanTag, packet + kEthAddrs, capLen - kEthAddrs);
    l3 += kVlanTag;
    l4 += kVlanTag;
    l4End += kVlanTag;
    wireLen += kVlanTag;
    capLen += kVlanTag;
  } else {
    out.headers_.insert(out.headers_.end(), packet, packet + capLen);
  }
  const uint8_t* bytes = out.headers_.data() + headerAt;

  uint8_t src[16], dst[16];
  ColumnAddress(e.saddr, e.family, src);
  ColumnAddress(e.daddr, e.family, dst);
  uint16_t sport = e.sport, dport = e.dport;
  uint32_t ipId = e.family == NT_FAMILY_IPV4 ? e.ip_id : 0;
  uint32_t fragmentId = ipId, fragOffset = 0;
  if (e.frag != 0) {
    if (e.family == NT_FAMILY_IPV4) {
      fragOffset = Be16(bytes + l3 + 6) & 0x1fff;
    } else if (!Ipv6Fragment(bytes, l3, l4, &fragmentId, &fragOffset)) {
      fragmentId = 0;
      fragOffset = 0;
    }
    FragmentKey key;
    memcpy(key.src, src, 16);
    memcpy(key.dst, dst, 16);
    key.id = fragmentId;
    key.proto = e.proto;
    if (e.frag == NT_FRAG_FIRST) {
      RememberFragment(key, sport, dport);
    } else {
      auto found = fragmentPorts_.find(key);
      if (found != fragmentPorts_.end()) {
        sport = found->second.sport;
        dport = found->second.dport;
      } else {
        unattributedFragments_++;
      }
    }
  }

  bool hasL4 = e.frag != NT_FRAG_LATER;
  bool tcp = e.proto == kProtoTcp;
  TcpOptions options;
  if (tcp && hasL4) ParseTcpOptions(bytes, l4 + 20, l4End, options);
  PacketInvariants invariants = {e.proto, fragmentId, fragOffset, e.payload_len, e.payload_hash, tcp && hasL4,
                                 e.seq, e.ack, e.tcp_flags, e.window, tcp && hasL4 ? Be16(bytes + l4 + 18) : 0u,
                                 options.tsVal, options.tsEcr};

  out.Put(kColumn_ts, int64_t(e.ts_ns) + clockOffsetNs);
  out.Put(kColumn_packet_id, PacketIdOf(invariants));
  out.PutBytes(kColumn_src, src, 16);
  out.PutBytes(kColumn_dst, dst, 16);
  out.Put(kColumn_netns_ino, e.netns_ino);
  out.Put(kColumn_ifindex, e.ifindex);
  out.Put(kColumn_seq, e.seq);
  out.Put(kColumn_ack, e.ack);
  out.Put(kColumn_len, e.payload_len);
  out.Put(kColumn_wire_len, wireLen);
  out.Put(kColumn_ts_val, options.tsVal);
  out.Put(kColumn_ts_ecr, options.tsEcr);
  out.Put(kColumn_header_at, uint32_t(headerAt));
  out.Put(kColumn_sack_at, uint32_t(out.sacks_.size()));
  out.Put(kColumn_sport, sport);
  out.Put(kColumn_dport, dport);
  out.Put(kColumn_win, e.window);
  out.Put(kColumn_ip_id, uint16_t(ipId));
  out.Put(kColumn_mss, options.mss);
  out.Put(kColumn_header_len, uint16_t(capLen));
  out.Put(kColumn_hook, e.hook);
  out.Put(kColumn_direction, e.direction);
  out.Put(kColumn_proto, e.proto);
  out.Put(kColumn_flags, e.tcp_flags);
  out.Put(kColumn_options, options.present);
  out.Put(kColumn_wscale, options.wscale);
  out.Put(kColumn_sack_count, options.sackCount);
  out.Put(kColumn_fragment, e.frag);
  out.sacks_.insert(out.sacks_.end(), options.sack, options.sack + options.sackCount);
  out.count_++;
  out.bytes_ += 128 + capLen;
  return true;
}

}  // namespace nettrail
