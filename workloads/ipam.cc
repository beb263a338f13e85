#include "workloads/ipam.h"

#include <bit>

namespace podless::workloads {
namespace {

Error Invalid(std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

}  // namespace

Result<uint32_t> ParseIpv4(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Invalid("invalid IPv4 address \"" + std::string(text.substr(0, 64)) + "\": " + why);
  };
  uint32_t addr = 0;
  size_t pos = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (pos >= text.size() || text[pos] != '.') return bad("expected four dot-separated octets");
      ++pos;
    }
    size_t start = pos;
    uint32_t value = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9' && pos - start < 4) {
      value = value * 10 + static_cast<uint32_t>(text[pos] - '0');
      ++pos;
    }
    size_t digits = pos - start;
    if (digits == 0) return bad("octet " + std::to_string(octet + 1) + " is not a number");
    if (digits > 3 || value > 255) {
      return bad("octet " + std::to_string(octet + 1) + " is larger than 255");
    }
    if (digits > 1 && text[start] == '0') {
      return bad("octet " + std::to_string(octet + 1) + " has a leading zero");
    }
    addr = (addr << 8) | value;
  }
  if (pos != text.size()) return bad("unexpected text after the fourth octet");
  return addr;
}

std::string FormatIpv4(uint32_t addr) {
  return std::to_string(addr >> 24) + "." + std::to_string((addr >> 16) & 0xff) + "." +
         std::to_string((addr >> 8) & 0xff) + "." + std::to_string(addr & 0xff);
}

Result<Cidr> Cidr::Parse(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Invalid("invalid CIDR \"" + std::string(text.substr(0, 64)) +
                   "\": missing prefix length (e.g. 127.64.0.0/10)");
  }
  auto addr = ParseIpv4(text.substr(0, slash));
  if (!addr.ok()) return Invalid("invalid CIDR: " + addr.error().message);
  std::string_view prefix_text = text.substr(slash + 1);
  int prefix = 0;
  bool prefix_ok = !prefix_text.empty() && prefix_text.size() <= 2 &&
                   !(prefix_text.size() > 1 && prefix_text[0] == '0');
  for (char c : prefix_text) {
    if (c < '0' || c > '9') prefix_ok = false;
    prefix = prefix * 10 + (c - '0');
  }
  if (!prefix_ok || prefix > 32) {
    return Invalid("invalid CIDR \"" + std::string(text.substr(0, 64)) +
                   "\": prefix length must be a number from 0 to 32");
  }
  Cidr cidr{*addr, static_cast<uint8_t>(prefix)};
  if ((cidr.base & ~cidr.Mask()) != 0) {
    Cidr aligned{cidr.base & cidr.Mask(), cidr.prefix};
    return Invalid("invalid CIDR \"" + std::string(text) + "\": host bits are set (did you mean " +
                   aligned.ToString() + "?)");
  }
  return cidr;
}

uint32_t Cidr::Mask() const {
  return prefix == 0 ? 0 : static_cast<uint32_t>(~uint64_t{0} << (32 - prefix));
}

bool Cidr::Contains(uint32_t addr) const { return (addr & Mask()) == base; }

uint64_t Cidr::Size() const { return uint64_t{1} << (32 - prefix); }

std::string Cidr::ToString() const { return FormatIpv4(base) + "/" + std::to_string(prefix); }

// One page of the bitmap: a set bit is an allocated address.
struct AddressPool::Page {
  uint64_t words[kPageWords] = {};
  uint32_t used = 0;  // set bits
};

AddressPool::AddressPool(Cidr cidr) : cidr_(cidr), size_(cidr.Size()) {
  if (cidr_.prefix >= 31) {
    first_ = 0;
    end_ = size_;
  } else {
    first_ = 1;        // network address
    end_ = size_ - 1;  // broadcast address
  }
  capacity_ = end_ - first_;
  cursor_ = first_;
  pages_.resize((size_ + kPageBits - 1) / kPageBits);
}

AddressPool::~AddressPool() = default;

bool AddressPool::Usable(uint64_t offset) const { return offset >= first_ && offset < end_; }

bool AddressPool::Test(uint64_t offset) const {
  const Page* page = pages_[offset / kPageBits].get();
  if (page == nullptr) return false;
  uint64_t bit = offset % kPageBits;
  return (page->words[bit / 64] >> (bit % 64)) & 1;
}

void AddressPool::Set(uint64_t offset) {
  auto& page = pages_[offset / kPageBits];
  if (!page) page = std::make_unique<Page>();
  uint64_t bit = offset % kPageBits;
  page->words[bit / 64] |= uint64_t{1} << (bit % 64);
  ++page->used;
  ++allocated_;
}

void AddressPool::Clear(uint64_t offset) {
  auto& page = pages_[offset / kPageBits];
  uint64_t bit = offset % kPageBits;
  page->words[bit / 64] &= ~(uint64_t{1} << (bit % 64));
  --allocated_;
  if (--page->used == 0) page.reset();
}

uint64_t AddressPool::FindFree(uint64_t from, uint64_t to) const {
  uint64_t offset = from;
  while (offset < to) {
    uint64_t page_index = offset / kPageBits;
    uint64_t page_start = page_index * kPageBits;
    uint64_t page_end = page_start + kPageBits;
    const Page* page = pages_[page_index].get();
    if (page == nullptr) return offset;  // an untouched page is all free
    if (page->used == kPageBits) {       // a full page: skip it whole
      offset = page_end;
      continue;
    }
    uint64_t limit = page_end < to ? page_end : to;
    while (offset < limit) {
      uint64_t bit = offset - page_start;
      // Free bits of this word at or above `bit`.
      uint64_t free_bits = ~page->words[bit / 64] & (~uint64_t{0} << (bit % 64));
      if (free_bits != 0) {
        uint64_t found = page_start + (bit / 64) * 64 + std::countr_zero(free_bits);
        return found < to ? found : to;
      }
      offset = page_start + (bit / 64 + 1) * 64;  // a full word: skip it whole
    }
  }
  return to;
}

Result<uint32_t> AddressPool::Allocate() {
  uint64_t found = end_;
  if (allocated_ < capacity_) {
    // Next-fit: from the cursor to the end, then wrap around to the cursor.
    found = FindFree(cursor_, end_);
    if (found == end_) {
      found = FindFree(first_, cursor_);
      if (found == cursor_) found = end_;
    }
  }
  if (found == end_) {
    return MakeError(
        ErrorCode::kResourceExhausted,
        "no free address in " + cidr_.ToString() + " (" + std::to_string(allocated_) + " in use)");
  }
  Set(found);
  cursor_ = found + 1 < end_ ? found + 1 : first_;
  return static_cast<uint32_t>(cidr_.base + found);
}

Status AddressPool::Reserve(uint32_t addr) {
  if (!cidr_.Contains(addr)) {
    return Invalid("address " + FormatIpv4(addr) + " is not in " + cidr_.ToString());
  }
  uint64_t offset = addr - cidr_.base;
  if (!Usable(offset)) {
    return Invalid("address " + FormatIpv4(addr) + " is the " +
                   (offset == 0 ? "network" : "broadcast") + " address of " + cidr_.ToString());
  }
  if (Test(offset)) {
    return MakeError(ErrorCode::kAlreadyExists,
                     "address " + FormatIpv4(addr) + " is already allocated");
  }
  Set(offset);
  return {};
}

void AddressPool::Release(uint32_t addr) {
  if (!cidr_.Contains(addr)) return;
  uint64_t offset = addr - cidr_.base;
  if (!Usable(offset) || !Test(offset)) return;
  Clear(offset);
}

bool AddressPool::IsAllocated(uint32_t addr) const {
  if (!cidr_.Contains(addr)) return false;
  uint64_t offset = addr - cidr_.base;
  return Usable(offset) && Test(offset);
}

uint32_t AddressPool::cursor() const { return static_cast<uint32_t>(cidr_.base + cursor_); }

void AddressPool::set_cursor(uint32_t addr) {
  if (!cidr_.Contains(addr)) {
    cursor_ = first_;
    return;
  }
  uint64_t offset = addr - cidr_.base;
  cursor_ = Usable(offset) ? offset : first_;
}

}  // namespace podless::workloads
