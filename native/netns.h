// Entering a network namespace for one call: what is opened there (a netlink socket, a
// bpf_link's interface lookup, a /proc/net file) stays bound to that namespace afterwards.
#ifndef NETTRAIL_NETNS_H
#define NETTRAIL_NETNS_H

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

namespace nettrail {

// A step that failed: its name, for the exception's `step`, and what it was doing, for its message.
struct FailedStep {
  const char* name = nullptr;
  std::string what;
};

class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Runs fn with the calling thread inside the network namespace at netnsPath. Returns 0 or
// the errno of the step that failed, described in *failed (fn describes its own).
template <typename Fn>
int InNetns(const std::string& netnsPath, Fn fn, FailedStep* failed) {
  FdGuard home(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (home.get() < 0) {
    int err = errno;
    *failed = {"open_own_netns", "open /proc/thread-self/ns/net"};
    return err;
  }
  FdGuard target(open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (target.get() < 0) {
    int err = errno;
    *failed = {"open_netns", "open " + netnsPath};
    return err;
  }
  if (setns(target.get(), CLONE_NEWNET) != 0) {
    int err = errno;
    *failed = {"setns", "setns " + netnsPath};
    return err;
  }
  int err = fn();
  if (setns(home.get(), CLONE_NEWNET) != 0) abort();  // the thread must never stay elsewhere
  return err;
}

}  // namespace nettrail

#endif  // NETTRAIL_NETNS_H
