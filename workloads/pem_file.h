// Files that hold secrets and certificates: atomic, private writes, strict
// PEM parsing with errors that name the file, and the checks that keep the
// agent from trusting a directory or key file someone else controls.
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
// fsync the directory. The temporary file has a name of its own (pid and a
// counter) and is created relative to the directory's descriptor with
// O_EXCL | O_NOFOLLOW, so a file or symbolic link planted under that name
// fails the write instead of being written through; a symbolic link at
// `path` itself is replaced, never followed.
Status WriteFileAtomically(const std::string& path, std::string_view contents, mode_t mode = 0600);

// Reads a whole file. NOT_FOUND if it does not exist; INVALID_ARGUMENT if it is
// larger than max_bytes (a certificate or key file is a few KiB).
Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 1 << 20);

// Refuses a directory the agent would keep secrets in (its state dir, the
// `ca init --out` directory) unless the process's effective uid owns it and
// group and others cannot write it: 0700 and 0711 pass. Another owner, or
// anyone who may write in it, could have planted a CA of their own (which
// the agent would then sign every SVID with) or a symbolic link where the
// agent writes. `what` names the directory in the error ("state dir"), which
// also gives its owner, its mode and what to do. NOT_FOUND if it does not
// exist; FAILED_PRECONDITION if it is refused or not a directory.
Status CheckPrivateDirectory(const std::string& path, std::string_view what);

// Refuses an open private key file (`fd`, opened from `path`) unless the
// effective uid owns it and group and others can neither read nor write it
// (0600 and 0400 pass). The error names the path, its owner and mode, and
// the chown/chmod that fixes it.
Status CheckPrivateKeyFile(int fd, const std::string& path);

// Whether ReadPrivateKeyText follows a symbolic link at the path: an
// operator's --ca-key may be one (a mounted secret); the agent's own key in
// its state dir never is.
enum class Links { kFollow, kRefuse };

// Reads a private key file's text after CheckPrivateKeyFile. NOT_FOUND if it
// does not exist.
Result<std::string> ReadPrivateKeyText(const std::string& path, Links links = Links::kFollow);

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

// Reads and parses a file of each kind; errors name the file. The key file
// must pass CheckPrivateKeyFile.
Result<std::vector<bssl::UniquePtr<X509>>> ReadCertificatesFile(const std::string& path);
Result<bssl::UniquePtr<EVP_PKEY>> ReadPrivateKeyFile(const std::string& path);

}  // namespace podless::workloads
