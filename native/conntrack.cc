// ctnetlink in the addon: one NETLINK_NETFILTER socket per network namespace, opened inside it
// and read on the event loop's thread (event_loop.h). The socket is subscribed to conntrack's
// NEW, UPDATE and DESTROY events and also carries the dumps of the table, so what it delivers
// is in the order it happened: a dump's entries and the events around them never cross.
// Entries go to JavaScript as nt_ct_record batches (conntrack.h) through a JsChannel; while a
// batch is unacknowledged the socket is not read, its buffer fills, and the kernel says events
// were lost (ENOBUFS): that is counted and answered with a new dump. Also files read or written
// inside a namespace (/proc/thread-self/net, /proc/sys/net are the opener's namespace's).
// Validation and error codes live in native/conntrack.ts.
#include "conntrack.h"

#include "event_loop.h"
#include "js_channel.h"
#include "js_errors.h"
#include "netns.h"

#include <endian.h>
#include <fcntl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace nettrail {
namespace {

static_assert(NT_CT_STATUS_SRC_NAT == IPS_SRC_NAT && NT_CT_STATUS_DST_NAT == IPS_DST_NAT, "conntrack.h copies the kernel's status bits");

// Records per batch: a batch is handed over when the socket is drained or this many are read.
constexpr uint32_t kBatchRecords = 4096;
// Larger than any netlink datagram the kernel sends a reader (dump parts are at most 32 KiB).
constexpr size_t kDatagramBytes = 64 * 1024;

uint16_t Be16(const uint8_t* p) {
  uint16_t v;
  memcpy(&v, p, sizeof(v));
  return be16toh(v);
}
uint32_t Be32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return be32toh(v);
}
uint64_t Be64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, sizeof(v));
  return be64toh(v);
}

// The attributes of one nest by type (a later one of a type replaces an earlier one); the walk
// stops at the first attribute that does not fit, so every one kept lies within the nest.
template <int Max>
class Attrs {
 public:
  Attrs(const uint8_t* data, size_t size) {
    while (size >= NLA_HDRLEN) {
      nlattr attr;
      memcpy(&attr, data, sizeof(attr));
      if (attr.nla_len < NLA_HDRLEN || attr.nla_len > size) break;
      int type = attr.nla_type & NLA_TYPE_MASK;
      if (type <= Max) {
        payload_[type] = data + NLA_HDRLEN;
        size_[type] = attr.nla_len - NLA_HDRLEN;
      }
      size_t step = NLA_ALIGN(attr.nla_len);
      if (step >= size) break;
      data += step;
      size -= step;
    }
  }
  // The payload of `type` when it holds at least `bytes`, else null.
  const uint8_t* Get(int type, size_t bytes) const { return payload_[type] && size_[type] >= bytes ? payload_[type] : nullptr; }
  template <int NestedMax>
  Attrs<NestedMax> Nested(int type) const { return Attrs<NestedMax>(payload_[type], payload_[type] ? size_[type] : 0); }

 private:
  const uint8_t* payload_[Max + 1] = {};
  size_t size_[Max + 1] = {};
};

// One tuple (CTA_TUPLE_ORIG or CTA_TUPLE_REPLY) into the record; false when it lacks addresses of the family or a protocol.
bool DecodeTuple(const Attrs<CTA_MAX>& cta, int which, nt_ct_record* record, uint8_t* src, uint8_t* dst, uint16_t* sport, uint16_t* dport) {
  auto tuple = cta.Nested<CTA_TUPLE_MAX>(which);
  auto ip = tuple.Nested<CTA_IP_MAX>(CTA_TUPLE_IP);
  bool v4 = record->family == NT_CT_IPV4;
  size_t bytes = v4 ? 4 : 16;
  const uint8_t* srcAddr = ip.Get(v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, bytes);
  const uint8_t* dstAddr = ip.Get(v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, bytes);
  auto proto = tuple.Nested<CTA_PROTO_MAX>(CTA_TUPLE_PROTO);
  const uint8_t* number = proto.Get(CTA_PROTO_NUM, 1);
  if (!srcAddr || !dstAddr || !number) return false;
  memcpy(src, srcAddr, bytes);
  memcpy(dst, dstAddr, bytes);
  record->proto = *number;
  const uint8_t* echoId = proto.Get(*number == IPPROTO_ICMPV6 ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID, 2);
  const uint8_t* srcPort = proto.Get(CTA_PROTO_SRC_PORT, 2);
  const uint8_t* dstPort = proto.Get(CTA_PROTO_DST_PORT, 2);
  if (*number == IPPROTO_ICMP || *number == IPPROTO_ICMPV6) srcPort = echoId;
  *sport = srcPort ? Be16(srcPort) : 0;
  *dport = dstPort ? Be16(dstPort) : 0;
  return true;
}

// A ctnetlink entry message (IPCTNL_MSG_CT_NEW or _DELETE) as a record; false when it is not one or lacks a tuple.
bool DecodeEntry(const nlmsghdr* message, nt_ct_record* record) {
  if (NFNL_SUBSYS_ID(message->nlmsg_type) != NFNL_SUBSYS_CTNETLINK) return false;
  int type = NFNL_MSG_TYPE(message->nlmsg_type);
  size_t header = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));
  if ((type != IPCTNL_MSG_CT_NEW && type != IPCTNL_MSG_CT_DELETE) || message->nlmsg_len < header) return false;
  const auto* bytes = reinterpret_cast<const uint8_t*>(message);
  nfgenmsg gen;
  memcpy(&gen, bytes + NLMSG_HDRLEN, sizeof(gen));
  *record = nt_ct_record{};
  if (gen.nfgen_family == AF_INET) record->family = NT_CT_IPV4;
  else if (gen.nfgen_family == AF_INET6) record->family = NT_CT_IPV6;
  else return false;
  if (message->nlmsg_flags & NLM_F_MULTI) record->kind = NT_CT_DUMPED;
  else if (type == IPCTNL_MSG_CT_DELETE) record->kind = NT_CT_DESTROY;
  else record->kind = (message->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)) ? NT_CT_NEW : NT_CT_UPDATE;

  Attrs<CTA_MAX> cta(bytes + header, message->nlmsg_len - header);
  if (!DecodeTuple(cta, CTA_TUPLE_ORIG, record, record->orig_src, record->orig_dst, &record->orig_sport, &record->orig_dport)) return false;
  uint8_t origProto = record->proto;
  if (!DecodeTuple(cta, CTA_TUPLE_REPLY, record, record->reply_src, record->reply_dst, &record->reply_sport, &record->reply_dport) ||
      record->proto != origProto)
    return false;
  if (const uint8_t* id = cta.Get(CTA_ID, 4)) record->id = Be32(id);
  if (const uint8_t* status = cta.Get(CTA_STATUS, 4)) record->status = Be32(status);
  if (const uint8_t* zone = cta.Get(CTA_ZONE, 2)) record->zone = Be16(zone);
  auto timestamp = cta.Nested<CTA_TIMESTAMP_MAX>(CTA_TIMESTAMP);
  if (const uint8_t* start = timestamp.Get(CTA_TIMESTAMP_START, 8)) record->start_ns = Be64(start);
  if (const uint8_t* stop = timestamp.Get(CTA_TIMESTAMP_STOP, 8)) record->stop_ns = Be64(stop);
  return true;
}

// Each netlink message of a datagram that fits in it.
template <typename Fn>
void ForEachMessage(const uint8_t* data, size_t size, Fn fn) {
  int remaining = static_cast<int>(size);
  for (auto* message = reinterpret_cast<const nlmsghdr*>(data); NLMSG_OK(message, remaining); message = NLMSG_NEXT(message, remaining))
    fn(message);
}

void AppendRecord(std::vector<uint8_t>* batch, const nt_ct_record& record) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(&record);
  batch->insert(batch->end(), bytes, bytes + sizeof(record));
}

nt_ct_record Marker(uint8_t kind, uint32_t error = 0) {
  nt_ct_record record{};
  record.kind = kind;
  record.error = error;
  return record;
}

class ConntrackReader : public EventSource, public std::enable_shared_from_this<ConntrackReader> {
 public:
  ConntrackReader(Napi::Env env, Napi::Function onBatch, int fd, int receiveBufferBytes)
      : channel_(env, onBatch, "nettrail-conntrack"), fd_(fd), receiveBufferBytes_(receiveBufferBytes) {}

  // Watches the socket and asks for the first dump. JavaScript thread.
  void Start() {
    std::weak_ptr<ConntrackReader> weak = shared_from_this();
    channel_.OnAck([weak] {
      EventLoop::Instance().Post([weak] {
        if (auto self = weak.lock()) self->OnAcked();
      });
    });
    EventLoop::Instance().Add(fd_, shared_from_this());
    RequestDumpSoon();
  }

  // Asks for a dump of the table (after the one under way, if any). Any thread.
  void RequestDumpSoon() {
    std::shared_ptr<ConntrackReader> self = shared_from_this();
    EventLoop::Instance().Post([self] {
      self->RequestDump();
      self->Flush();
    });
  }

  // Stops reading, closes the socket, then the channel's last call (null). JavaScript thread; once.
  void Stop() {
    if (stopping_.exchange(true)) return;
    std::shared_ptr<ConntrackReader> self = shared_from_this();
    EventLoop::Instance().Remove(loop_id(), [self] {
      close(self->fd_);
      self->closed_ = true;
      self->channel_.Close();
    });
  }

  void Ack() { channel_.Ack(); }

  Napi::Object Status(Napi::Env env) const {
    Napi::Object status = Napi::Object::New(env);
    status.Set("events", Napi::Number::New(env, static_cast<double>(events_.load())));
    status.Set("dumps", Napi::Number::New(env, static_cast<double>(dumps_.load())));
    status.Set("overflows", Napi::Number::New(env, static_cast<double>(overflows_.load())));
    status.Set("receiveBufferBytes", Napi::Number::New(env, receiveBufferBytes_));
    return status;
  }

  // Loop thread from here on.
  void OnReadable() override {
    if (closed_) return;
    if (channel_.Busy()) {  // resumed while a batch is in flight: wait for its acknowledgement
      EventLoop::Instance().Pause(loop_id());
      return;
    }
    while (pendingCount_ < kBatchRecords) {
      sockaddr_nl from{};
      socklen_t fromLength = sizeof(from);
      ssize_t n = recvfrom(fd_, datagram_.data(), datagram_.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fromLength);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          overflows_++;
          Append(Marker(NT_CT_EVENTS_LOST));
          RequestDump();
          continue;
        }
        if (errno == EAGAIN && dumpSeq_ != 0 && !dumpAnswered_) {
          // A dump's first answer is queued as it is asked for; all is read and it is not here:
          // it was a refusal the full buffer dropped (ENOBUFS said so). Ask again, into an empty buffer.
          dumpSeq_ = 0;
          RequestDump();
        }
        break;  // EAGAIN, or a socket error (the kernel reports each once): the next readiness reads on
      }
      if (from.nl_pid != 0) continue;  // only the kernel speaks ctnetlink; other sockets could send here
      ForEachMessage(datagram_.data(), static_cast<size_t>(n), [this](const nlmsghdr* message) { OnMessage(message); });
    }
    Flush();
  }

 private:
  void OnMessage(const nlmsghdr* message) {
    if (dumpSeq_ != 0 && message->nlmsg_seq == dumpSeq_) dumpAnswered_ = true;
    if (message->nlmsg_type == NLMSG_DONE || message->nlmsg_type == NLMSG_ERROR) {
      if (dumpSeq_ == 0 || message->nlmsg_seq != dumpSeq_) return;
      int32_t code = 0;
      if (message->nlmsg_len >= NLMSG_LENGTH(sizeof(code))) memcpy(&code, NLMSG_DATA(message), sizeof(code));
      // DONE carries the dump's outcome, ERROR the refusal of the request (negative errnos; an
      // ERROR of 0 would be an acknowledgement, which is not asked for).
      if (message->nlmsg_type == NLMSG_DONE || code < 0) EndDump(code < 0 ? -code : 0);
      return;
    }
    nt_ct_record record;
    if (!DecodeEntry(message, &record)) return;
    if (record.kind != NT_CT_DUMPED) events_++;
    Append(record);
  }

  void RequestDump() {
    if (closed_) return;
    if (dumpSeq_ != 0) {
      dumpAgain_ = true;
      return;
    }
    struct {
      nlmsghdr header;
      nfgenmsg gen;
    } request{};
    request.header.nlmsg_len = NLMSG_LENGTH(sizeof(nfgenmsg));
    request.header.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.nlmsg_seq = ++lastSeq_;
    request.gen.nfgen_family = AF_UNSPEC;  // every family, every zone
    request.gen.version = NFNETLINK_V0;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    Append(Marker(NT_CT_DUMP_START));
    if (sendto(fd_, &request, request.header.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
      Append(Marker(NT_CT_DUMP_DONE, errno));
    } else {
      dumpSeq_ = request.header.nlmsg_seq;
      dumpAnswered_ = false;
    }
  }

  void EndDump(int error) {
    Append(Marker(NT_CT_DUMP_DONE, error));
    if (error == 0) dumps_++;
    dumpSeq_ = 0;
    if (dumpAgain_) {
      dumpAgain_ = false;
      RequestDump();
    }
  }

  void Append(const nt_ct_record& record) {
    AppendRecord(pending_.get(), record);
    pendingCount_++;
  }

  // Sends what is pending unless a batch is in flight; the socket is not read until JavaScript acknowledges.
  void Flush() {
    if (pendingCount_ == 0 || channel_.Busy() || closed_) return;
    EventLoop::Instance().Pause(loop_id());  // before Send: the acknowledgement's Resume must come after it
    channel_.Send(pending_.release(), pendingCount_);
    pending_ = std::make_unique<std::vector<uint8_t>>();
    pendingCount_ = 0;
  }

  void OnAcked() {
    if (closed_ || channel_.Busy()) return;
    if (pendingCount_ > 0) Flush();
    else EventLoop::Instance().Resume(loop_id());
  }

  JsChannel channel_;
  const int fd_;
  const int receiveBufferBytes_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> dumps_{0};
  std::atomic<uint64_t> overflows_{0};
  // Loop thread only.
  bool closed_ = false;
  std::vector<uint8_t> datagram_ = std::vector<uint8_t>(kDatagramBytes);
  std::unique_ptr<std::vector<uint8_t>> pending_ = std::make_unique<std::vector<uint8_t>>();
  uint32_t pendingCount_ = 0;
  uint32_t lastSeq_ = 0;
  uint32_t dumpSeq_ = 0;  // the dump under way, 0 when none
  bool dumpAnswered_ = false;
  bool dumpAgain_ = false;
};

using ReaderHandle = std::shared_ptr<ConntrackReader>;

ConntrackReader& Reader(const Napi::CallbackInfo& info) { return **info[0].As<Napi::External<ReaderHandle>>().Data(); }

// conntrackOpen(netnsPath, receiveBufferBytes, onBatch(records | null, count)) -> handle
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string netnsPath = info[0].As<Napi::String>();
  int receiveBufferBytes = info[1].As<Napi::Number>().Int32Value();
  int fd = -1;
  FailedStep failed;
  int err = InNetns(netnsPath, [&]() -> int {
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
    if (fd >= 0) return 0;
    failed = {"socket", "socket(AF_NETLINK, NETLINK_NETFILTER) in " + netnsPath};
    return errno;
  }, &failed);
  if (failed.name) throw SystemError(env, failed.name, failed.what, err);
  auto fail = [env, fd](const char* step, const std::string& what) {
    int err = errno;
    close(fd);
    return SystemError(env, step, what, err);
  };
  // SO_RCVBUFFORCE passes net.core.rmem_max with CAP_NET_ADMIN; without it SO_RCVBUF is capped there.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &receiveBufferBytes, sizeof(receiveBufferBytes)) != 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receiveBufferBytes, sizeof(receiveBufferBytes)) != 0)
    throw fail("set_receive_buffer", "SO_RCVBUF " + std::to_string(receiveBufferBytes));
  int granted = 0;
  socklen_t grantedLength = sizeof(granted);
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &grantedLength);
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) throw fail("bind", "bind the ctnetlink socket");
  for (int group : {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY}) {
    if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) != 0)
      throw fail("subscribe", "subscribe to conntrack events (group " + std::to_string(group) + ")");
  }
  auto reader = std::make_shared<ConntrackReader>(env, info[2].As<Napi::Function>(), fd, granted);
  reader->Start();
  return Napi::External<ReaderHandle>::New(env, new ReaderHandle(reader), [](Napi::Env, ReaderHandle* handle) { delete handle; });
}

// conntrackDump(handle): a dump of the table, after the one under way if any.
Napi::Value Dump(const Napi::CallbackInfo& info) {
  Reader(info).RequestDumpSoon();
  return info.Env().Undefined();
}

// conntrackAck(handle): JavaScript is done with the last batch.
Napi::Value Ack(const Napi::CallbackInfo& info) {
  Reader(info).Ack();
  return info.Env().Undefined();
}

// conntrackStatus(handle) -> { events, dumps, overflows, receiveBufferBytes }
Napi::Value Status(const Napi::CallbackInfo& info) { return Reader(info).Status(info.Env()); }

// conntrackStop(handle): the last call of onBatch (null) follows.
Napi::Value Stop(const Napi::CallbackInfo& info) {
  Reader(info).Stop();
  return info.Env().Undefined();
}

// conntrackDecode(datagram) -> records: the entries of netlink messages as the reader decodes them.
Napi::Value Decode(const Napi::CallbackInfo& info) {
  auto buffer = info[0].As<Napi::Buffer<uint8_t>>();
  std::vector<uint8_t> datagram(buffer.Data(), buffer.Data() + buffer.Length());  // aligned, as the socket's
  std::vector<uint8_t> records;
  ForEachMessage(datagram.data(), datagram.size(), [&records](const nlmsghdr* message) {
    nt_ct_record record;
    if (DecodeEntry(message, &record)) AppendRecord(&records, record);
  });
  return Napi::Buffer<uint8_t>::Copy(info.Env(), records.data(), records.size());
}

// Reads or writes a whole file inside a namespace, on a thread of libuv's pool.
class NetnsFileWorker : public Napi::AsyncWorker {
 public:
  // `data` null: read the file; else write it.
  NetnsFileWorker(Napi::Env env, std::string netnsPath, std::string path, const Napi::Buffer<uint8_t>* data)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), netnsPath_(std::move(netnsPath)), path_(std::move(path)),
        writing_(data != nullptr) {
    if (data) data_.assign(data->Data(), data->Data() + data->Length());
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    err_ = InNetns(netnsPath_, [this]() -> int {
      FdGuard file(open(path_.c_str(), (writing_ ? O_WRONLY : O_RDONLY) | O_CLOEXEC));
      if (file.get() < 0) {
        failed_ = {"open_file", "open " + path_};
        return errno;
      }
      return writing_ ? Write(file.get()) : Read(file.get());
    }, &failed_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (failed_.name) deferred_.Reject(SystemError(env, failed_.name, failed_.what, err_).Value());
    else if (writing_) deferred_.Resolve(env.Undefined());
    else deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size()));
  }

 private:
  int Read(int fd) {
    for (;;) {
      size_t at = data_.size();
      data_.resize(at + 64 * 1024);
      ssize_t n = read(fd, data_.data() + at, 64 * 1024);
      if (n < 0 && errno == EINTR) n = 0;
      if (n < 0) {
        failed_ = {"read_file", "read " + path_};
        return errno;
      }
      data_.resize(at + n);
      if (n == 0) return 0;
    }
  }

  int Write(int fd) {
    for (size_t at = 0; at < data_.size();) {
      ssize_t n = write(fd, data_.data() + at, data_.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        failed_ = {"write_file", "write " + path_};
        return errno;
      }
      at += n;
    }
    return 0;
  }

  Napi::Promise::Deferred deferred_;
  std::string netnsPath_;
  std::string path_;
  bool writing_;
  std::vector<uint8_t> data_;
  FailedStep failed_;
  int err_ = 0;
};

// readFileInNetns(netnsPath, path) -> Promise<Buffer>
Napi::Value ReadFileInNetns(const Napi::CallbackInfo& info) {
  auto* worker = new NetnsFileWorker(info.Env(), info[0].As<Napi::String>(), info[1].As<Napi::String>(), nullptr);
  worker->Queue();
  return worker->Promise();
}

// writeFileInNetns(netnsPath, path, data) -> Promise<void>
Napi::Value WriteFileInNetns(const Napi::CallbackInfo& info) {
  auto data = info[2].As<Napi::Buffer<uint8_t>>();
  auto* worker = new NetnsFileWorker(info.Env(), info[0].As<Napi::String>(), info[1].As<Napi::String>(), &data);
  worker->Queue();
  return worker->Promise();
}

}  // namespace

void InitConntrack(Napi::Env env, Napi::Object exports) {
  exports.Set("conntrackOpen", Napi::Function::New(env, Open));
  exports.Set("conntrackDump", Napi::Function::New(env, Dump));
  exports.Set("conntrackAck", Napi::Function::New(env, Ack));
  exports.Set("conntrackStatus", Napi::Function::New(env, Status));
  exports.Set("conntrackStop", Napi::Function::New(env, Stop));
  exports.Set("conntrackDecode", Napi::Function::New(env, Decode));
  exports.Set("readFileInNetns", Napi::Function::New(env, ReadFileInNetns));
  exports.Set("writeFileInNetns", Napi::Function::New(env, WriteFileInNetns));
}

}  // namespace nettrail
