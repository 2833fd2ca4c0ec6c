// Link watchers (an rtnetlink socket per network namespace) and a directory watcher (inotify),
// read on the addon's event-loop thread (event_loop.h) and handed to JavaScript in batches of
// links.h's records (js_channel.h). Mechanism only: what the events mean is decided in capture/.
#include "links.h"

#include "event_loop.h"
#include "js_channel.h"
#include "js_errors.h"
#include "netns.h"

#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/limits.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

static_assert(NT_ARPHRD_ETHER == ARPHRD_ETHER && NT_ARPHRD_LOOPBACK == ARPHRD_LOOPBACK && NT_ARPHRD_NONE == ARPHRD_NONE,
              "links.h's ARPHRD values are the kernel's");
static_assert(NT_IFF_UP == IFF_UP, "links.h's IFF values are the kernel's");
static_assert(NT_IFNAME_BYTES == IFNAMSIZ && NT_DIR_NAME_BYTES == NAME_MAX + 1, "links.h's name sizes are the kernel's");

namespace nettrail {
namespace {

// A batch is sent once it holds this many records (or nothing more can be read).
constexpr uint32_t kBatchRecords = 256;
// A dump that could not be asked for, or failed, is asked for again this much later.
constexpr int64_t kDumpRetryMs = 100;

template <typename Record>
void AppendRecord(std::vector<uint8_t>& batch, const Record& record) {
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(&record);
  batch.insert(batch.end(), bytes, bytes + sizeof(record));
}

// A descriptor the loop reads, its records sent to JavaScript with one batch in flight: while
// JavaScript has a batch the descriptor is not watched, and what comes meanwhile waits in the kernel.
class ChannelSource : public EventSource, public std::enable_shared_from_this<ChannelSource> {
 public:
  ChannelSource(int fd, Napi::Env env, Napi::Function onBatch, const char* name) : fd_(fd), channel_(env, onBatch, name) {
    channel_.OnAck([this] { EventLoop::Instance().Resume(Id()); });
  }
  void Start() { EventLoop::Instance().Add(fd_, shared_from_this()); }
  // JavaScript thread: the last batch was handled.
  void Ack() { channel_.Ack(); }
  // JavaScript thread: stop reading; the channel's last call follows (callback(null, 0)), then the descriptor closes.
  void Close() {
    if (closed_) return;
    closed_ = true;
    std::shared_ptr<ChannelSource> self = shared_from_this();
    EventLoop::Instance().Remove(Id(), [self] {
      close(self->fd_);
      self->fd_ = -1;
    });
  }

  void OnReadable() override { Deliver(); }
  void OnRemoved() override { channel_.Close(); }

 protected:
  // Appends records of what can be read now, stopping once there are kBatchRecords; returns how many.
  virtual uint32_t Read(std::vector<uint8_t>& batch) = 0;

  void Deliver() {
    if (channel_.Busy()) return;  // the loop may call before the Pause queued with the last batch is applied
    auto* batch = new std::vector<uint8_t>();
    uint32_t count = Read(*batch);
    if (count == 0) {
      delete batch;
      return;
    }
    // Before Send: JavaScript may acknowledge, and so Resume, before Send returns.
    EventLoop::Instance().Pause(Id());
    channel_.Send(batch, count);
  }

  bool Busy() const { return channel_.Busy(); }

  uint64_t Id() const { return loop_id(); }

  int fd_;

 private:
  JsChannel channel_;
  bool closed_ = false;  // JavaScript thread only
};

// An rtnetlink socket bound inside one namespace, a member of RTNLGRP_LINK.
struct Rtnetlink {
  int fd = -1;
  uint32_t portId = 0;
};

// Asks for every link of the socket's namespace: 0 or errno.
int RequestLinkDump(int fd, uint32_t seq) {
  struct {
    nlmsghdr header;
    ifinfomsg link;
    rtattr maskAttr;
    uint32_t mask;
  } request{};
  request.header.nlmsg_len = sizeof(request);
  request.header.nlmsg_type = RTM_GETLINK;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = seq;
  request.link.ifi_family = AF_UNSPEC;
  request.maskAttr.rta_type = IFLA_EXT_MASK;
  request.maskAttr.rta_len = RTA_LENGTH(sizeof(uint32_t));
  request.mask = RTEXT_FILTER_SKIP_STATS;  // the dump is smaller without them, and they are not read
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &request, sizeof(request), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) return errno;
  return 0;
}

// The socket opened inside the namespace (it belongs to the namespace it was created in), then
// bound and joined to RTNLGRP_LINK; 0 or errno, the step in *failed.
int OpenRtnetlink(const std::string& netnsPath, Rtnetlink* out, FailedStep* failed) {
  int fd = -1;
  int err = InNetns(netnsPath, [&]() -> int {
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd >= 0) return 0;
    *failed = {"rtnl_socket", "open an rtnetlink socket in " + netnsPath};
    return errno;
  }, failed);
  if (err) return err;
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  socklen_t length = sizeof(local);
  int group = RTNLGRP_LINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) < 0 ||
      setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) < 0) {
    err = errno;
    close(fd);
    *failed = {"rtnl_bind", "join RTNLGRP_LINK in " + netnsPath};
    return err;
  }
  out->fd = fd;
  out->portId = local.nl_pid;
  return 0;
}

// The links of one namespace: a dump, then RTM_NEWLINK / RTM_DELLINK as they come, and a new dump
// whenever notifications were lost.
class LinkSource : public ChannelSource {
 public:
  // The first dump has been asked for with seq 1.
  LinkSource(Rtnetlink socket, Napi::Env env, Napi::Function onBatch)
      : ChannelSource(socket.fd, env, onBatch, "nettrail-links"), portId_(socket.portId) {}

  void OnDeadline() override {
    if (Busy()) {
      EventLoop::Instance().SetDeadline(Id(), NowMs() + kDumpRetryMs);
      return;
    }
    Deliver();
  }

 protected:
  uint32_t Read(std::vector<uint8_t>& batch) override {
    static uint8_t buffer[1 << 16];  // the loop thread's, for every link watcher: a dump message is at most 32 KiB
    uint32_t count = 0;
    while (count < kBatchRecords) {
      if (DumpDue()) RequestResync();
      ssize_t length = recv(fd_, buffer, sizeof(buffer), MSG_DONTWAIT);
      if (length < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          resync_ = lost_ = true;
          continue;
        }
        if (DumpDue()) continue;
        break;  // EAGAIN: all read
      }
      int left = int(length);
      for (auto* header = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(header, left); header = NLMSG_NEXT(header, left)) {
        bool ofDump = dumping_ && header->nlmsg_pid == portId_ && header->nlmsg_seq == dumpSeq_;
        if (ofDump && marker_) {
          AppendMarker(batch, marker_);
          count++;
          marker_ = 0;
        }
        if (ofDump && (header->nlmsg_flags & NLM_F_DUMP_INTR)) resync_ = true;
        if (header->nlmsg_type == NLMSG_DONE && ofDump) {
          dumping_ = false;
          AppendMarker(batch, NT_LINK_DUMP_DONE);
          count++;
        } else if (header->nlmsg_type == NLMSG_ERROR && ofDump) {
          dumping_ = false;
          resync_ = true;
          RetryLater();
        } else if ((header->nlmsg_type == RTM_NEWLINK || header->nlmsg_type == RTM_DELLINK) && AppendLink(batch, header)) {
          count++;
        }
      }
    }
    if (DumpDue()) RequestResync();  // the batch is full: its replies make the socket readable again
    return count;
  }

 private:
  void AppendMarker(std::vector<uint8_t>& batch, uint32_t kind) {
    nt_link_event event{};
    event.kind = kind;
    AppendRecord(batch, event);
  }

  bool AppendLink(std::vector<uint8_t>& batch, const nlmsghdr* header) {
    if (header->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return false;
    const auto* link = static_cast<const ifinfomsg*>(NLMSG_DATA(header));
    // Bridge port notifications (AF_BRIDGE) come on RTNLGRP_LINK too, RTM_DELLINK when a port leaves its bridge.
    if (link->ifi_family != AF_UNSPEC) return false;
    nt_link_event event{};
    event.kind = header->nlmsg_type == RTM_NEWLINK ? NT_LINK_NEW : NT_LINK_DEL;
    event.ifindex = link->ifi_index;
    event.flags = link->ifi_flags;
    event.link_type = link->ifi_type;
    int left = int(IFLA_PAYLOAD(header));
    for (auto* attr = IFLA_RTA(link); RTA_OK(attr, left); attr = RTA_NEXT(attr, left)) {
      if (attr->rta_type != IFLA_IFNAME) continue;
      size_t size = std::min<size_t>(RTA_PAYLOAD(attr), NT_IFNAME_BYTES - 1);
      memcpy(event.name, RTA_DATA(attr), size);
      event.name[strnlen(event.name, size)] = '\0';
    }
    AppendRecord(batch, event);
    return true;
  }

  bool DumpDue() const { return resync_ && !dumping_ && NowMs() >= retryAtMs_; }

  void RequestResync() {
    int err = RequestLinkDump(fd_, ++dumpSeq_);
    if (err) return RetryLater();
    // Announced with the dump's first reply: the notifications queued before that are older than the dump.
    marker_ = lost_ ? NT_LINK_OVERFLOW : NT_LINK_RESYNC;
    resync_ = lost_ = false;
    dumping_ = true;
  }

  void RetryLater() {
    retryAtMs_ = NowMs() + kDumpRetryMs;
    EventLoop::Instance().SetDeadline(Id(), retryAtMs_);
  }

  // Loop thread only.
  const uint32_t portId_;
  uint32_t dumpSeq_ = 1;
  bool dumping_ = true;
  bool resync_ = false;  // a dump must start (again) once none is running
  bool lost_ = false;    // ... because notifications were lost
  uint32_t marker_ = 0;  // NT_LINK_RESYNC or NT_LINK_OVERFLOW, to go before the running dump's first reply
  int64_t retryAtMs_ = 0;
};

// Entries created and deleted in the directories watch() was given.
class DirectorySource : public ChannelSource {
 public:
  DirectorySource(int fd, Napi::Env env, Napi::Function onBatch) : ChannelSource(fd, env, onBatch, "nettrail-directories") {}

  // JavaScript thread (inotify calls are safe alongside the loop's reads): the watch id, or -errno.
  int Watch(const std::string& path) {
    int watch = inotify_add_watch(fd_, path.c_str(), IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
    return watch >= 0 ? watch : -errno;
  }
  bool Unwatch(int watch) { return inotify_rm_watch(fd_, watch) == 0; }

 protected:
  uint32_t Read(std::vector<uint8_t>& batch) override {
    alignas(inotify_event) static uint8_t buffer[16384];  // the loop thread's
    uint32_t count = 0;
    while (count < kBatchRecords) {
      ssize_t length = read(fd_, buffer, sizeof(buffer));
      if (length < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN: all read
      }
      for (ssize_t at = 0; at < length;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
        at += sizeof(inotify_event) + event->len;
        uint32_t kind = event->mask & (IN_CREATE | IN_MOVED_TO)                 ? NT_DIR_CREATED
                        : event->mask & (IN_DELETE | IN_MOVED_FROM)             ? NT_DIR_DELETED
                        : event->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT) ? NT_DIR_GONE
                        : event->mask & IN_Q_OVERFLOW                           ? NT_DIR_OVERFLOW
                                                                                : 0;
        if (kind == 0) continue;  // IN_IGNORED: a watch ended, after GONE or unwatch()
        nt_dir_event record{};
        record.watch = event->wd;
        record.kind = kind;
        if (event->len > 0) strncpy(record.name, event->name, NT_DIR_NAME_BYTES - 1);
        AppendRecord(batch, record);
        count++;
      }
    }
    return count;
  }
};

// new LinkWatcher(netnsPath, onBatch(batch: Buffer of nt_link_event | null, count)): the links of the
// namespace at netnsPath (opened on the calling thread), a dump and then every change.
class LinkWatcher : public Napi::ObjectWrap<LinkWatcher> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "LinkWatcher", {InstanceMethod("ack", &LinkWatcher::Ack), InstanceMethod("close", &LinkWatcher::Close)});
  }

  LinkWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LinkWatcher>(info) {
    Napi::Env env = info.Env();
    std::string netnsPath = info[0].As<Napi::String>();
    Rtnetlink socket;
    FailedStep failed;
    int err = OpenRtnetlink(netnsPath, &socket, &failed);
    if (err) throw SystemError(env, failed.name, failed.what, err);
    err = RequestLinkDump(socket.fd, 1);
    if (err) {
      close(socket.fd);
      throw SystemError(env, "rtnl_dump", "ask for the links of " + netnsPath, err);
    }
    source_ = std::make_shared<LinkSource>(socket, env, info[1].As<Napi::Function>());
    source_->Start();
  }

  ~LinkWatcher() override {
    if (source_) source_->Close();
  }

 private:
  Napi::Value Ack(const Napi::CallbackInfo& info) {
    source_->Ack();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    source_->Close();
    return info.Env().Undefined();
  }

  std::shared_ptr<LinkSource> source_;
};

// new DirectoryWatcher(onBatch(batch: Buffer of nt_dir_event | null, count)); watch(path) -> id; unwatch(id) -> bool.
class DirectoryWatcher : public Napi::ObjectWrap<DirectoryWatcher> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "DirectoryWatcher",
                       {InstanceMethod("watch", &DirectoryWatcher::Watch), InstanceMethod("unwatch", &DirectoryWatcher::Unwatch),
                        InstanceMethod("ack", &DirectoryWatcher::Ack), InstanceMethod("close", &DirectoryWatcher::Close)});
  }

  DirectoryWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DirectoryWatcher>(info) {
    Napi::Env env = info.Env();
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) throw SystemError(env, "inotify_init", "inotify_init1", errno);
    source_ = std::make_shared<DirectorySource>(fd, env, info[0].As<Napi::Function>());
    source_->Start();
  }

  ~DirectoryWatcher() override {
    if (source_) source_->Close();
  }

 private:
  Napi::Value Watch(const Napi::CallbackInfo& info) {
    std::string path = info[0].As<Napi::String>();
    int watch = source_->Watch(path);
    if (watch < 0) throw SystemError(info.Env(), "inotify_add_watch", "watch " + path, -watch);
    return Napi::Number::New(info.Env(), watch);
  }

  Napi::Value Unwatch(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), source_->Unwatch(info[0].As<Napi::Number>().Int32Value()));
  }

  Napi::Value Ack(const Napi::CallbackInfo& info) {
    source_->Ack();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    source_->Close();
    return info.Env().Undefined();
  }

  std::shared_ptr<DirectorySource> source_;
};

}  // namespace

void InitLinks(Napi::Env env, Napi::Object exports) {
  exports.Set("LinkWatcher", LinkWatcher::Init(env));
  exports.Set("DirectoryWatcher", DirectoryWatcher::Init(env));
}

}  // namespace nettrail
