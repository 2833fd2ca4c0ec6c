// See chunk_encoder.h. The residual transform is flowlog/packets/residual.ts's (the reader undoes it
// there): every header byte the packet's columns determine is XORed with the value they give it.
#include "chunk_encoder.h"

#include <algorithm>
#include <cstring>

#include "header_walk.h"
#include "packet_chunks.h"
#include "packet_columns.h"
#include "packet_decoder.h"

namespace nettrail {

namespace {

constexpr size_t kPackedFieldBytes[] = {
#define NT_PACKED_FIELD_BYTES(name, bytes) bytes,
    NT_PACKED_FIELDS(NT_PACKED_FIELD_BYTES)
#undef NT_PACKED_FIELD_BYTES
};
enum PackedField : int {
#define NT_PACKED_FIELD_INDEX(name, bytes) kPacked_##name,
  NT_PACKED_FIELDS(NT_PACKED_FIELD_INDEX)
#undef NT_PACKED_FIELD_INDEX
  kPackedFieldCount
};
// Bytes per packet of the fixed-width fields.
constexpr size_t kPackedBytes = [] {
  size_t sum = 0;
  for (size_t bytes : kPackedFieldBytes) sum += bytes;
  return sum;
}();

// A packet as it is staged, followed by its SACK blocks, then its header residual (padded to 8 bytes).
struct StagedPacket {
  int64_t ts;
  uint64_t packetId;
  uint32_t seq, ack, len, wireLen, tsVal, tsEcr;
  uint16_t ipId, win, mss, headerLen;
  uint8_t flags, present, wscale, sackBlocks;
  uint32_t pad;
};
static_assert(sizeof(StagedPacket) % 8 == 0, "staged rows stay 8-aligned");

// A batch's columns (packet_columns.h), where they are.
struct BatchView {
  const uint8_t* column[kColumnCount];
  const uint8_t* headers;
  const nt_sack_block* sacks;
  uint32_t headerBytes, sackBlocks;

  template <typename T>
  T At(PacketColumn c, size_t i) const {
    T value;
    memcpy(&value, column[c] + sizeof(T) * i, sizeof(T));
    return value;
  }
};

const char* ViewOf(const uint8_t* batch, size_t length, uint32_t count, BatchView* view) {
  nt_columns_header header;
  if (length < sizeof(header)) return "packet batch shorter than its header";
  memcpy(&header, batch, sizeof(header));
  if (header.version != NT_COLUMNS_VERSION) return "packet batch of another version";
  if (count > header.count || header.count > header.capacity) return "packet count beyond the batch's";
  size_t at = sizeof(header);
  for (int c = 0; c < kColumnCount; c++) {
    view->column[c] = batch + at;
    at += Align8(kColumnBytes[c] * size_t(header.capacity));
  }
  view->headers = batch + at;
  at += Align8(header.header_bytes);
  view->sacks = reinterpret_cast<const nt_sack_block*>(batch + at);
  at += sizeof(nt_sack_block) * size_t(header.sack_blocks);
  if (at > length) return "packet batch cut short";
  view->headerBytes = header.header_bytes;
  view->sackBlocks = header.sack_blocks;
  for (size_t i = 0; i < count; i++) {
    if (size_t(view->At<uint32_t>(kColumn_header_at, i)) + view->At<uint16_t>(kColumn_header_len, i) > header.header_bytes)
      return "a packet's header bytes beyond the header area";
    uint8_t blocks = view->At<uint8_t>(kColumn_sack_count, i);
    if (blocks > NT_SACK_MAX || size_t(view->At<uint32_t>(kColumn_sack_at, i)) + blocks > header.sack_blocks)
      return "a packet's SACK blocks beyond the SACK area";
  }
  return nullptr;
}

// The column values the residual transform derives header bytes from.
struct HeaderColumns {
  const uint8_t* src;
  const uint8_t* dst;
  uint32_t sport, dport, ipId, seq, ack, flags, win, len;
  uint8_t present;
  uint32_t mss, wscale, tsVal, tsEcr;
  const nt_sack_block* sack;
  size_t sackCount;
};

// Bytes past `to` were not kept: each helper checks its field's end once, and byte by byte only for a
// field cut short.
void Xor8(uint8_t* b, size_t at, size_t to, uint32_t value) {
  if (at < to) b[at] ^= uint8_t(value);
}
void Xor16(uint8_t* b, size_t at, size_t to, uint32_t value) {
  if (at + 2 <= to) {
    b[at] ^= uint8_t(value >> 8);
    b[at + 1] ^= uint8_t(value);
  } else {
    Xor8(b, at, to, value >> 8);
  }
}
void Xor32(uint8_t* b, size_t at, size_t to, uint32_t value) {
  if (at + 4 <= to) {
    b[at] ^= uint8_t(value >> 24);
    b[at + 1] ^= uint8_t(value >> 16);
    b[at + 2] ^= uint8_t(value >> 8);
    b[at + 3] ^= uint8_t(value);
  } else {
    Xor16(b, at, to, value >> 16);
    Xor16(b, at + 2, to, value);
  }
}
void XorBytes(uint8_t* b, size_t at, size_t to, const uint8_t* value, size_t length) {
  for (size_t i = at; i < to && i < at + length; i++) b[i] ^= value[i - at];
}

// Adds the 16-bit big-endian words of bytes[from, to) to a ones'-complement sum.
uint32_t AddWords(uint32_t sum, const uint8_t* b, size_t from, size_t to) {
  for (size_t i = from; i < to; i += 2) sum += uint32_t(b[i]) << 8 | (i + 1 < to ? b[i + 1] : 0);
  return sum;
}
uint32_t Fold(uint32_t sum) {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

// XORs, in place, every byte of b[0, to) the columns determine with the value they give it.
void XorColumnBytes(uint8_t* b, size_t to, uint16_t linkType, const HeaderColumns& c) {
  HeaderLayout layout;
  if (!LayoutOf(b, 0, to, linkType, &layout)) return;
  size_t ip = layout.ip, l4 = layout.l4;
  uint32_t l4Length = uint32_t(layout.l4HeaderLength) + c.len;
  if (layout.ipVersion == 4) {
    size_t headerLength = (b[ip] & 0x0f) * 4;
    // Without an L4 header the total length is not known from the columns and stays as it is.
    uint32_t totalLength = layout.hasL4 ? (headerLength + l4Length) & 0xffff : Be16(b + ip + 2);
    if (to >= ip + headerLength) {
      uint32_t sum = totalLength + (c.ipId & 0xffff);
      sum = AddWords(sum, b, ip, ip + 2);
      sum = AddWords(sum, b, ip + 6, ip + 10);
      sum = AddWords(sum, c.src, 12, 16);
      sum = AddWords(sum, c.dst, 12, 16);
      sum = AddWords(sum, b, ip + 20, ip + headerLength);
      Xor16(b, ip + 10, to, ~Fold(sum) & 0xffff);
    }
    if (layout.hasL4) Xor16(b, ip + 2, to, totalLength);
    Xor16(b, ip + 4, to, c.ipId);
    XorBytes(b, ip + 12, to, c.src + 12, 4);
    XorBytes(b, ip + 16, to, c.dst + 12, 4);
  } else {
    if (layout.hasL4) Xor16(b, ip + 4, to, l4Length);
    XorBytes(b, ip + 8, to, c.src, 16);
    XorBytes(b, ip + 24, to, c.dst, 16);
  }
  if (!layout.hasL4) return;
  Xor16(b, l4, to, c.sport);
  Xor16(b, l4 + 2, to, c.dport);
  // The L4 checksum as checksum offload leaves it: the folded pseudo-header sum.
  size_t from = layout.ipVersion == 4 ? 12 : 0;
  uint32_t pseudo = Fold(AddWords(AddWords(0, c.src, from, 16), c.dst, from, 16) + layout.proto + (l4Length >> 16) + (l4Length & 0xffff));
  if (layout.proto == kProtoUdp) {
    Xor16(b, l4 + 4, to, l4Length);
    Xor16(b, l4 + 6, to, pseudo);
    return;
  }
  Xor32(b, l4 + 4, to, c.seq);
  Xor32(b, l4 + 8, to, c.ack);
  Xor8(b, l4 + 13, to, c.flags);
  Xor16(b, l4 + 14, to, c.win);
  Xor16(b, l4 + 16, to, pseudo);
  // An option's value is XORed with the columns' (0 when they say the packet has none).
  WalkTcpOptions(b, l4 + 20, std::min(to, l4 + layout.l4HeaderLength), [&](uint8_t kind, size_t at, size_t length) {
    size_t end = at + length;
    if (kind == kOptionMss) {
      Xor16(b, at + 2, end, c.present & NT_OPT_MSS ? c.mss : 0);
    } else if (kind == kOptionWscale) {
      Xor8(b, at + 2, end, c.present & NT_OPT_WSCALE ? c.wscale : 0);
    } else if (kind == kOptionSack && (c.present & NT_OPT_SACK)) {
      for (size_t i = 0; i < (length - 2) / 8 && i < c.sackCount; i++) {
        Xor32(b, at + 2 + 8 * i, end, c.sack[i].left);
        Xor32(b, at + 6 + 8 * i, end, c.sack[i].right);
      }
    } else if (kind == kOptionTimestamps) {
      Xor32(b, at + 2, end, c.present & NT_OPT_TS_VAL ? c.tsVal : 0);
      Xor32(b, at + 6, end, c.present & NT_OPT_TS_ECR ? c.tsEcr : 0);
    }
  });
}

template <typename T>
void Put(std::vector<uint8_t>& out, T value) {
  size_t at = out.size();
  out.resize(at + sizeof(T));
  memcpy(out.data() + at, &value, sizeof(T));
}

size_t VarUIntSize(uint64_t n) {
  size_t size = 1;
  while (n >= 0x80) {
    n >>= 7;
    size++;
  }
  return size;
}

uint8_t* PutVarUInt(uint8_t* at, uint64_t n) {
  while (n >= 0x80) {
    *at++ = uint8_t(n) | 0x80;
    n >>= 7;
  }
  *at++ = uint8_t(n);
  return at;
}

void PutString(std::vector<uint8_t>& out, const std::string& text) {
  uint8_t length[10];
  out.insert(out.end(), length, PutVarUInt(length, text.size()));
  out.insert(out.end(), text.begin(), text.end());
}

// Writes residual[0, length) as its XOR with the previous packet's, prev[0, prevLength), in groups of 8
// bytes: a mask byte (bit j: byte j is not 0), then the bytes that are not 0. Returns where it ends.
uint8_t* PackResidual(uint8_t* out, const uint8_t* residual, size_t length, const uint8_t* prev, size_t prevLength) {
  size_t common = std::min(length, prevLength);
  size_t g = 0;
  for (; g + 8 <= common; g += 8) {
    uint64_t a, b;
    memcpy(&a, residual + g, 8);
    memcpy(&b, prev + g, 8);
    uint64_t x = a ^ b;
    uint8_t* mask = out++;
    *mask = 0;
    for (int j = 0; x != 0; j++, x >>= 8) {
      if (uint8_t(x) != 0) {
        *mask |= uint8_t(1 << j);
        *out++ = uint8_t(x);
      }
    }
  }
  for (; g < length; g += 8) {
    uint8_t* mask = out++;
    *mask = 0;
    for (size_t j = g; j < g + 8 && j < length; j++) {
      uint8_t byte = j < common ? residual[j] ^ prev[j] : residual[j];
      if (byte != 0) {
        *mask |= uint8_t(1 << (j - g));
        *out++ = byte;
      }
    }
  }
  return out;
}

}  // namespace

bool PacketChunkEncoder::Key::operator==(const Key& other) const { return memcmp(this, &other, sizeof(Key)) == 0; }

uint32_t PacketChunkEncoder::Hash(const Key& key) {
  uint64_t words[sizeof(Key) / 8];
  static_assert(sizeof(Key) % 8 == 0, "a key is whole 64-bit words");
  memcpy(words, &key, sizeof(Key));
  uint64_t h = 0;
  for (uint64_t w : words) h = (h ^ w) * 0x9e3779b97f4a7c15ull;
  return uint32_t(h >> 32) ^ uint32_t(h);
}

PacketChunkEncoder::Chunk* PacketChunkEncoder::ChunkOf(const Key& key, int64_t ts) {
  uint32_t hash = Hash(key);
  Chunk*& recent = recent_[hash & (kRecentSlots - 1)];
  auto fits = [&](const Chunk* c) { return ts >= c->earliest && ts <= c->latest && c->packets < NT_CHUNK_MAX_PACKETS; };
  if (recent != nullptr && recent->key == key && fits(recent)) return recent;
  Chunk*& current = current_[key];
  if (current == nullptr || !fits(current)) {
    // None yet, or too far apart in time, or full: a new chunk takes the packets to come.
    chunks_.push_back(std::make_unique<Chunk>());
    current = chunks_.back().get();
    if (!spareRows_.empty()) {
      current->rows = std::move(spareRows_.back());
      spareRows_.pop_back();
      spareBytes_ -= current->rows.capacity();
    }
    current->key = key;
    current->earliest = ts - NT_CHUNK_SPAN_NS;
    current->latest = ts + NT_CHUNK_SPAN_NS;
    current->minTs = current->maxTs = ts;
  }
  return recent = current;
}

const char* PacketChunkEncoder::Add(const uint8_t* batch, size_t length, uint32_t count, uint32_t node, uint16_t linkType) {
  BatchView v;
  if (const char* wrong = ViewOf(batch, length, count, &v)) return wrong;
  Key key;
  memset(&key, 0, sizeof(key));
  key.node = node;
  key.linkType = linkType;
  for (size_t i = 0; i < count; i++) {
    memcpy(key.src, v.column[kColumn_src] + 16 * i, 16);
    memcpy(key.dst, v.column[kColumn_dst] + 16 * i, 16);
    key.netnsIno = v.At<uint32_t>(kColumn_netns_ino, i);
    key.ifindex = v.At<uint32_t>(kColumn_ifindex, i);
    key.sport = v.At<uint16_t>(kColumn_sport, i);
    key.dport = v.At<uint16_t>(kColumn_dport, i);
    key.hook = v.At<uint8_t>(kColumn_hook, i);
    key.direction = v.At<uint8_t>(kColumn_direction, i);
    key.proto = v.At<uint8_t>(kColumn_proto, i);
    int64_t ts = v.At<int64_t>(kColumn_ts, i);
    Chunk& chunk = *ChunkOf(key, ts);

    StagedPacket p;
    p.ts = ts;
    p.packetId = v.At<uint64_t>(kColumn_packet_id, i);
    p.seq = v.At<uint32_t>(kColumn_seq, i);
    p.ack = v.At<uint32_t>(kColumn_ack, i);
    p.len = v.At<uint32_t>(kColumn_len, i);
    p.wireLen = v.At<uint32_t>(kColumn_wire_len, i);
    p.tsVal = v.At<uint32_t>(kColumn_ts_val, i);
    p.tsEcr = v.At<uint32_t>(kColumn_ts_ecr, i);
    p.ipId = v.At<uint16_t>(kColumn_ip_id, i);
    p.win = v.At<uint16_t>(kColumn_win, i);
    p.mss = v.At<uint16_t>(kColumn_mss, i);
    p.headerLen = v.At<uint16_t>(kColumn_header_len, i);
    p.flags = v.At<uint8_t>(kColumn_flags, i);
    p.present = v.At<uint8_t>(kColumn_options, i);
    p.wscale = v.At<uint8_t>(kColumn_wscale, i);
    p.sackBlocks = v.At<uint8_t>(kColumn_sack_count, i);
    p.pad = 0;
    const nt_sack_block* sacks = v.sacks + v.At<uint32_t>(kColumn_sack_at, i);
    size_t rowBytes = sizeof(StagedPacket) + sizeof(nt_sack_block) * p.sackBlocks + Align8(p.headerLen);
    size_t at = chunk.rows.size();
    chunk.rows.resize(at + rowBytes);
    uint8_t* row = chunk.rows.data() + at;
    memcpy(row, &p, sizeof(p));
    memcpy(row + sizeof(p), sacks, sizeof(nt_sack_block) * p.sackBlocks);
    uint8_t* residual = row + sizeof(p) + sizeof(nt_sack_block) * p.sackBlocks;
    memcpy(residual, v.headers + v.At<uint32_t>(kColumn_header_at, i), p.headerLen);
    HeaderColumns columns = {key.src, key.dst, key.sport, key.dport, p.ipId, p.seq, p.ack, p.flags, p.win, p.len,
                             p.present, p.mss, p.wscale, p.tsVal, p.tsEcr, sacks, p.sackBlocks};
    XorColumnBytes(residual, p.headerLen, linkType, columns);

    chunk.packets++;
    chunk.sackBlocks += p.sackBlocks;
    chunk.headerBytes += p.headerLen;
    chunk.minTs = std::min(chunk.minTs, ts);
    chunk.maxTs = std::max(chunk.maxTs, ts);
    stagedBytes_ += rowBytes;
  }
  return nullptr;
}

void PacketChunkEncoder::Encode(const std::vector<std::string>& nodes, const std::vector<std::string>& netns,
                                const std::vector<std::string>& iface, std::vector<uint8_t>& out) {
  for (size_t k = 0; k < chunks_.size(); k++) {
    Chunk& chunk = *chunks_[k];
    EncodeChunk(chunk, nodes[chunk.key.node], netns[k], iface[k], out);
    if (spareBytes_ + chunk.rows.capacity() <= kSpareBytes) {
      chunk.rows.clear();
      spareBytes_ += chunk.rows.capacity();
      spareRows_.push_back(std::move(chunk.rows));
    }
  }
  chunks_.clear();
  current_.clear();
  std::fill(std::begin(recent_), std::end(recent_), nullptr);
  stagedBytes_ = 0;
}

void PacketChunkEncoder::EncodeChunk(const Chunk& chunk, const std::string& node, const std::string& netns,
                                     const std::string& iface, std::vector<uint8_t>& out) const {
  const Key& key = chunk.key;
  size_t n = chunk.packets;
  PutString(out, node);
  PutString(out, netns);
  Put<uint32_t>(out, key.netnsIno);
  PutString(out, iface);
  Put<uint32_t>(out, key.ifindex);
  Put<uint8_t>(out, key.hook);
  Put<uint8_t>(out, key.direction);
  Put<uint8_t>(out, key.proto);
  out.insert(out.end(), key.src, key.src + 16);
  Put<uint16_t>(out, key.sport);
  out.insert(out.end(), key.dst, key.dst + 16);
  Put<uint16_t>(out, key.dport);
  Put<uint16_t>(out, key.linkType);
  Put<int64_t>(out, chunk.minTs);
  Put<int64_t>(out, chunk.maxTs);
  Put<uint32_t>(out, uint32_t(n));

  // Room for packet_ids, then `packed` after the longest length it may take; moved closer once its
  // length is known. The residuals take at most a mask byte per 8 bytes, and one per packet for the
  // last few.
  size_t most = kPackedBytes * n + sizeof(nt_sack_block) * chunk.sackBlocks + chunk.headerBytes + chunk.headerBytes / 8 + n;
  size_t start = out.size();
  out.resize(start + VarUIntSize(n) + 8 * n + VarUIntSize(most) + most);
  uint8_t* ids = PutVarUInt(out.data() + start, n);
  uint8_t* packed = ids + 8 * n + VarUIntSize(most);
  uint8_t* field[kPackedFieldCount];
  for (size_t f = 0, offset = 0; f < kPackedFieldCount; offset += kPackedFieldBytes[f] * n, f++) field[f] = packed + offset;
  uint8_t* sackAt = packed + kPackedBytes * n;
  uint8_t* residualAt = sackAt + sizeof(nt_sack_block) * chunk.sackBlocks;

  // The previous packet's values, for the differences; the first time's is the chunk's first_ts.
  StagedPacket prev = {};
  prev.ts = chunk.minTs;
  const uint8_t* prevResidual = nullptr;
  size_t prevLength = 0;
  const uint8_t* rows = chunk.rows.data();
  for (size_t i = 0, at = 0; i < n; i++) {
    StagedPacket p;
    memcpy(&p, rows + at, sizeof(p));
    auto put = [&](PackedField f, auto value) { memcpy(field[f] + sizeof(value) * i, &value, sizeof(value)); };
    put(kPacked_ts, uint64_t(p.ts) - uint64_t(prev.ts));
    memcpy(ids + 8 * i, &p.packetId, 8);
    put(kPacked_ip_id, uint16_t(p.ipId - prev.ipId));
    put(kPacked_seq, uint32_t(p.seq - prev.seq));
    put(kPacked_ack, uint32_t(p.ack - prev.ack));
    put(kPacked_flags, p.flags);
    put(kPacked_win, p.win);
    put(kPacked_len, p.len);
    put(kPacked_wire_len, p.wireLen);
    put(kPacked_opt_present, p.present);
    put(kPacked_opt_mss, p.mss);
    put(kPacked_opt_wscale, p.wscale);
    put(kPacked_opt_sack_perm, uint8_t(p.present & NT_OPT_SACK_PERM ? 1 : 0));
    put(kPacked_opt_ts_val, uint32_t(p.tsVal - prev.tsVal));
    put(kPacked_opt_ts_ecr, uint32_t(p.tsEcr - prev.tsEcr));
    put(kPacked_sack_blocks, p.sackBlocks);
    put(kPacked_header_len, p.headerLen);
    const uint8_t* sacks = rows + at + sizeof(p);
    memcpy(sackAt, sacks, sizeof(nt_sack_block) * p.sackBlocks);
    sackAt += sizeof(nt_sack_block) * p.sackBlocks;
    const uint8_t* residual = sacks + sizeof(nt_sack_block) * p.sackBlocks;
    residualAt = PackResidual(residualAt, residual, p.headerLen, prevResidual, prevLength);
    prevResidual = residual;
    prevLength = p.headerLen;
    prev = p;
    at += sizeof(p) + sizeof(nt_sack_block) * p.sackBlocks + Align8(p.headerLen);
  }
  size_t packedSize = residualAt - packed;
  uint8_t* packedFrom = PutVarUInt(ids + 8 * n, packedSize);
  if (packedFrom < packed) memmove(packedFrom, packed, packedSize);
  out.resize((packedFrom - out.data()) + packedSize);
  Put<uint8_t>(out, NT_RESIDUALS_XOR_PREVIOUS);
}

namespace {

// new PacketChunkEncoder(); add(batch, count, node, linkType) -> chunks so far; points(from) -> Uint32Array of
// netns_ino and ifindex per chunk from `from` on; stagedBytes(); encode(nodes, netns, iface) -> bytes of the
// rows, kept until copyEncoded(target, at) copies them out. Arguments come checked by the wrapper.
class PacketChunkEncoderObject : public Napi::ObjectWrap<PacketChunkEncoderObject> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "PacketChunkEncoder",
                       {InstanceMethod("add", &PacketChunkEncoderObject::Add), InstanceMethod("points", &PacketChunkEncoderObject::Points),
                        InstanceMethod("stagedBytes", &PacketChunkEncoderObject::StagedBytes),
                        InstanceMethod("encode", &PacketChunkEncoderObject::Encode),
                        InstanceMethod("copyEncoded", &PacketChunkEncoderObject::CopyEncoded)});
  }
  PacketChunkEncoderObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PacketChunkEncoderObject>(info) {}

 private:
  Napi::Value Add(const Napi::CallbackInfo& info) {
    auto batch = info[0].As<Napi::Uint8Array>();
    const char* wrong = encoder_.Add(batch.Data(), batch.ByteLength(), info[1].As<Napi::Number>().Uint32Value(),
                                     info[2].As<Napi::Number>().Uint32Value(), uint16_t(info[3].As<Napi::Number>().Uint32Value()));
    if (wrong != nullptr) throw Napi::RangeError::New(info.Env(), wrong);
    return Napi::Number::New(info.Env(), double(encoder_.ChunkCount()));
  }

  Napi::Value Points(const Napi::CallbackInfo& info) {
    size_t from = info[0].As<Napi::Number>().Uint32Value();
    size_t count = encoder_.ChunkCount() > from ? encoder_.ChunkCount() - from : 0;
    auto points = Napi::Uint32Array::New(info.Env(), 2 * count);
    for (size_t k = 0; k < count; k++) {
      points[2 * k] = encoder_.NetnsInoOf(from + k);
      points[2 * k + 1] = encoder_.IfindexOf(from + k);
    }
    return points;
  }

  Napi::Value StagedBytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(encoder_.StagedBytes())); }

  static std::vector<std::string> Strings(Napi::Value value) {
    auto array = value.As<Napi::Array>();
    std::vector<std::string> strings(array.Length());
    for (uint32_t i = 0; i < array.Length(); i++) strings[i] = array.Get(i).As<Napi::String>().Utf8Value();
    return strings;
  }

  Napi::Value Encode(const Napi::CallbackInfo& info) {
    std::vector<std::string> nodes = Strings(info[0]), netns = Strings(info[1]), iface = Strings(info[2]);
    size_t chunks = encoder_.ChunkCount();
    if (netns.size() != chunks || iface.size() != chunks) throw Napi::RangeError::New(info.Env(), "a name for each chunk");
    for (size_t k = 0; k < chunks; k++) {
      if (encoder_.NodeOf(k) >= nodes.size()) throw Napi::RangeError::New(info.Env(), "a name for each chunk's node");
    }
    encoded_.clear();
    encoder_.Encode(nodes, netns, iface, encoded_);
    return Napi::Number::New(info.Env(), double(encoded_.size()));
  }

  Napi::Value CopyEncoded(const Napi::CallbackInfo& info) {
    auto target = info[0].As<Napi::Uint8Array>();
    size_t at = info[1].As<Napi::Number>().Uint32Value();
    if (at > target.ByteLength() || target.ByteLength() - at < encoded_.size()) throw Napi::RangeError::New(info.Env(), "no room for the encoded rows");
    memcpy(target.Data() + at, encoded_.data(), encoded_.size());
    encoded_.clear();
    return info.Env().Undefined();
  }

  PacketChunkEncoder encoder_;
  std::vector<uint8_t> encoded_;
};

}  // namespace

void InitChunkEncoder(Napi::Env env, Napi::Object exports) { exports.Set("PacketChunkEncoder", PacketChunkEncoderObject::Init(env)); }

}  // namespace nettrail
