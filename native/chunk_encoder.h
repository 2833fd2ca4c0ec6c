// Packets of decoded batches (packet_columns.h) grouped into packet chunks and encoded as the
// flow log's packet_chunks rows (RowBinary; the packed form in packet_chunks.h): the write path of
// flowlog/packets/chunk-writer.ts, which names the capture points. Each packet is staged when it is
// taken in (its fields, SACK blocks and header residual, as one row of its chunk's staging buffer),
// so the batch it came in can go back to the ring consumer at once.
#ifndef NETTRAIL_CHUNK_ENCODER_H
#define NETTRAIL_CHUNK_ENCODER_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <napi.h>

namespace nettrail {

class PacketChunkEncoder {
 public:
  // Takes packets [0, count) of `batch` (packet_columns.h's layout, `length` bytes), of capture node
  // `node` (the caller's number for it) and link type `linkType`. Returns nullptr, or what is wrong
  // with the batch (then nothing is taken).
  const char* Add(const uint8_t* batch, size_t length, uint32_t count, uint32_t node, uint16_t linkType);

  // Chunks so far, in the order they were made (Encode() writes them in this order).
  size_t ChunkCount() const { return chunks_.size(); }
  uint32_t NetnsInoOf(size_t chunk) const { return chunks_[chunk]->key.netnsIno; }
  uint32_t IfindexOf(size_t chunk) const { return chunks_[chunk]->key.ifindex; }
  uint32_t NodeOf(size_t chunk) const { return chunks_[chunk]->key.node; }
  // Bytes the staged packets take.
  size_t StagedBytes() const { return stagedBytes_; }

  // Appends a row per chunk to `out`: chunk k's namespace and interface are named netns[k] and
  // iface[k], its node nodes[NodeOf(k)]. Then starts over empty.
  void Encode(const std::vector<std::string>& nodes, const std::vector<std::string>& netns,
              const std::vector<std::string>& iface, std::vector<uint8_t>& out);

 private:
  // What a chunk's packets share. Made with memset so that comparing and hashing its bytes is exact.
  struct Key {
    uint8_t src[16];
    uint8_t dst[16];
    uint32_t netnsIno, ifindex, node;
    uint16_t sport, dport, linkType;
    uint8_t hook, direction, proto, pad;
    bool operator==(const Key& other) const;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const { return Hash(key); }
  };
  static uint32_t Hash(const Key& key);

  struct Chunk {
    Key key;
    int64_t earliest, latest;  // the times it may hold
    int64_t minTs, maxTs;      // the times it holds
    uint32_t packets = 0;
    uint32_t sackBlocks = 0;
    uint32_t headerBytes = 0;
    std::vector<uint8_t> rows;  // staged packets, one after the other
  };

  Chunk* ChunkOf(const Key& key, int64_t ts);
  void EncodeChunk(const Chunk& chunk, const std::string& node, const std::string& netns, const std::string& iface,
                   std::vector<uint8_t>& out) const;

  static constexpr size_t kRecentSlots = 256;  // a power of two
  // Staging buffers of encoded chunks kept for the next ones, up to this many bytes: buffers freed and
  // allocated again come back as fresh pages, which the kernel faults in and clears.
  static constexpr size_t kSpareBytes = 32 << 20;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  std::vector<std::vector<uint8_t>> spareRows_;
  size_t spareBytes_ = 0;
  // The chunk now taking each key's packets; chunks_ also holds those that are full or too far in time.
  std::unordered_map<Key, Chunk*, KeyHash> current_;
  // The chunk last chosen per slot of Hash(): packets of a chunk mostly come close together.
  Chunk* recent_[kRecentSlots] = {};
  size_t stagedBytes_ = 0;
};

// exports.PacketChunkEncoder: the class above for JavaScript (native/chunk-encoder.ts wraps it).
void InitChunkEncoder(Napi::Env env, Napi::Object exports);

}  // namespace nettrail

#endif  // NETTRAIL_CHUNK_ENCODER_H
