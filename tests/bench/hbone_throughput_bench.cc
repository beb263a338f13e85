// HBONE bulk throughput on one connection: podless HBONE client (HbonePool)
// -> podless HBONE server (ProxyCore) -> TCP echo app, one CONNECT stream,
// N bytes each way. Baselines in the same run: AES-128-GCM seal+open of the
// same bytes in-process (BoringSSL EVP_AEAD, 16 KiB records: the crypto
// bound), and direct TCP over loopback to the same echo app on the same
// loops with the same load generator.
//
// Why seal+open of N bytes is the bound: with an echo, each of the two
// proxy threads seals N bytes (one direction) and opens N bytes (the other),
// so at the crypto limit each thread needs exactly the time of one
// seal+open of N bytes, and the per-direction goodput equals that rate.
#include <openssl/aead.h>
#include <openssl/rand.h>

#include <cstdio>
#include <string>
#include <vector>

#include "tests/bench/hbone_bench_harness.h"

namespace podless::bench {
namespace {

// Seal+open of `total` bytes in 16 KiB records (TLS record size); bytes/s.
double AesGcmRate(size_t total) {
  constexpr size_t kRecord = 16 << 10;
  uint8_t key[16];
  RAND_bytes(key, sizeof(key));
  bssl::ScopedEVP_AEAD_CTX seal, open;
  Require(EVP_AEAD_CTX_init(seal.get(), EVP_aead_aes_128_gcm(), key, sizeof(key), 16, nullptr) &&
              EVP_AEAD_CTX_init(open.get(), EVP_aead_aes_128_gcm(), key, sizeof(key), 16, nullptr),
          "EVP_AEAD_CTX_init");
  std::vector<uint8_t> plain(kRecord, 'x'), sealed(kRecord + 16), opened(kRecord);
  uint8_t nonce[12] = {};
  double start = Now();
  for (size_t done = 0; done < total; done += kRecord) {
    uint64_t seq = done / kRecord;
    memcpy(nonce + 4, &seq, sizeof(seq));
    size_t sealed_len = 0, opened_len = 0;
    Require(EVP_AEAD_CTX_seal(seal.get(), sealed.data(), &sealed_len, sealed.size(), nonce,
                              sizeof(nonce), plain.data(), plain.size(), nullptr, 0) == 1,
            "seal");
    Require(EVP_AEAD_CTX_open(open.get(), opened.data(), &opened_len, opened.size(), nonce,
                              sizeof(nonce), sealed.data(), sealed_len, nullptr, 0) == 1 &&
                opened_len == kRecord,
            "open");
  }
  return total / (Now() - start);
}

// Writes `total` bytes into the stream with backpressure, half-closes, and
// counts the echo until all came back.
class Bulk final : public proxy::StreamHandler {
 public:
  Bulk(proxy::Stream* stream, size_t total)
      : stream_(stream), total_(total), chunk_(64 << 10, 'b') {
    stream_->SetHandler(this);
    start_ = Now();
    Pump();
  }
  void OnData(std::string_view bytes) override {
    received_ += bytes.size();
    if (received_ >= total_ && end_ == 0) end_ = Now();
  }
  void OnEnd() override {}
  void OnClosed(bool reset) override {
    closed_ = true;
    failed_ = reset && received_ < total_;
  }
  void OnWritable() override { Pump(); }

  bool finished() const { return end_ != 0 || failed_; }
  double seconds() const { return end_ - start_; }
  bool ok() const { return end_ != 0 && received_ == total_; }
  std::string State() const {
    return "sent " + std::to_string(sent_) + " received " + std::to_string(received_) + " of " +
           std::to_string(total_) + (closed_ ? ", closed" : "") + (failed_ ? ", reset" : "");
  }

 private:
  void Pump() {
    while (sent_ < total_ && stream_->QueuedBytes() <= proxy::kHighWatermark) {
      size_t n = std::min(chunk_.size(), total_ - sent_);
      stream_->Write(std::string_view(chunk_).substr(0, n));
      sent_ += n;
    }
    if (sent_ == total_ && !ended_) {
      ended_ = true;
      stream_->End();
    }
  }
  proxy::Stream* stream_;
  size_t total_;
  std::string chunk_;
  size_t sent_ = 0, received_ = 0;
  bool ended_ = false, closed_ = false, failed_ = false;
  double start_ = 0, end_ = 0;
};

// One bulk run over a fresh stream; bytes/s per direction.
double Transfer(Nodes& nodes, Transport transport, size_t total) {
  std::unique_ptr<Bulk> bulk;
  bool open_failed = false;
  nodes.client.Open(transport, [&](proxy::Stream* s) {
    if (s == nullptr) {
      open_failed = true;
      return;
    }
    bulk = std::make_unique<Bulk>(s, total);
  });
  bool done = nodes.client.Run([&] { return open_failed || (bulk && bulk->finished()); },
                               Smoke() ? 10000 : 120000);
  Require(done && bulk && bulk->ok(), std::string("bulk transfer over ") + Name(transport) +
                                          (bulk ? ": " + bulk->State() : ": stream not open"));
  // Let the stream close before the handler goes away.
  nodes.client.Run([&] { return false; }, 20);
  return total / bulk->seconds();
}

int Main() {
  size_t total = Smoke() ? (8u << 20) : (1024u << 20);
  int rounds = Smoke() ? 1 : 3;
  Nodes nodes;
  Transfer(nodes, Transport::kHbone, 1 << 20);  // handshake + pool warm-up
  Transfer(nodes, Transport::kTcp, 1 << 20);
  double aes = 0, tcp = 0, hbone = 0;
  for (int r = 0; r < rounds; ++r) {  // interleaved, best of `rounds` each
    aes = std::max(aes, AesGcmRate(total));
    tcp = std::max(tcp, Transfer(nodes, Transport::kTcp, total));
    hbone = std::max(hbone, Transfer(nodes, Transport::kHbone, total));
  }
  Require(nodes.client.pool_connections() == 1, "the HBONE streams did not share one connection");
  const double mib = 1 << 20;
  // Each proxy thread moves its bytes through the kernel (what direct TCP
  // costs) and through AES-GCM (seal+open), one after the other: with no
  // other cost at all HBONE would reach 1 / (1/aes + 1/tcp).
  const double serial_bound = 1 / (1 / aes + 1 / tcp);
  std::printf(
      "bench hbone_throughput bytes_each_way=%zu aes128gcm_seal_open_MiB_s=%.0f "
      "direct_tcp_MiB_s=%.0f hbone_MiB_s=%.0f ratio_vs_aes=%.3f ratio_vs_tcp=%.3f "
      "kernel_plus_aes_bound_MiB_s=%.0f ratio_vs_kernel_plus_aes=%.3f target_vs_aes=0.70\n",
      total, aes / mib, tcp / mib, hbone / mib, hbone / aes, hbone / tcp, serial_bound / mib,
      hbone / serial_bound);
  Require(Sane(aes) && Sane(tcp) && Sane(hbone), "implausible figures");
  return 0;
}

}  // namespace
}  // namespace podless::bench

int main() { return podless::bench::Main(); }
