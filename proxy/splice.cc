#include "proxy/splice.h"

namespace podless::proxy {

namespace {

class Splice {
 public:
  Splice(Stream* a, Stream* b) : a_(this, a), b_(this, b) {
    a_.other = &b_;
    b_.other = &a_;
  }

  void Start() {
    a_.stream->SetHandler(&a_);
    b_.stream->SetHandler(&b_);
  }

 private:
  struct Side final : StreamHandler {
    Side(Splice* owner, Stream* stream) : owner(owner), stream(stream) {}

    void OnData(std::string_view bytes) override {
      if (other->stream == nullptr) return;
      other->stream->Write(bytes);
      if (other->stream->QueuedBytes() > kHighWatermark && !paused) {
        paused = true;
        stream->SetReadPaused(true);
      }
    }
    void OnEnd() override {
      if (other->stream != nullptr) other->stream->End();
    }
    void OnWritable() override {
      // My queue drained: the other side may read again.
      if (other->stream != nullptr && other->paused) {
        other->paused = false;
        other->stream->SetReadPaused(false);
      }
    }
    void OnClosed(bool reset) override {
      stream = nullptr;
      if (reset && other->stream != nullptr) {
        other->stream->Reset();
        other->stream = nullptr;
      }
      if (other->stream == nullptr) delete owner;
    }

    Splice* owner;
    Stream* stream;
    Side* other = nullptr;
    bool paused = false;
  };

  Side a_;
  Side b_;
};

}  // namespace

void StartSplice(Stream* a, Stream* b) { (new Splice(a, b))->Start(); }

}  // namespace podless::proxy
