// Exceptions for JavaScript that say what failed: `step` names the step (native/addon.ts and the
// other wrappers turn it into a string code), `errno` says why when the system said.
#ifndef NETTRAIL_JS_ERRORS_H
#define NETTRAIL_JS_ERRORS_H

#include <napi.h>

#include <cstring>
#include <string>

namespace nettrail {

inline Napi::Error StepError(Napi::Env env, const char* step, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("step", Napi::String::New(env, step));
  return error;
}

// `detail` (a library's log, say) goes on its own line after the message.
inline Napi::Error SystemError(Napi::Env env, const char* step, const std::string& what, int err, const std::string& detail = "") {
  std::string message = what + ": " + strerror(err);
  if (!detail.empty()) message += "\n" + detail;
  Napi::Error error = StepError(env, step, message);
  error.Set("errno", Napi::Number::New(env, err));
  return error;
}

}  // namespace nettrail

#endif  // NETTRAIL_JS_ERRORS_H
