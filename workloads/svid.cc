#include "workloads/svid.h"

#include <openssl/asn1.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "workloads/pem_file.h"

namespace podless::workloads {

std::string Svid::CertificateChainPem() const {
  std::string out = CertificateDerToPem(CryptoBufferBytes(leaf.get()));
  for (const auto& cert : intermediates) out += CertificateDerToPem(CryptoBufferBytes(cert.get()));
  return out;
}

bssl::UniquePtr<X509> Svid::ParseLeaf() const {
  return bssl::UniquePtr<X509>(X509_parse_from_buffer(leaf.get()));
}

std::string Svid::PrivateKeyPem() const { return PrivateKeyToPkcs8Pem(private_key.get()); }

std::vector<uint8_t> Svid::LeafDer() const {
  std::span<const uint8_t> der = CryptoBufferBytes(leaf.get());
  return std::vector<uint8_t>(der.begin(), der.end());
}

std::vector<uint8_t> Svid::PrivateKeyPkcs8Der() const {
  bssl::ScopedCBB cbb;
  uint8_t* der = nullptr;
  size_t len = 0;
  if (!CBB_init(cbb.get(), 256) || !EVP_marshal_private_key(cbb.get(), private_key.get()) ||
      !CBB_finish(cbb.get(), &der, &len)) {
    return {};
  }
  std::vector<uint8_t> out(der, der + len);
  OPENSSL_free(der);
  return out;
}

bool Asn1TimeToUnix(const ASN1_TIME* time, int64_t* out) {
  // This BoringSSL has no ASN1_TIME_to_posix: measure the distance from the
  // epoch instead.
  bssl::UniquePtr<ASN1_TIME> epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int seconds = 0;
  if (!epoch || time == nullptr || !ASN1_TIME_diff(&days, &seconds, epoch.get(), time)) {
    return false;
  }
  *out = static_cast<int64_t>(days) * 86400 + seconds;
  return true;
}

}  // namespace podless::workloads
