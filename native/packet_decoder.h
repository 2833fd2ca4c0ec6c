// Ring-buffer records of bpf/capture.bpf.c (struct nt_packet_event + packet bytes) decoded into
// the columns of packet_columns.h, on the thread that drains the ring: JavaScript gets typed
// arrays, never an object per packet.
#ifndef NETTRAIL_PACKET_DECODER_H
#define NETTRAIL_PACKET_DECODER_H

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "packet_columns.h"

namespace nettrail {

enum PacketColumn : int {
#define NT_COLUMN_INDEX(name, bytes) kColumn_##name,
  NT_PACKET_COLUMNS(NT_COLUMN_INDEX)
#undef NT_COLUMN_INDEX
  kColumnCount
};

// Bytes per packet of each column.
inline constexpr size_t kColumnBytes[kColumnCount] = {
#define NT_COLUMN_BYTES(name, bytes) bytes,
    NT_PACKET_COLUMNS(NT_COLUMN_BYTES)
#undef NT_COLUMN_BYTES
};

// Each column of a batch, and its header and SACK areas, start 8-aligned.
inline size_t Align8(size_t n) { return (n + 7) & ~size_t(7); }

// The columns of one batch as they are filled.
class PacketColumnsBuilder {
 public:
  PacketColumnsBuilder();
  uint32_t count() const { return count_; }
  // Bytes the batch will take (to decide when to hand it over).
  size_t bytes() const { return bytes_; }
  // Bytes of the batch as packet_columns.h lays it out.
  size_t BatchBytes() const;
  // The batch written at `out` (BatchBytes() of room); the builder starts over empty.
  void TakeInto(uint8_t* out, uint32_t malformed, uint32_t unattributedFragments);
  // ... into a new vector.
  std::vector<uint8_t>* Take(uint32_t malformed, uint32_t unattributedFragments);

 private:
  friend class PacketDecoder;
  template <typename T>
  void Put(PacketColumn column, T value) {
    auto& bytes = columns_[column];
    size_t at = bytes.size();
    bytes.resize(at + sizeof(T));
    __builtin_memcpy(bytes.data() + at, &value, sizeof(T));
  }
  void PutBytes(PacketColumn column, const uint8_t* from, size_t length);

  std::vector<uint8_t> columns_[kColumnCount];
  std::vector<uint8_t> headers_;
  std::vector<nt_sack_block> sacks_;
  uint32_t count_ = 0;
  size_t bytes_ = 0;
};

class PacketDecoder {
 public:
  // Decodes one ring record (struct nt_packet_event + packet bytes) into `out`, with wall-clock
  // time = kernel monotonic time + clockOffsetNs; false (and nothing added) when it is malformed.
  bool Decode(const uint8_t* record, size_t size, int64_t clockOffsetNs, PacketColumnsBuilder& out);
  // Later fragments seen without their first fragment, since the last call.
  uint32_t TakeUnattributedFragments();

  // First fragments remembered for their later fragments' ports.
  static constexpr size_t kFragmentMemory = 4096;

 private:
  struct FragmentKey {
    uint8_t src[16];
    uint8_t dst[16];
    uint32_t id;
    uint8_t proto;
    bool operator==(const FragmentKey& other) const;
  };
  struct FragmentKeyHash {
    size_t operator()(const FragmentKey& key) const;
  };
  struct Ports {
    uint16_t sport, dport;
    std::list<FragmentKey>::iterator age;
  };
  void RememberFragment(const FragmentKey& key, uint16_t sport, uint16_t dport);

  std::unordered_map<FragmentKey, Ports, FragmentKeyHash> fragmentPorts_;
  std::list<FragmentKey> fragmentAges_;  // oldest first
  uint32_t unattributedFragments_ = 0;
};

// The packet id (packet_columns.h's packet_id) of what the drop tracer reads from a dropped skb
// too: fields NAT, routing and MSS clamping leave alone.
struct PacketInvariants {
  uint32_t proto, ipId, fragOffset, payloadLen, payloadHash;
  bool tcp;
  uint32_t seq, ack, flags, win, urgent, tsVal, tsEcr;
};
uint64_t PacketIdOf(const PacketInvariants& p);

}  // namespace nettrail

#endif  // NETTRAIL_PACKET_DECODER_H
