#include "workloads/pem_file.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace podless::workloads {
namespace {

// Bounds what ParsePemCertificates accepts, so a hostile peer cannot make us
// parse megabytes of chain.
constexpr size_t kMaxChainBytes = 1 << 20;
constexpr size_t kMaxChainCertificates = 32;

Error IoError(const std::string& what, const std::string& path, int err) {
  return MakeError(ErrorCode::kFailedPrecondition,
                   "cannot " + what + " " + path + ": " + std::strerror(err));
}

// Refuses to prompt for a passphrase: the agent runs unattended.
int NoPassword(char*, int, int, void*) { return -1; }

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Closes a descriptor when it goes out of scope (the workloads layer has no
// libuv and no proxy::UniqueFd).
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  // Closes now, reporting close()'s error (0 or an errno value).
  int Close() {
    int fd = fd_;
    fd_ = -1;
    return fd >= 0 && ::close(fd) != 0 ? errno : 0;
  }

 private:
  int fd_;
};

// "uid 65534 (nobody)", for messages that say who owns a file.
std::string OwnerText(uid_t uid) {
  std::string text = "uid " + std::to_string(uid);
  struct passwd entry;
  struct passwd* found = nullptr;
  char buf[1024];
  if (::getpwuid_r(uid, &entry, buf, sizeof(buf), &found) == 0 && found != nullptr) {
    text += std::string(" (") + found->pw_name + ")";
  }
  return text;
}

std::string ModeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

Error RefusedLink(const std::string& path) {
  return MakeError(ErrorCode::kFailedPrecondition,
                   path +
                       " is a symbolic link, which podless does not follow for a file it "
                       "keeps itself: remove the link (and check who planted it)");
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string BioContents(BIO* bio) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (!BIO_mem_contents(bio, &data, &len)) return {};
  return std::string(reinterpret_cast<const char*>(data), len);
}

}  // namespace

Status WriteFileAtomically(const std::string& path, std::string_view contents, mode_t mode) {
  static std::atomic<uint64_t> counter{0};
  const std::string suffix = ".tmp." + std::to_string(::getpid()) + "." +
                             std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
  const std::string tmp = path + suffix;
  const std::string tmp_name = BaseName(path) + suffix;
  const std::string dir = DirName(path);
  // Everything below is relative to the directory as opened here, so the
  // directory cannot be swapped between the create, the rename and the sync.
  ScopedFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0) return IoError("open directory", dir, errno);
  ScopedFd fd(::openat(dir_fd.get(), tmp_name.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (fd.get() < 0) return IoError("create", tmp, errno);
  // fchmod makes the mode exact: open() applies the umask, which could only
  // narrow it, but a caller asking for 0644 should get 0644.
  if (::fchmod(fd.get(), mode) != 0 || !WriteAll(fd.get(), contents) || ::fsync(fd.get()) != 0) {
    int err = errno;
    ::unlinkat(dir_fd.get(), tmp_name.c_str(), 0);
    return IoError("write", tmp, err);
  }
  if (int err = fd.Close(); err != 0) {
    ::unlinkat(dir_fd.get(), tmp_name.c_str(), 0);
    return IoError("write", tmp, err);
  }
  // rename() replaces whatever `path` names, a symbolic link included,
  // without following it.
  if (::renameat(dir_fd.get(), tmp_name.c_str(), dir_fd.get(), BaseName(path).c_str()) != 0) {
    int err = errno;
    ::unlinkat(dir_fd.get(), tmp_name.c_str(), 0);
    return IoError("rename " + tmp + " to", path, err);
  }
  // The rename is durable only once the directory entry is.
  if (::fsync(dir_fd.get()) != 0) return IoError("fsync directory", dir, errno);
  return {};
}

namespace {

// Reads all of `fd` (which it closes); errors name `path`.
Result<std::string> ReadAllOf(int raw_fd, const std::string& path, size_t max_bytes) {
  ScopedFd fd(raw_fd);
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("read", path, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      return MakeError(ErrorCode::kInvalidArgument,
                       path + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  return out;
}

}  // namespace

Result<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return MakeError(ErrorCode::kNotFound, path + " does not exist");
    return IoError("open", path, err);
  }
  return ReadAllOf(fd, path, max_bytes);
}

Status CheckPrivateDirectory(const std::string& path, std::string_view what) {
  const std::string name = std::string(what) + " " + path;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT) return MakeError(ErrorCode::kNotFound, name + " does not exist");
    return IoError("stat " + std::string(what), path, err);
  }
  if (!S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kFailedPrecondition, name + " exists and is not a directory");
  }
  const uid_t self = ::geteuid();
  const bool foreign = st.st_uid != self;
  if (!foreign && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0) return {};
  std::string message = name + " is owned by " + OwnerText(st.st_uid) + " with mode " +
                        ModeText(st.st_mode) +
                        ": podless keeps its CA key and workload secrets there and trusts only a "
                        "directory that its own " +
                        OwnerText(self) + " owns and that group and others cannot write. ";
  if (foreign) {
    message +=
        "Another user may have planted a CA of their own or symbolic links in it: do not "
        "reuse it; move it aside and let podless create a new one, or use another directory";
  } else {
    message +=
        "Anyone could have planted files in it: if you trust its contents, run `chmod 0700 " +
        path + "`; otherwise move it aside and let podless create a new one";
  }
  return MakeError(ErrorCode::kFailedPrecondition, message);
}

Status CheckPrivateKeyFile(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return IoError("stat", path, errno);
  if (!S_ISREG(st.st_mode)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "private key " + path + " is not a regular file");
  }
  const uid_t self = ::geteuid();
  if (st.st_uid == self && (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) == 0) return {};
  return MakeError(ErrorCode::kFailedPrecondition,
                   "private key " + path + " is owned by " + OwnerText(st.st_uid) + " with mode " +
                       ModeText(st.st_mode) + ": podless uses a key only if its own " +
                       OwnerText(self) +
                       " owns it and no one else may read or write it. Run `chown " +
                       std::to_string(self) + " " + path + " && chmod 0600 " + path +
                       "`, and replace the key (and what it signed) if others could read it");
}

Result<std::string> ReadPrivateKeyText(const std::string& path, Links links) {
  // O_NONBLOCK: a FIFO planted under the name must not hang the agent; a
  // regular file reads the same either way.
  int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  if (links == Links::kRefuse) flags |= O_NOFOLLOW;
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return MakeError(ErrorCode::kNotFound, path + " does not exist");
    if (err == ELOOP && links == Links::kRefuse) return RefusedLink(path);
    return IoError("open", path, err);
  }
  if (Status s = CheckPrivateKeyFile(fd, path); !s) {
    ::close(fd);
    return s.error();
  }
  return ReadAllOf(fd, path, 1 << 20);
}

Result<std::vector<bssl::UniquePtr<X509>>> ParsePemCertificates(std::string_view pem) {
  if (pem.size() > kMaxChainBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "certificate data is " + std::to_string(pem.size()) + " bytes, more than " +
                         std::to_string(kMaxChainBytes));
  }
  std::vector<bssl::UniquePtr<X509>> certs;
  auto too_many = [&] {
    return MakeError(ErrorCode::kInvalidArgument,
                     "more than " + std::to_string(kMaxChainCertificates) + " certificates");
  };

  if (pem.find("-----BEGIN") == std::string_view::npos) {
    // Concatenated DER.
    CBS in;
    CBS_init(&in, reinterpret_cast<const uint8_t*>(pem.data()), pem.size());
    while (CBS_len(&in) > 0) {
      if (certs.size() == kMaxChainCertificates) return too_many();
      const uint8_t* p = CBS_data(&in);
      long len = static_cast<long>(CBS_len(&in));
      bssl::UniquePtr<X509> cert(d2i_X509(nullptr, &p, len));
      ERR_clear_error();
      if (!cert) {
        return MakeError(
            ErrorCode::kInvalidArgument,
            "certificate " + std::to_string(certs.size() + 1) + " is not valid DER or PEM");
      }
      CBS_skip(&in, static_cast<size_t>(p - CBS_data(&in)));
      certs.push_back(std::move(cert));
    }
    if (certs.empty()) return MakeError(ErrorCode::kInvalidArgument, "no certificate found");
    return certs;
  }

  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return MakeError(ErrorCode::kInternal, "out of memory");
  for (;;) {
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr));
    if (!cert) {
      uint32_t err = ERR_peek_last_error();
      ERR_clear_error();
      // Running out of PEM blocks is the normal end of the input.
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) break;
      return MakeError(
          ErrorCode::kInvalidArgument,
          "certificate " + std::to_string(certs.size() + 1) + " is not a valid PEM certificate");
    }
    if (certs.size() == kMaxChainCertificates) return too_many();
    certs.push_back(std::move(cert));
  }
  if (certs.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "no PEM CERTIFICATE block found");
  }
  return certs;
}

Result<bssl::UniquePtr<EVP_PKEY>> ParsePemPrivateKey(std::string_view pem,
                                                     std::string_view source) {
  if (pem.size() > kMaxChainBytes) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(source) + ": too large for a key");
  }
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return MakeError(ErrorCode::kInternal, "out of memory");
  bssl::UniquePtr<EVP_PKEY> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr));
  uint32_t err = ERR_peek_last_error();
  ERR_clear_error();
  if (!key) {
    std::string why = "no valid PEM private key found";
    if (pem.find("ENCRYPTED") != std::string_view::npos) {
      why = "the private key is encrypted; podless needs an unencrypted key";
    } else if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
      why = "no PEM PRIVATE KEY block found";
    }
    return MakeError(ErrorCode::kInvalidArgument, std::string(source) + ": " + why);
  }
  return key;
}

std::string CertificateToPem(X509* cert) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio || !PEM_write_bio_X509(bio.get(), cert)) return {};
  return BioContents(bio.get());
}

std::string CertificateDerToPem(std::span<const uint8_t> der) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      !PEM_write_bio(bio.get(), "CERTIFICATE", "", der.data(), static_cast<long>(der.size()))) {
    return {};
  }
  return BioContents(bio.get());
}

std::span<const uint8_t> CryptoBufferBytes(const CRYPTO_BUFFER* buffer) {
  if (buffer == nullptr) return {};
  return {CRYPTO_BUFFER_data(buffer), CRYPTO_BUFFER_len(buffer)};
}

bssl::UniquePtr<CRYPTO_BUFFER> CertificateToBuffer(X509* cert) {
  uint8_t* der = nullptr;
  const int len = i2d_X509(cert, &der);
  if (len <= 0) return nullptr;
  bssl::UniquePtr<uint8_t> owner(der);
  return bssl::UniquePtr<CRYPTO_BUFFER>(CRYPTO_BUFFER_new(der, static_cast<size_t>(len), nullptr));
}

std::string PrivateKeyToPkcs8Pem(EVP_PKEY* key) {
  bssl::UniquePtr<BIO> bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      !PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)) {
    return {};
  }
  return BioContents(bio.get());
}

Result<std::vector<bssl::UniquePtr<X509>>> ReadCertificatesFile(const std::string& path) {
  auto text = ReadSmallFile(path);
  if (!text.ok()) return text.error();
  auto certs = ParsePemCertificates(*text);
  if (!certs.ok()) {
    return MakeError(certs.error().code, path + ": " + certs.error().message);
  }
  return std::move(certs).value();
}

Result<bssl::UniquePtr<EVP_PKEY>> ReadPrivateKeyFile(const std::string& path) {
  auto text = ReadPrivateKeyText(path);
  if (!text.ok()) return text.error();
  return ParsePemPrivateKey(*text, path);
}

}  // namespace podless::workloads
