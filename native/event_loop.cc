// The single native thread: one epoll set, a queue of calls from other threads woken by an eventfd,
// per-source deadlines. See event_loop.h.
#include "event_loop.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace nettrail {

int64_t NowMs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

namespace {
// epoll data of the eventfd; sources' ids start at 1.
constexpr uint64_t kWakeId = 0;
}  // namespace

struct EventLoop::State {
  int epollFd = -1;
  int wakeFd = -1;
  std::thread::id threadId;
  std::once_flag started;
  std::mutex mutex;
  std::deque<std::function<void()>> queue;
  uint64_t nextId = 1;

  // Loop-thread only.
  struct Entry {
    int fd;
    std::shared_ptr<EventSource> source;
    bool paused = false;
    int64_t deadlineMs = -1;
  };
  std::unordered_map<uint64_t, Entry> entries;

  void Run() {
    pthread_setname_np(pthread_self(), "nettrail-events");
    epoll_event events[64];
    for (;;) {
      int timeout = -1;
      int64_t now = NowMs();
      for (auto& [id, entry] : entries) {
        if (entry.deadlineMs < 0) continue;
        int64_t wait = entry.deadlineMs > now ? entry.deadlineMs - now : 0;
        if (timeout < 0 || wait < timeout) timeout = int(wait);
      }
      int n = epoll_wait(epollFd, events, 64, timeout);
      if (n < 0 && errno != EINTR) abort();
      for (int i = 0; i < n; i++) {
        uint64_t id = events[i].data.u64;
        if (id == kWakeId) {
          RunQueued();
          continue;
        }
        auto it = entries.find(id);
        if (it != entries.end() && !it->second.paused) {
          std::shared_ptr<EventSource> source = it->second.source;  // it may remove itself
          source->OnReadable();
        }
      }
      now = NowMs();
      std::vector<std::shared_ptr<EventSource>> due;
      for (auto& [id, entry] : entries) {
        if (entry.deadlineMs >= 0 && entry.deadlineMs <= now) {
          entry.deadlineMs = -1;
          due.push_back(entry.source);
        }
      }
      for (auto& source : due) source->OnDeadline();
    }
  }

  void RunQueued() {
    uint64_t count;
    if (read(wakeFd, &count, sizeof(count)) < 0 && errno != EAGAIN) abort();
    std::deque<std::function<void()>> calls;
    {
      std::lock_guard<std::mutex> lock(mutex);
      calls.swap(queue);
    }
    for (auto& call : calls) call();
  }

  void Watch(uint64_t id, Entry& entry, bool on) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = id;
    epoll_ctl(epollFd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, entry.fd, &event);
  }
};

EventLoop& EventLoop::Instance() {
  static EventLoop* loop = new EventLoop();  // never destroyed: its thread lives as long as the process
  return *loop;
}

EventLoop::EventLoop() : state_(new State()) {
  state_->epollFd = epoll_create1(EPOLL_CLOEXEC);
  state_->wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (state_->epollFd < 0 || state_->wakeFd < 0) abort();
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeId;
  epoll_ctl(state_->epollFd, EPOLL_CTL_ADD, state_->wakeFd, &event);
}

void EventLoop::Post(std::function<void()> fn) {
  State* s = state_;
  std::call_once(s->started, [s] {
    std::thread thread([s] { s->Run(); });
    s->threadId = thread.get_id();
    thread.detach();
  });
  {
    std::lock_guard<std::mutex> lock(s->mutex);
    s->queue.push_back(std::move(fn));
  }
  uint64_t one = 1;
  if (write(s->wakeFd, &one, sizeof(one)) < 0 && errno != EAGAIN) abort();
}

bool EventLoop::OnLoopThread() const { return std::this_thread::get_id() == state_->threadId; }

uint64_t EventLoop::Add(int fd, std::shared_ptr<EventSource> source) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    id = state_->nextId++;
  }
  source->loopId_ = id;
  State* s = state_;
  Post([s, id, fd, source] {
    auto& entry = s->entries[id] = State::Entry{fd, source};
    s->Watch(id, entry, true);
  });
  return id;
}

void EventLoop::Remove(uint64_t id, std::function<void()> done) {
  State* s = state_;
  Post([s, id, done] {
    auto it = s->entries.find(id);
    if (it != s->entries.end()) {
      if (!it->second.paused) s->Watch(id, it->second, false);
      std::shared_ptr<EventSource> source = it->second.source;
      s->entries.erase(it);
      source->OnRemoved();
    }
    if (done) done();
  });
}

void EventLoop::Pause(uint64_t id) {
  State* s = state_;
  Post([s, id] {
    auto it = s->entries.find(id);
    if (it == s->entries.end() || it->second.paused) return;
    s->Watch(id, it->second, false);
    it->second.paused = true;
  });
}

void EventLoop::Resume(uint64_t id) {
  State* s = state_;
  Post([s, id] {
    auto it = s->entries.find(id);
    if (it == s->entries.end() || !it->second.paused) return;
    it->second.paused = false;
    s->Watch(id, it->second, true);
  });
}

void EventLoop::SetDeadline(uint64_t id, int64_t atMs) {
  State* s = state_;
  Post([s, id, atMs] {
    auto it = s->entries.find(id);
    if (it != s->entries.end()) it->second.deadlineMs = atMs;
  });
}

}  // namespace nettrail
