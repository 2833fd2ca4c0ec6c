// From the loop thread (event_loop.h) to one JavaScript callback: batches of bytes, one in
// flight at a time. The callback is called as callback(buffer, count) for each batch (or
// callback(length, count) for one written into memory JavaScript handed over: SendInPlace) and
// callback(null, 0) once at the end (Close); JavaScript acknowledges each batch (Ack) after
// its event loop has turned, and until then the source sending on the channel stops reading
// (it is Busy), so what JavaScript cannot take stays in the kernel, where overflow is counted.
#ifndef NETTRAIL_JS_CHANNEL_H
#define NETTRAIL_JS_CHANNEL_H

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

namespace nettrail {

class JsChannel {
 public:
  JsChannel(Napi::Env env, Napi::Function callback, const char* name)
      : tsfn_(Napi::ThreadSafeFunction::New(env, callback, name, 0, 1)) {}

  // A batch sent is not acknowledged yet.
  bool Busy() const { return inFlight_.load(); }

  // Called (on the JavaScript thread) when JavaScript acknowledges a batch.
  void OnAck(std::function<void()> onAck) { onAck_ = std::move(onAck); }

  // Takes ownership of bytes; never blocks (the queue is unbounded, and one batch is in flight at most).
  void Send(std::vector<uint8_t>* bytes, uint32_t count) {
    inFlight_ = true;
    auto* batch = new Batch{bytes, count, 0};
    if (tsfn_.NonBlockingCall(batch, &JsChannel::CallJs) != napi_ok) {
      delete bytes;
      delete batch;
      inFlight_ = false;
    }
  }

  // A batch JavaScript already holds the memory of (a slab it handed over): callback(length, count).
  void SendInPlace(uint32_t length, uint32_t count) {
    inFlight_ = true;
    auto* batch = new Batch{nullptr, count, length};
    if (tsfn_.NonBlockingCall(batch, &JsChannel::CallJs) != napi_ok) {
      delete batch;
      inFlight_ = false;
    }
  }

  // JavaScript thread: the batch was handled.
  void Ack() {
    inFlight_ = false;
    if (onAck_) onAck_();
  }

  // The end: callback(null, 0), then the function is released. Call once.
  void Close() {
    if (tsfn_.NonBlockingCall(static_cast<Batch*>(nullptr), &JsChannel::CallJs) == napi_ok) tsfn_.Release();
  }

  // Without a last call (the object is going away with JavaScript's consent).
  void Abort() { tsfn_.Abort(); }

 private:
  struct Batch {
    std::vector<uint8_t>* bytes;  // null: in place
    uint32_t count;
    uint32_t length;
  };

  static void CallJs(Napi::Env env, Napi::Function callback, Batch* batch) {
    if (!batch) {
      if (env != nullptr) callback.Call({env.Null(), Napi::Number::New(env, 0)});
      return;
    }
    std::vector<uint8_t>* bytes = batch->bytes;
    uint32_t count = batch->count;
    uint32_t length = batch->length;
    delete batch;
    if (bytes == nullptr) {
      if (env != nullptr) callback.Call({Napi::Number::New(env, length), Napi::Number::New(env, count)});
      return;
    }
    if (env == nullptr) {
      delete bytes;
      return;
    }
    auto buffer = Napi::Buffer<uint8_t>::New(env, bytes->data(), bytes->size(),
                                             [](Napi::Env, uint8_t*, std::vector<uint8_t>* owner) { delete owner; }, bytes);
    callback.Call({buffer, Napi::Number::New(env, count)});
  }

  Napi::ThreadSafeFunction tsfn_;
  std::atomic<bool> inFlight_{false};
  std::function<void()> onAck_;
};

}  // namespace nettrail

#endif  // NETTRAIL_JS_CHANNEL_H
