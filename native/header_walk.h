// Walks of packet header bytes shared by the decoder (packet_decoder.cc) and the chunk encoder
// (chunk_encoder.cc), as model/headers.ts walks them in TypeScript: where the IP and L4 headers
// start after an Ethernet header and its VLAN tags, and the TCP options.
#ifndef NETTRAIL_HEADER_WALK_H
#define NETTRAIL_HEADER_WALK_H

#include <cstddef>
#include <cstdint>

namespace nettrail {

inline uint16_t Be16(const uint8_t* at) { return uint16_t(at[0] << 8 | at[1]); }
inline uint32_t Be32(const uint8_t* at) { return uint32_t(at[0]) << 24 | uint32_t(at[1]) << 16 | uint32_t(at[2]) << 8 | at[3]; }

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;

constexpr uint8_t kOptionEnd = 0, kOptionNop = 1, kOptionMss = 2, kOptionWscale = 3, kOptionSackPerm = 4,
                  kOptionSack = 5, kOptionTimestamps = 8;

// Calls visit(kind, at, length) for each TCP option in bytes[from, to) of its kind's length (SACK:
// 2 + 8 per block), up to an end-of-list option or a malformed one (cut short, a length below 2).
// It reads only kinds and lengths, so `visit` may change the options' values.
template <typename Visit>
void WalkTcpOptions(const uint8_t* bytes, size_t from, size_t to, Visit visit) {
  size_t at = from;
  while (at < to) {
    uint8_t kind = bytes[at];
    if (kind == kOptionEnd) return;
    if (kind == kOptionNop) {
      at++;
      continue;
    }
    if (at + 1 >= to) return;
    uint8_t length = bytes[at + 1];
    if (length < 2 || at + length > to) return;
    bool known = (kind == kOptionMss && length == 4) || (kind == kOptionWscale && length == 3) ||
                 (kind == kOptionSackPerm && length == 2) || (kind == kOptionSack && (length - 2) % 8 == 0) ||
                 (kind == kOptionTimestamps && length == 10);
    if (known) visit(kind, at, size_t(length));
    at += length;
  }
}

// LINKTYPE_* of pcap (model/protocol.ts).
constexpr uint16_t kLinkTypeEthernet = 1;
constexpr uint16_t kLinkTypeRaw = 101;

// Where the IP and L4 headers of a packet start (model/headers.ts's HeaderLayout).
struct HeaderLayout {
  size_t ip;
  int ipVersion;
  uint8_t proto;
  bool hasL4;           // a TCP/UDP header follows (not another protocol, a later fragment, cut short)
  size_t l4;
  size_t l4HeaderLength;  // by the header's own account (TCP data offset), whether or not all of it was kept
};

// The layout of the packet in bytes[from, to) of link type `linkType`; false when it is not IP.
inline bool LayoutOf(const uint8_t* bytes, size_t from, size_t to, uint16_t linkType, HeaderLayout* out) {
  size_t ip;
  if (linkType == kLinkTypeEthernet) {
    ip = from + 14;
    if (to < ip) return false;
    for (int tags = 0; tags < 2 && to >= ip + 4; tags++) {
      uint16_t etherType = Be16(bytes + ip - 2);
      if (etherType != 0x8100 && etherType != 0x88a8) break;
      ip += 4;
    }
    uint16_t etherType = Be16(bytes + ip - 2);
    if (etherType != 0x0800 && etherType != 0x86dd) return false;
  } else if (linkType == kLinkTypeRaw) {
    ip = from;
  } else {
    return false;
  }
  if (to <= ip) return false;
  int version = bytes[ip] >> 4;
  bool hasL4 = true;
  size_t l4;
  uint8_t proto;
  if (version == 4) {
    if (to < ip + 20 || (bytes[ip] & 0x0f) < 5) return false;
    proto = bytes[ip + 9];
    hasL4 = (Be16(bytes + ip + 6) & 0x1fff) == 0;
    l4 = ip + (bytes[ip] & 0x0f) * 4;
  } else if (version == 6) {
    if (to < ip + 40) return false;
    proto = bytes[ip + 6];
    l4 = ip + 40;
  } else {
    return false;
  }
  size_t l4HeaderLength = 0;
  if (proto == kProtoTcp && hasL4 && to > l4 + 12) l4HeaderLength = (bytes[l4 + 12] >> 4) * 4;
  else if (proto == kProtoUdp && hasL4) l4HeaderLength = 8;
  *out = {ip, version, proto, hasL4 && l4HeaderLength > 0, l4, l4HeaderLength};
  return true;
}

}  // namespace nettrail

#endif  // NETTRAIL_HEADER_WALK_H
