// Address management: IPv4 addresses and CIDRs, and the pool workload
// addresses are handed out from. Addresses are IPv4 in host byte order.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "workloads/result.h"

namespace podless::workloads {

// Strict dotted quad: four decimal octets 0..255, no leading zeros (they would
// read as octal to inet_aton), no spaces.
Result<uint32_t> ParseIpv4(std::string_view text);
std::string FormatIpv4(uint32_t addr);

struct Cidr {
  uint32_t base = 0;
  uint8_t prefix = 32;

  // "127.64.0.0/10". The base must be aligned to the prefix: "127.64.0.1/10" is
  // an error that suggests the aligned form.
  static Result<Cidr> Parse(std::string_view text);
  bool Contains(uint32_t addr) const;
  uint64_t Size() const;  // 2^(32 - prefix)
  uint32_t Mask() const;
  std::string ToString() const;
  bool operator==(const Cidr&) const = default;
};

// Hands out the addresses of a CIDR, each at most once until released.
// Usable: every address except the network and broadcast addresses (a /31 or
// /32 has neither, RFC 3021). Allocation is next-fit: it continues after the
// last address handed out, so a released address is reused only once the
// cursor has gone around the whole range, which keeps a departed workload's
// address from reaching a newcomer while peers may still hold it.
//
// Memory is a bitmap in 8 KiB pages of 65536 addresses, allocated on first use
// and freed when empty: a /10 costs at most 512 KiB, an idle /8 almost nothing.
// The scan skips full pages and full 64-bit words, so allocation stays cheap
// with millions of addresses in use. Not thread-safe (the loop owns it).
class AddressPool {
 public:
  explicit AddressPool(Cidr cidr);
  ~AddressPool();
  AddressPool(const AddressPool&) = delete;
  AddressPool& operator=(const AddressPool&) = delete;

  // RESOURCE_EXHAUSTED "no free address in 127.64.0.0/10 (4194302 in use)".
  Result<uint32_t> Allocate();
  // Marks an address taken, as restored from the state store after a restart;
  // does not move the cursor. INVALID_ARGUMENT if outside the CIDR or the
  // network/broadcast address, ALREADY_EXISTS if taken.
  Status Reserve(uint32_t addr);
  // Returns an address to the pool; a no-op for an address not allocated.
  void Release(uint32_t addr);

  bool IsAllocated(uint32_t addr) const;
  uint64_t allocated() const { return allocated_; }
  uint64_t capacity() const { return capacity_; }
  const Cidr& cidr() const { return cidr_; }

  // The address the next search starts at; persisted with the allocations so
  // the reuse order survives a restart. set_cursor ignores an address outside
  // the CIDR (the search then starts at the first usable address).
  uint32_t cursor() const;
  void set_cursor(uint32_t addr);

 private:
  struct Page;
  static constexpr uint64_t kPageBits = 1 << 16;
  static constexpr uint64_t kPageWords = kPageBits / 64;

  bool Usable(uint64_t offset) const;
  bool Test(uint64_t offset) const;
  void Set(uint64_t offset);
  void Clear(uint64_t offset);
  // First offset in [from, to) that is usable and free, or `to`.
  uint64_t FindFree(uint64_t from, uint64_t to) const;

  Cidr cidr_;
  uint64_t size_ = 0;      // addresses in the CIDR
  uint64_t first_ = 0;     // first usable offset
  uint64_t end_ = 0;       // one past the last usable offset
  uint64_t capacity_ = 0;  // end_ - first_
  uint64_t allocated_ = 0;
  uint64_t cursor_ = 0;  // offset where the next search starts, in [first_, end_)
  std::vector<std::unique_ptr<Page>> pages_;
};

}  // namespace podless::workloads
