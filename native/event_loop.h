// The addon's one thread model: a single native thread ("nettrail-events") waits on one epoll
// set for every descriptor nettrail reads — ring buffers, netlink sockets of every namespace,
// inotify — and hands what it read to JavaScript through one threadsafe-function call per batch.
// Sources never block this thread: a source whose JavaScript consumer is behind stops being
// watched (Pause) until JavaScript acknowledges (Resume), so the kernel side (ring buffer,
// netlink socket buffer) fills and counts what no longer fits.
#ifndef NETTRAIL_EVENT_LOOP_H
#define NETTRAIL_EVENT_LOOP_H

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

namespace nettrail {

// Something the loop serves. Every method runs on the loop thread.
class EventSource {
 public:
  virtual ~EventSource() = default;
  // The descriptor became readable (EPOLLIN), or had an error/hang-up.
  virtual void OnReadable() = 0;
  // The deadline set with EventLoop::SetDeadline passed.
  virtual void OnDeadline() {}
  // The source was removed (EventLoop::Remove): last chance to deliver what it holds.
  virtual void OnRemoved() {}
  // Its id in the loop: set by EventLoop::Add before the loop can call the source.
  uint64_t loop_id() const { return loopId_.load(); }

 private:
  friend class EventLoop;
  std::atomic<uint64_t> loopId_{0};
};

// Monotonic milliseconds, the loop's clock for deadlines.
int64_t NowMs();

class EventLoop {
 public:
  // The process's loop; its thread starts with the first source.
  static EventLoop& Instance();

  // Every call below is thread-safe: it is queued and runs on the loop thread in order.
  // Watch fd for `source` (it must stay open until the source is removed); returns the source's id (its loop_id()).
  uint64_t Add(int fd, std::shared_ptr<EventSource> source);
  // Stop watching; then OnRemoved() runs, then `done` (on the loop thread), then the loop drops its reference.
  void Remove(uint64_t id, std::function<void()> done = nullptr);
  // Stop / start watching the descriptor (OnDeadline still runs while paused).
  void Pause(uint64_t id);
  void Resume(uint64_t id);
  // OnDeadline() once at `atMs` (NowMs() clock); a later call replaces it, -1 cancels.
  void SetDeadline(uint64_t id, int64_t atMs);
  // Runs fn on the loop thread.
  void Post(std::function<void()> fn);
  // True on the loop thread.
  bool OnLoopThread() const;

 private:
  EventLoop();
  struct State;
  State* state_;
};

}  // namespace nettrail

#endif  // NETTRAIL_EVENT_LOOP_H
