// Files that hold secrets and certificates: atomic, private writes and strict
// PEM parsing with errors that name the file.
#pragma once

#include <openssl/evp.h>
#include <openssl/pool.h>
#include <openssl/x509.h>
#include <sys/types.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/result.h"

namespace podless::workloads {

// Replaces `path` with `contents` so that a crash leaves either the old or the
// new file, never a torn one: write a temporary file beside it (created with
// `mode`, 0600 by default, whatever the umask), fsync, rename over `path`,
// fsync the directory.
Status WriteFileAtomically(const std::string& path, std::string_view contents, mode_t mode = 0600);

// Reads a whole file. NOT_FOUND if it does not exist; INVALID_ARGUMENT if it is
// larger than max_bytes (a certificate or key file is a few KiB).
Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 1 << 20);

// Parses certificates from untrusted bytes: one or more PEM "CERTIFICATE"
// blocks (other PEM blocks are skipped), or, if the input has no PEM header,
// concatenated DER certificates. Never crashes on garbage; an input with no
// certificate, or with a malformed one, is an error.
Result<std::vector<bssl::UniquePtr<X509>>> ParsePemCertificates(std::string_view pem);

// Parses one unencrypted private key (PKCS#8 "PRIVATE KEY", "EC PRIVATE KEY" or
// "RSA PRIVATE KEY"). `source` names where it came from, for the error.
Result<bssl::UniquePtr<EVP_PKEY>> ParsePemPrivateKey(std::string_view pem, std::string_view source);

// The PEM encodings podless writes.
std::string CertificateToPem(X509* cert);
// The same for a certificate held as DER.
std::string CertificateDerToPem(std::span<const uint8_t> der);
// A CRYPTO_BUFFER's bytes; empty for null.
std::span<const uint8_t> CryptoBufferBytes(const CRYPTO_BUFFER* buffer);
// A certificate as DER in a CRYPTO_BUFFER (null if it cannot be encoded).
bssl::UniquePtr<CRYPTO_BUFFER> CertificateToBuffer(X509* cert);
std::string PrivateKeyToPkcs8Pem(EVP_PKEY* key);

// Reads and parses a file of each kind; errors name the file.
Result<std::vector<bssl::UniquePtr<X509>>> ReadCertificatesFile(const std::string& path);
Result<bssl::UniquePtr<EVP_PKEY>> ReadPrivateKeyFile(const std::string& path);

}  // namespace podless::workloads
