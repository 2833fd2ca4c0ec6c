// nettrail's libbpf addon: mechanism only. Load an object, attach its programs
// inside a network namespace through bpf_links, hand ring-buffer records to
// JavaScript in batches, read maps. Validation and error codes live in native/addon.ts, policy in capture/.
#include <napi.h>

#include "chunk_encoder.h"
#include "conntrack.h"
#include "event_loop.h"
#include "js_channel.h"
#include "js_errors.h"
#include "links.h"
#include "netns.h"
#include "packet_decoder.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <future>
#include <cstdarg>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <map>
#include <memory>
#include <mutex>
#include <net/if.h>
#include <sched.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>
#include <atomic>

namespace {

// Attach types newer than the uapi headers this is built against (Linux 6.6+).
constexpr int kAttachTcxIngress = 46;
constexpr int kAttachTcxEgress = 47;
constexpr int kAttachXdp = 37;

thread_local std::string libbpfLog;

int CollectLibbpfLog(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof(line), fmt, args);
  if (libbpfLog.size() < 64 * 1024) libbpfLog.append(line);
  return n;
}

// An exception for JavaScript (js_errors.h) with what libbpf logged meanwhile at the end of its message.
Napi::Error SystemError(Napi::Env env, const char* step, const std::string& what, int err) {
  std::string log;
  log.swap(libbpfLog);
  return nettrail::SystemError(env, step, what, err, log);
}

using nettrail::FailedStep;
using nettrail::FdGuard;
using nettrail::InNetns;
using nettrail::StepError;

// Batches of ring-buffer records for JavaScript: [u32 size][u32 0][size bytes, padded to 8] repeated.
void AppendRecord(std::vector<uint8_t>& batch, const void* data, size_t size) {
  uint32_t header[2] = {static_cast<uint32_t>(size), 0};
  const uint8_t* bytes = static_cast<const uint8_t*>(data);
  batch.insert(batch.end(), reinterpret_cast<uint8_t*>(header), reinterpret_cast<uint8_t*>(header) + 8);
  batch.insert(batch.end(), bytes, bytes + size);
  batch.resize((batch.size() + 7) & ~size_t(7));
}

// What a ring's records become for JavaScript: framed as they are (AppendRecord), or decoded
// packets in columns (packet_decoder.h).
enum class RingFormat { kRecords, kPacketColumns };

// realtime - monotonic in ns: bpf_ktime_get_ns() + offset = wall clock.
int64_t ClockOffset() {
  timespec realtime, monotonic;
  clock_gettime(CLOCK_MONOTONIC, &monotonic);
  clock_gettime(CLOCK_REALTIME, &realtime);
  return (int64_t(realtime.tv_sec) - int64_t(monotonic.tv_sec)) * 1000000000LL +
         (int64_t(realtime.tv_nsec) - int64_t(monotonic.tv_nsec));
}

// One ring buffer served by the event loop (event_loop.h). Its records are gathered into a
// batch handed over once it holds batchBytes or its first record is flushMs old. One batch is
// in flight at a time: while JavaScript has not acknowledged it, the next one fills, and once
// that one is full the ring is not read (the kernel counts what no longer fits as lost, per point).
// pollMs > 0: the kernel wakes the consumer only above a fill threshold (capture.bpf.c's
// wakeup_bytes), so the ring is also drained every pollMs.
class RingSource : public nettrail::EventSource, public std::enable_shared_from_this<RingSource> {
 public:
  RingSource(int mapFd, RingFormat format, Napi::Env env, Napi::Function onBatch, size_t batchBytes, int flushMs, int pollMs,
             uint8_t* slab, size_t slabBytes)
      : format_(format), channel_(env, onBatch, "nettrail-ring"), batchBytes_(batchBytes), flushMs_(flushMs), pollMs_(pollMs),
        nextPollMs_(pollMs), slab_(slab), slabBytes_(slabBytes) {
    ring_ = ring_buffer__new(mapFd, &RingSource::OnRecord, this, nullptr);
  }
  ~RingSource() override {
    if (ring_) ring_buffer__free(ring_);
  }
  bool ok() const { return ring_ != nullptr; }

  void Start() {
    auto self = shared_from_this();
    Loop().Add(ring_buffer__epoll_fd(ring_), self);
    channel_.OnAck([self] { Loop().Post([self] { self->Acknowledged(); }); });
    if (pollMs_ > 0) Loop().SetDeadline(loop_id(), nettrail::NowMs() + pollMs_);
  }
  // Drain and deliver now, whatever the batch's age, then an empty batch (SendFlushMarker).
  void RequestFlush() {
    auto self = shared_from_this();
    Loop().Post([self] {
      self->flushes_++;
      self->Drain();
      self->Deliver();
      self->SendFlushMarker();
    });
  }
  // Drain, deliver the last batch, then null.
  void RequestStop() {
    auto self = shared_from_this();
    Loop().Post([self] {
      self->stopping_ = true;
      self->Drain();
      self->Deliver();
      self->FinishIfDone();
    });
  }
  // For close() without a graceful stop: pending records are dropped; returns once the loop has let go.
  void Abort() {
    channel_.Abort();
    std::promise<void> removed;
    Loop().Remove(loop_id(), [&removed] { removed.set_value(); });
    removed.get_future().wait();
  }
  void Ack() { channel_.Ack(); }

  void OnReadable() override {
    nextPollMs_ = pollMs_;
    Drain();
    if (Pending() >= batchBytes_) Deliver();
  }

  void OnDeadline() override {
    uint32_t before = PendingCount();
    Drain();
    // A quiet ring is drained less and less often (up to kMaxPollMs): an idle capture costs next to nothing, and a
    // packet waits at most that long before its batch starts.
    if (pollMs_ > 0) nextPollMs_ = PendingCount() > before ? pollMs_ : std::min<int64_t>(2 * nextPollMs_, kMaxPollMs);
    auto now = nettrail::NowMs();
    if (Pending() > 0 && now - batchStartedMs_ >= flushMs_) Deliver();
    ArmDeadline(now);
  }

 private:
  static nettrail::EventLoop& Loop() { return nettrail::EventLoop::Instance(); }

  // Reads what the ring holds unless the batch waiting for JavaScript is full.
  void Drain() {
    if (channel_.Busy() && Pending() >= batchBytes_) {
      if (!paused_) Loop().Pause(loop_id());
      paused_ = true;
      return;
    }
    ring_buffer__consume(ring_);
  }

  size_t Pending() const { return format_ == RingFormat::kRecords ? (records_ ? records_->size() : 0) : columns_.bytes(); }
  uint32_t PendingCount() const { return format_ == RingFormat::kRecords ? recordCount_ : columns_.count(); }

  static int OnRecord(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingSource*>(ctx);
    bool first = self->PendingCount() == 0 && self->malformed_ == 0;
    if (first) {
      self->batchStartedMs_ = nettrail::NowMs();
      self->clockOffset_ = ClockOffset();
    }
    if (self->format_ == RingFormat::kRecords) {
      if (!self->records_) {
        self->records_ = new std::vector<uint8_t>();
        self->records_->reserve(self->batchBytes_ + 4096);
      }
      AppendRecord(*self->records_, data, size);
      self->recordCount_++;
    } else if (!self->decoder_.Decode(static_cast<const uint8_t*>(data), size, self->clockOffset_, self->columns_)) {
      self->malformed_++;
    }
    if (first) self->ArmDeadline(self->batchStartedMs_);
    if (self->Pending() < self->batchBytes_) return 0;
    if (!self->channel_.Busy()) {
      self->Deliver();
      return 0;
    }
    return -EAGAIN;  // full, and the one before is still with JavaScript: stop reading

  }

  // The next deadline: the batch's flush time, or the next poll.
  void ArmDeadline(int64_t now) {
    int64_t at = -1;
    if (PendingCount() > 0 || malformed_ > 0) at = batchStartedMs_ + flushMs_;
    if (pollMs_ > 0 && (at < 0 || now + nextPollMs_ < at)) at = now + nextPollMs_;
    if (at >= 0 && at <= now) at = now + 1;
    Loop().SetDeadline(loop_id(), at);
  }

  void Deliver() {
    if (channel_.Busy() || (PendingCount() == 0 && malformed_ == 0)) return;
    std::vector<uint8_t>* bytes;
    uint32_t count;
    if (format_ == RingFormat::kRecords) {
      bytes = records_;
      count = recordCount_;
      records_ = nullptr;
      recordCount_ = 0;
    } else {
      count = columns_.count();
      size_t length = columns_.BatchBytes();
      if (length <= slabBytes_) {
        // Into the slab JavaScript handed over and holds: no new memory for it to collect per batch.
        columns_.TakeInto(slab_, malformed_, decoder_.TakeUnattributedFragments());
        malformed_ = 0;
        channel_.SendInPlace(uint32_t(length), count);
        return;
      }
      bytes = columns_.Take(malformed_, decoder_.TakeUnattributedFragments());
      malformed_ = 0;
    }
    channel_.Send(bytes, count);
  }

  void Acknowledged() {
    if (paused_) {
      paused_ = false;
      Loop().Resume(loop_id());
    }
    bool draining = stopping_ || flushes_ > 0;
    if (draining) Drain();
    if (draining || Pending() >= batchBytes_) Deliver();
    if (stopping_) FinishIfDone();
    SendFlushMarker();
  }

  // Once every record the ring held when a flush was asked for has been handed over and acknowledged: an
  // empty batch, one per flush asked for, in order.
  void SendFlushMarker() {
    if (flushes_ == 0 || finished_ || channel_.Busy() || PendingCount() > 0 || malformed_ > 0) return;
    flushes_--;
    channel_.Send(new std::vector<uint8_t>(), 0);
  }

  void FinishIfDone() {
    if (channel_.Busy() || finished_) return;
    if (PendingCount() > 0 || malformed_ > 0) return;  // the rest goes after the next acknowledgement
    finished_ = true;
    auto self = shared_from_this();
    Loop().Remove(loop_id(), [self] { self->channel_.Close(); });
  }

  ring_buffer* ring_ = nullptr;
  RingFormat format_;
  nettrail::JsChannel channel_;
  size_t batchBytes_;
  int64_t flushMs_;
  int64_t pollMs_;
  int64_t nextPollMs_;
  static constexpr int64_t kMaxPollMs = 500;
  // Packet columns: JavaScript's memory a batch is written into while none is in flight; it keeps it alive.
  uint8_t* slab_;
  size_t slabBytes_;
  bool paused_ = false;
  bool stopping_ = false;
  bool finished_ = false;
  uint32_t flushes_ = 0;
  int64_t batchStartedMs_ = 0;
  int64_t clockOffset_ = 0;
  uint32_t malformed_ = 0;
  std::vector<uint8_t>* records_ = nullptr;
  uint32_t recordCount_ = 0;
  nettrail::PacketDecoder decoder_;
  nettrail::PacketColumnsBuilder columns_;
};

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "BpfObject",
                       {
                           InstanceMethod("attach", &BpfObject::Attach),
                           InstanceMethod("attachTracing", &BpfObject::AttachTracing),
                           InstanceMethod("detach", &BpfObject::Detach),
                           InstanceMethod("startRing", &BpfObject::StartRing),
                           InstanceMethod("stopRing", &BpfObject::StopRing),
                           InstanceMethod("flushRing", &BpfObject::FlushRing),
                           InstanceMethod("forgetRing", &BpfObject::ForgetRing),
                           InstanceMethod("ackRing", &BpfObject::AckRing),
                           InstanceMethod("mapEntries", &BpfObject::MapEntries),
                           InstanceMethod("mapUpdate", &BpfObject::MapUpdate),
                           InstanceMethod("mapDelete", &BpfObject::MapDelete),
                           InstanceMethod("testRun", &BpfObject::TestRun),
                           InstanceMethod("close", &BpfObject::Close),
                       });
  }

  // new BpfObject(path, { [mapName]: maxEntries }, { [rodataVariable]: Buffer })
  BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
    Napi::Env env = info.Env();
    std::string path = info[0].As<Napi::String>();
    libbpfLog.clear();
    object_ = bpf_object__open_file(path.c_str(), nullptr);
    if (!object_) {
      object_ = nullptr;
      throw SystemError(env, "bpf_object_open", "open " + path, errno);
    }
    Napi::Object sizes = info[1].As<Napi::Object>();
    Napi::Array names = sizes.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) {
      std::string name = names.Get(i).As<Napi::String>();
      bpf_map* map = bpf_object__find_map_by_name(object_, name.c_str());
      if (!map) throw StepError(env, "find_map", "no map " + name + " in " + path);
      int err = bpf_map__set_max_entries(map, sizes.Get(name).As<Napi::Number>().Uint32Value());
      if (err) throw SystemError(env, "set_max_entries", "size map " + name, -err);
    }
    Napi::Object rodata = info[2].As<Napi::Object>();
    names = rodata.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) {
      std::string name = names.Get(i).As<Napi::String>();
      SetRodata(env, name, rodata.Get(name).As<Napi::Buffer<uint8_t>>());
    }
    int err = bpf_object__load(object_);
    if (err) {
      Napi::Error error = SystemError(env, "bpf_object_load", "load " + path, -err);
      bpf_object__close(object_);
      object_ = nullptr;
      throw error;
    }
  }

  ~BpfObject() { Release(); }

 private:
  // Writes a `const volatile` global's value before load, found through the object's BTF.
  void SetRodata(Napi::Env env, const std::string& name, Napi::Buffer<uint8_t> value) {
    bpf_map* map = bpf_object__find_map_by_name(object_, ".rodata");
    btf* objectBtf = bpf_object__btf(object_);
    int sectionId = objectBtf ? btf__find_by_name_kind(objectBtf, ".rodata", BTF_KIND_DATASEC) : -1;
    if (!map || sectionId < 0) throw StepError(env, "set_rodata", "no .rodata in the object");
    const btf_type* section = btf__type_by_id(objectBtf, sectionId);
    const btf_var_secinfo* vars = btf_var_secinfos(section);
    for (int i = 0; i < btf_vlen(section); i++) {
      const btf_type* var = btf__type_by_id(objectBtf, vars[i].type);
      if (name != btf__name_by_offset(objectBtf, var->name_off)) continue;
      if (vars[i].size != value.Length())
        throw StepError(env, "set_rodata", "rodata " + name + " has " + std::to_string(vars[i].size) + " bytes, not " + std::to_string(value.Length()));
      size_t size = 0;
      auto* initial = static_cast<const uint8_t*>(bpf_map__initial_value(map, &size));
      if (!initial || vars[i].offset + vars[i].size > size) throw StepError(env, "set_rodata", "rodata " + name + " is out of the section");
      std::vector<uint8_t> data(initial, initial + size);
      memcpy(data.data() + vars[i].offset, value.Data(), value.Length());
      int err = bpf_map__set_initial_value(map, data.data(), data.size());
      if (err) throw SystemError(env, "set_rodata", "set rodata " + name, -err);
      return;
    }
    throw StepError(env, "set_rodata", "no rodata variable " + name);
  }

  bpf_map* Map(Napi::Env env, const std::string& name) {
    bpf_map* map = bpf_object__find_map_by_name(Object(env), name.c_str());
    if (!map) throw StepError(env, "find_map", "no map " + name);
    return map;
  }

  bpf_object* Object(Napi::Env env) {
    if (!object_) throw StepError(env, "object_closed", "object is closed");
    return object_;
  }

  // attach(program, netnsPath, ifname, hook: 'tc-ingress'|'tc-egress'|'xdp', xdpFlags) -> { link, ifindex }
  Napi::Value Attach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string programName = info[0].As<Napi::String>();
    std::string netnsPath = info[1].As<Napi::String>();
    std::string ifname = info[2].As<Napi::String>();
    std::string hook = info[3].As<Napi::String>();
    uint32_t xdpFlags = info.Length() > 4 ? info[4].As<Napi::Number>().Uint32Value() : 0;
    bpf_program* program = bpf_object__find_program_by_name(Object(env), programName.c_str());
    if (!program) throw StepError(env, "find_program", "no program " + programName);
    int attachType = hook == "tc-ingress" ? kAttachTcxIngress : hook == "tc-egress" ? kAttachTcxEgress : kAttachXdp;

    unsigned ifindex = 0;
    int linkFd = -1;
    std::string attaching = "attach " + programName + " to " + ifname + " (" + hook + ")";
    FailedStep failed;
    libbpfLog.clear();
    int err = InNetns(netnsPath, [&]() -> int {
      ifindex = if_nametoindex(ifname.c_str());
      if (ifindex == 0) {
        int err = errno;
        failed = {"if_nametoindex", attaching};
        return err;
      }
      LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = attachType == kAttachXdp ? xdpFlags : 0);
      linkFd = bpf_link_create(bpf_program__fd(program), ifindex, static_cast<bpf_attach_type>(attachType), &opts);
      if (linkFd >= 0) return 0;
      failed = {attachType == kAttachXdp ? "attach_xdp" : "attach_tcx", attaching};
      return -linkFd;
    }, &failed);
    if (failed.name) throw SystemError(env, failed.name, failed.what, err);
    links_.push_back(linkFd);
    Napi::Object result = Napi::Object::New(env);
    result.Set("link", Napi::Number::New(env, linkFd));
    result.Set("ifindex", Napi::Number::New(env, ifindex));
    return result;
  }

  // attachTracing(program) -> link: a tp_btf / raw_tp program, at the tracepoint its section names.
  Napi::Value AttachTracing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string programName = info[0].As<Napi::String>();
    bpf_program* program = bpf_object__find_program_by_name(Object(env), programName.c_str());
    if (!program) throw StepError(env, "find_program", "no program " + programName);
    libbpfLog.clear();
    int linkFd = bpf_raw_tracepoint_open(nullptr, bpf_program__fd(program));
    if (linkFd < 0) throw SystemError(env, "attach_tracing", "attach " + programName, -linkFd);
    links_.push_back(linkFd);
    return Napi::Number::New(env, linkFd);
  }

  // detach(link): closing a bpf_link's last fd detaches its program.
  Napi::Value Detach(const Napi::CallbackInfo& info) {
    int linkFd = info[0].As<Napi::Number>().Int32Value();
    for (auto it = links_.begin(); it != links_.end(); ++it) {
      if (*it == linkFd) {
        close(linkFd);
        links_.erase(it);
        return Napi::Boolean::New(info.Env(), true);
      }
    }
    return Napi::Boolean::New(info.Env(), false);
  }

  // startRing(map, format: 'records'|'packet-columns', onBatch(buffer|length|null, count), batchBytes, flushMs, pollMs[, slab])
  Napi::Value StartRing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string mapName = info[0].As<Napi::String>();
    if (rings_.count(mapName)) throw StepError(env, "start_ring", "ring " + mapName + " already started");
    bpf_map* map = Map(env, mapName);
    RingFormat format = info[1].As<Napi::String>().Utf8Value() == "packet-columns" ? RingFormat::kPacketColumns : RingFormat::kRecords;
    size_t batchBytes = info[3].As<Napi::Number>().Uint32Value();
    int flushMs = info[4].As<Napi::Number>().Int32Value();
    int pollMs = info[5].As<Napi::Number>().Int32Value();
    uint8_t* slab = nullptr;
    size_t slabBytes = 0;
    if (info.Length() > 6 && info[6].IsArrayBuffer()) {
      auto buffer = info[6].As<Napi::ArrayBuffer>();
      slab = static_cast<uint8_t*>(buffer.Data());
      slabBytes = buffer.ByteLength();
    }
    auto source = std::make_shared<RingSource>(bpf_map__fd(map), format, env, info[2].As<Napi::Function>(), batchBytes, flushMs, pollMs,
                                               slab, slabBytes);
    if (!source->ok()) {
      int err = errno;
      source->Abort();
      throw SystemError(env, "ring_buffer_new", "ring_buffer__new " + mapName, err);
    }
    source->Start();
    rings_[mapName] = source;
    return env.Undefined();
  }

  // flushRing(map): the ring is drained and its batch delivered, then an empty batch says it was.
  Napi::Value FlushRing(const Napi::CallbackInfo& info) {
    auto it = rings_.find(info[0].As<Napi::String>().Utf8Value());
    if (it != rings_.end()) it->second->RequestFlush();
    return info.Env().Undefined();
  }

  // stopRing(map): the ring is drained, its last batch delivered, then null.
  Napi::Value StopRing(const Napi::CallbackInfo& info) {
    std::string mapName = info[0].As<Napi::String>();
    auto it = rings_.find(mapName);
    if (it != rings_.end()) it->second->RequestStop();
    return info.Env().Undefined();
  }

  // ackRing(map): JavaScript is done with the last batch; the next may come.
  Napi::Value AckRing(const Napi::CallbackInfo& info) {
    std::string mapName = info[0].As<Napi::String>();
    auto it = rings_.find(mapName);
    if (it != rings_.end()) it->second->Ack();
    return info.Env().Undefined();
  }

  // forgetRing(map): after the null batch arrived, the ring is no longer served.
  Napi::Value ForgetRing(const Napi::CallbackInfo& info) {
    rings_.erase(info[0].As<Napi::String>().Utf8Value());
    return info.Env().Undefined();
  }

  // mapEntries(map) -> { keySize, valueSize, entries: Buffer of key|value pairs }.
  // Per-CPU maps give valueSize * possible CPUs (each rounded to 8) per value.
  Napi::Value MapEntries(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string mapName = info[0].As<Napi::String>();
    bpf_map* map = Map(env, mapName);
    int fd = bpf_map__fd(map);
    size_t keySize = bpf_map__key_size(map);
    size_t valueSize = bpf_map__value_size(map);
    bpf_map_type type = bpf_map__type(map);
    if (type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY)
      valueSize = ((valueSize + 7) & ~size_t(7)) * libbpf_num_possible_cpus();
    std::vector<uint8_t> key(keySize), next(keySize), value(valueSize), out;
    // Hash maps in batches: a few syscalls for the whole map, not two per entry (point_stats is read every
    // two seconds, an entry per point and hook). Key by key where the kernel cannot (or a bucket outgrows a batch).
    if ((type == BPF_MAP_TYPE_HASH || type == BPF_MAP_TYPE_PERCPU_HASH) && LookupInBatches(fd, keySize, valueSize, out)) {
      Napi::Object result = Napi::Object::New(env);
      result.Set("keySize", Napi::Number::New(env, keySize));
      result.Set("valueSize", Napi::Number::New(env, valueSize));
      result.Set("entries", Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size()));
      return result;
    }
    out.clear();
    void* previous = nullptr;
    while (bpf_map_get_next_key(fd, previous, next.data()) == 0) {
      if (bpf_map_lookup_elem(fd, next.data(), value.data()) == 0) {
        out.insert(out.end(), next.begin(), next.end());
        out.insert(out.end(), value.begin(), value.end());
      }
      key.swap(next);
      previous = key.data();
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("keySize", Napi::Number::New(env, keySize));
    result.Set("valueSize", Napi::Number::New(env, valueSize));
    result.Set("entries", Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size()));
    return result;
  }

  // Every entry of a hash map through BPF_MAP_LOOKUP_BATCH, as key|value pairs appended to `out`; false when the
  // kernel refused part way (the caller then reads key by key).
  static bool LookupInBatches(int fd, size_t keySize, size_t valueSize, std::vector<uint8_t>& out) {
    constexpr uint32_t kBatch = 256;
    std::vector<uint8_t> keys(keySize * kBatch), values(valueSize * kBatch);
    uint64_t token = 0;
    bool first = true;
    for (;;) {
      uint32_t count = kBatch;
      int err = bpf_map_lookup_batch(fd, first ? nullptr : &token, &token, keys.data(), values.data(), &count, nullptr);
      first = false;
      if (err && errno != ENOENT) return false;
      for (uint32_t i = 0; i < count; i++) {
        out.insert(out.end(), keys.begin() + i * keySize, keys.begin() + (i + 1) * keySize);
        out.insert(out.end(), values.begin() + i * valueSize, values.begin() + (i + 1) * valueSize);
      }
      if (err) return true;  // ENOENT: that was the last
    }
  }

  // mapUpdate(map, key, value): BPF_ANY; per-CPU maps take one value per possible CPU.
  Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_map* map = Map(env, info[0].As<Napi::String>());
    auto key = info[1].As<Napi::Buffer<uint8_t>>();
    auto value = info[2].As<Napi::Buffer<uint8_t>>();
    int err = bpf_map__update_elem(map, key.Data(), key.Length(), value.Data(), value.Length(), BPF_ANY);
    if (err) throw SystemError(env, "map_update", "update " + std::string(bpf_map__name(map)), -err);
    return env.Undefined();
  }

  // mapDelete(map, key) -> whether the key was there.
  Napi::Value MapDelete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bpf_map* map = Map(env, info[0].As<Napi::String>());
    auto key = info[1].As<Napi::Buffer<uint8_t>>();
    int err = bpf_map__delete_elem(map, key.Data(), key.Length(), 0);
    if (err && err != -ENOENT) throw SystemError(env, "map_delete", "delete from " + std::string(bpf_map__name(map)), -err);
    return Napi::Boolean::New(env, err == 0);
  }

  // testRun(program, packet, ringMap) -> { retval, records, batch }: runs the program once on
  // the packet (BPF_PROG_TEST_RUN) and hands back what it wrote to ringMap, as a batch.
  Napi::Value TestRun(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string programName = info[0].As<Napi::String>();
    auto packet = info[1].As<Napi::Buffer<uint8_t>>();
    std::string ringName = info[2].As<Napi::String>();
    bpf_program* program = bpf_object__find_program_by_name(Object(env), programName.c_str());
    if (!program) throw StepError(env, "find_program", "no program " + programName);
    if (rings_.count(ringName)) throw StepError(env, "test_run", "ring " + ringName + " is being consumed");
    struct Drained {
      std::vector<uint8_t> batch;
      uint32_t records = 0;
    } drained;
    ring_buffer* ring = ring_buffer__new(bpf_map__fd(Map(env, ringName)), [](void* ctx, void* data, size_t size) {
      auto* out = static_cast<Drained*>(ctx);
      AppendRecord(out->batch, data, size);
      out->records++;
      return 0;
    }, &drained, nullptr);
    if (!ring) throw SystemError(env, "ring_buffer_new", "ring_buffer__new " + ringName, errno);
    ring_buffer__consume(ring);  // what earlier runs left
    drained = Drained();
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet.Data(), .data_size_in = static_cast<uint32_t>(packet.Length()), .repeat = 1);
    int err = bpf_prog_test_run_opts(bpf_program__fd(program), &opts);
    if (err) {
      ring_buffer__free(ring);
      throw SystemError(env, "test_run", "test run " + programName, -err);
    }
    ring_buffer__consume(ring);
    ring_buffer__free(ring);
    Napi::Object result = Napi::Object::New(env);
    result.Set("retval", Napi::Number::New(env, static_cast<int32_t>(opts.retval)));
    result.Set("records", Napi::Number::New(env, drained.records));
    result.Set("batch", Napi::Buffer<uint8_t>::Copy(env, drained.batch.data(), drained.batch.size()));
    return result;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  void Release() {
    for (auto& ring : rings_) ring.second->Abort();
    rings_.clear();
    for (int fd : links_) close(fd);
    links_.clear();
    if (object_) bpf_object__close(object_);
    object_ = nullptr;
  }

  bpf_object* object_ = nullptr;
  std::vector<int> links_;
  std::map<std::string, std::shared_ptr<RingSource>> rings_;

};

// Nanoseconds to add to bpf_ktime_get_ns() for wall-clock time.
Napi::Value ClockOffsetNs(const Napi::CallbackInfo& info) { return Napi::BigInt::New(info.Env(), ClockOffset()); }

// new PacketDecoder().decode(batch of framed nt_packet_event records) -> the same packets in columns
// (packet_columns.h), as a ring consumer makes them: for records that did not come through one
// (BPF_PROG_TEST_RUN). Like a consumer's, its memory of first fragments lasts from batch to batch.
class PacketDecoderObject : public Napi::ObjectWrap<PacketDecoderObject> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "PacketDecoder", {InstanceMethod("decode", &PacketDecoderObject::Decode)});
  }
  PacketDecoderObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PacketDecoderObject>(info) {}

 private:
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    auto batch = info[0].As<Napi::Buffer<uint8_t>>();
    int64_t clockOffset = ClockOffset();
    nettrail::PacketColumnsBuilder columns;
    uint32_t malformed = 0;
    const uint8_t* bytes = batch.Data();
    for (size_t at = 0; at + 8 <= batch.Length();) {
      uint32_t size;
      memcpy(&size, bytes + at, 4);
      size_t record = at + 8;
      at = record + ((size + 7) & ~size_t(7));
      if (record + size > batch.Length() || !decoder_.Decode(bytes + record, size, clockOffset, columns)) malformed++;
    }
    std::unique_ptr<std::vector<uint8_t>> out(columns.Take(malformed, decoder_.TakeUnattributedFragments()));
    return Napi::Buffer<uint8_t>::Copy(info.Env(), out->data(), out->size());
  }

  nettrail::PacketDecoder decoder_;
};

// packetId(proto, ipId, fragOffset, payloadLen, payloadHash[, seq, ack, flags, win, urgent, tsVal, tsEcr]) -> the
// packet id (packet_decoder.h) the packet has at every point: the drop tracer's records get the same.
Napi::Value PacketId(const Napi::CallbackInfo& info) {
  uint32_t words[12] = {};
  for (size_t i = 0; i < 12 && i < info.Length(); i++) words[i] = info[i].As<Napi::Number>().Uint32Value();
  nettrail::PacketInvariants p = {words[0], words[1], words[2], words[3], words[4], info.Length() > 5,
                                  words[5], words[6], words[7], words[8], words[9], words[10], words[11]};
  return Napi::BigInt::New(info.Env(), nettrail::PacketIdOf(p));
}

Napi::Value PossibleCpus(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), libbpf_num_possible_cpus());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(CollectLibbpfLog);
  exports.Set("BpfObject", BpfObject::Init(env));
  exports.Set("clockOffsetNs", Napi::Function::New(env, ClockOffsetNs));
  exports.Set("possibleCpus", Napi::Function::New(env, PossibleCpus));
  exports.Set("PacketDecoder", PacketDecoderObject::Init(env));
  exports.Set("packetId", Napi::Function::New(env, PacketId));
  nettrail::InitLinks(env, exports);
  nettrail::InitConntrack(env, exports);
  nettrail::InitChunkEncoder(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(nettrail_native, Init)
