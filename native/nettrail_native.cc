// nettrail's libbpf addon: mechanism only. Load an object, attach its programs
// inside a network namespace through bpf_links, hand ring-buffer records to
// JavaScript in batches, read maps. Validation and error codes live in native/addon.ts, policy in capture/.
#include <napi.h>

#include "conntrack.h"
#include "js_errors.h"
#include "netns.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
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

// One ring buffer drained on its own thread, its records handed over in batches.
class RingConsumer {
 public:
  RingConsumer(int mapFd, Napi::ThreadSafeFunction onBatch, size_t batchBytes, int flushMs)
      : onBatch_(onBatch), batchBytes_(batchBytes), flushMs_(flushMs) {
    ring_ = ring_buffer__new(mapFd, &RingConsumer::OnRecord, this, nullptr);
  }
  ~RingConsumer() {
    if (ring_) ring_buffer__free(ring_);
  }
  bool ok() const { return ring_ != nullptr; }
  void Start() { thread_ = std::thread([this] { Run(); }); }
  void RequestStop() { SetStop(); }
  // For close() without a graceful stop: pending batches are dropped, nothing blocks.
  void Abort() {
    SetStop();
    onBatch_.Abort();
  }
  // JavaScript has handled a batch and let its event loop turn: the next one may come.
  void Ack() {
    {
      std::lock_guard<std::mutex> lock(ackMutex_);
      if (inFlight_ > 0) inFlight_--;
    }
    ackCv_.notify_all();
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  static int OnRecord(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingConsumer*>(ctx);
    if (!self->batch_) {
      self->batch_ = new std::vector<uint8_t>();
      self->batch_->reserve(self->batchBytes_ + 4096);
      self->batchStarted_ = std::chrono::steady_clock::now();
    }
    AppendRecord(*self->batch_, data, size);
    self->records_++;
    if (self->batch_->size() >= self->batchBytes_) self->Deliver();
    return 0;
  }

  void SetStop() {
    {
      std::lock_guard<std::mutex> lock(ackMutex_);
      stop_ = true;
    }
    ackCv_.notify_all();
  }

  // Hands the batch to JavaScript once it has acknowledged the one before (Ack):
  // one batch per turn of its event loop, so that a flood of batches never holds
  // the loop (node dispatches up to 1000 queued calls back to back), and while
  // JavaScript is behind the ring fills and the kernel counts what no longer fits
  // as lost, per point.
  void Deliver() {
    if (!batch_) return;
    {
      std::unique_lock<std::mutex> lock(ackMutex_);
      ackCv_.wait(lock, [this] { return inFlight_ == 0 || stop_; });
      inFlight_++;
    }
    auto* payload = new Batch{batch_, records_};
    batch_ = nullptr;
    records_ = 0;
    napi_status status;
    while ((status = onBatch_.NonBlockingCall(payload, &RingConsumer::CallJs)) == napi_queue_full)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (status != napi_ok) {
      delete payload->bytes;
      delete payload;
    }
  }

  void Run() {
    while (!stop_) {
      ring_buffer__poll(ring_, flushMs_);
      if (batch_ && std::chrono::steady_clock::now() - batchStarted_ >= std::chrono::milliseconds(flushMs_))
        Deliver();
    }
    ring_buffer__consume(ring_);
    Deliver();
    if (onBatch_.BlockingCall(static_cast<Batch*>(nullptr), &RingConsumer::CallJs) == napi_ok) onBatch_.Release();
  }

  struct Batch {
    std::vector<uint8_t>* bytes;
    uint32_t records;
  };

  static void CallJs(Napi::Env env, Napi::Function callback, Batch* batch) {
    if (!batch) {
      callback.Call({env.Null(), Napi::Number::New(env, 0)});
      return;
    }
    std::vector<uint8_t>* bytes = batch->bytes;
    uint32_t records = batch->records;
    delete batch;
    if (env == nullptr) {
      delete bytes;
      return;
    }
    auto buffer = Napi::Buffer<uint8_t>::New(env, bytes->data(), bytes->size(),
                                             [](Napi::Env, uint8_t*, std::vector<uint8_t>* owner) { delete owner; },
                                             bytes);
    callback.Call({buffer, Napi::Number::New(env, records)});
  }

  ring_buffer* ring_ = nullptr;
  Napi::ThreadSafeFunction onBatch_;
  size_t batchBytes_;
  int flushMs_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex ackMutex_;
  std::condition_variable ackCv_;
  int inFlight_ = 0;
  std::vector<uint8_t>* batch_ = nullptr;
  uint32_t records_ = 0;
  std::chrono::steady_clock::time_point batchStarted_;
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
                           InstanceMethod("joinRing", &BpfObject::JoinRing),
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

  // startRing(map, onBatch(buffer|null, records), batchBytes, flushMs)
  Napi::Value StartRing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string mapName = info[0].As<Napi::String>();
    if (rings_.count(mapName)) throw StepError(env, "start_ring", "ring " + mapName + " already started");
    bpf_map* map = Map(env, mapName);
    auto onBatch = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "nettrail-ring", 8, 1);
    size_t batchBytes = info[2].As<Napi::Number>().Uint32Value();
    int flushMs = info[3].As<Napi::Number>().Int32Value();
    auto consumer = std::make_unique<RingConsumer>(bpf_map__fd(map), onBatch, batchBytes, flushMs);
    if (!consumer->ok()) {
      onBatch.Release();
      throw SystemError(env, "ring_buffer_new", "ring_buffer__new " + mapName, errno);
    }
    consumer->Start();
    rings_[mapName] = std::move(consumer);
    return env.Undefined();
  }

  // stopRing(map): the thread drains, delivers its last batch and then null.
  Napi::Value StopRing(const Napi::CallbackInfo& info) {
    std::string mapName = info[0].As<Napi::String>();
    auto it = rings_.find(mapName);
    if (it != rings_.end()) it->second->RequestStop();
    return info.Env().Undefined();
  }

  // ackRing(map): JavaScript is done with the last batch; the consumer may deliver the next.
  Napi::Value AckRing(const Napi::CallbackInfo& info) {
    std::string mapName = info[0].As<Napi::String>();
    auto it = rings_.find(mapName);
    if (it != rings_.end()) it->second->Ack();
    return info.Env().Undefined();
  }

  // joinRing(map): after the null batch arrived, the thread has finished.
  Napi::Value JoinRing(const Napi::CallbackInfo& info) {
    std::string mapName = info[0].As<Napi::String>();
    auto it = rings_.find(mapName);
    if (it != rings_.end()) {
      it->second->Join();
      rings_.erase(it);
    }
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
    for (auto& ring : rings_) ring.second->Join();
    rings_.clear();
    for (int fd : links_) close(fd);
    links_.clear();
    if (object_) bpf_object__close(object_);
    object_ = nullptr;
  }

  bpf_object* object_ = nullptr;
  std::vector<int> links_;
  std::map<std::string, std::unique_ptr<RingConsumer>> rings_;

};

// realtime - monotonic in ns: bpf_ktime_get_ns() + offset = wall clock.
Napi::Value ClockOffsetNs(const Napi::CallbackInfo& info) {
  timespec realtime, monotonic;
  clock_gettime(CLOCK_MONOTONIC, &monotonic);
  clock_gettime(CLOCK_REALTIME, &realtime);
  int64_t offset = (int64_t(realtime.tv_sec) - int64_t(monotonic.tv_sec)) * 1000000000LL +
                   (int64_t(realtime.tv_nsec) - int64_t(monotonic.tv_nsec));
  return Napi::BigInt::New(info.Env(), offset);
}

Napi::Value PossibleCpus(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), libbpf_num_possible_cpus());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(CollectLibbpfLog);
  exports.Set("BpfObject", BpfObject::Init(env));
  exports.Set("clockOffsetNs", Napi::Function::New(env, ClockOffsetNs));
  exports.Set("possibleCpus", Napi::Function::New(env, PossibleCpus));
  nettrail::InitConntrack(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(nettrail_native, Init)
