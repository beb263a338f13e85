#include "tests/runtime/fake_etcd.h"

#include <algorithm>
#include <utility>

namespace podless::runtime::testing {
namespace {

// etcd's key ranges: no range_end is the key alone, "\0" is every key from
// `key` on, anything else is [key, range_end).
bool InRange(const std::string& key, const std::string& from, const std::string& end) {
  if (end.empty()) return key == from;
  if (end == std::string(1, '\0')) return key >= from;
  return key >= from && key < end;
}

Error Closed() {
  return MakeError(ErrorCode::kUnavailable, "CANCELLED: the etcd client is closed");
}

Error LeaseNotFound() {
  return MakeError(ErrorCode::kNotFound, "etcdserver: requested lease not found");
}

}  // namespace

struct FakeEtcd::Stream {
  const void* client = nullptr;
  bool watch = false;
  std::string key, range_end;  // a watch's range
  int64_t lease = 0;           // a keep-alive's lease
  bool ended = false;          // nothing more is queued for it
  bool cancelled = false;      // its handle is gone: nothing more runs
  std::function<void(const etcdpb::WatchResponse&)> on_watch;
  std::function<void(const etcdpb::LeaseKeepAliveResponse&)> on_keepalive;
  std::function<void(Status)> on_end;
};

namespace {

class StreamHandle final : public EtcdStream {
 public:
  StreamHandle(std::shared_ptr<void> stream, std::function<void()> cancel)
      : stream_(std::move(stream)), cancel_(std::move(cancel)) {}
  ~StreamHandle() override { cancel_(); }

 private:
  std::shared_ptr<void> stream_;
  std::function<void()> cancel_;
};

}  // namespace

class FakeEtcd::Client final : public EtcdKv {
 public:
  explicit Client(FakeEtcd& etcd) : etcd_(etcd) {}
  ~Client() override {
    for (const auto& stream : etcd_.streams_) {
      if (stream->client == this) stream->ended = stream->cancelled = true;
    }
  }

  void Range(const etcdpb::RangeRequest& request,
             EtcdCallback<etcdpb::RangeResponse> done) override {
    Unary<etcdpb::RangeResponse>(
        "Range", [&] { return etcd_.DoRange(request); }, std::move(done));
  }
  void Put(const etcdpb::PutRequest& request, EtcdCallback<etcdpb::PutResponse> done) override {
    Unary<etcdpb::PutResponse>(
        "Put",
        [&]() -> Result<etcdpb::PutResponse> {
          etcdpb::TxnRequest txn;
          *txn.add_success()->mutable_request_put() = request;
          auto reply = etcd_.DoTxn(txn);
          if (!reply) return reply.error();
          return reply->responses(0).response_put();
        },
        std::move(done));
  }
  void DeleteRange(const etcdpb::DeleteRangeRequest& request,
                   EtcdCallback<etcdpb::DeleteRangeResponse> done) override {
    Unary<etcdpb::DeleteRangeResponse>(
        "DeleteRange",
        [&]() -> Result<etcdpb::DeleteRangeResponse> {
          etcdpb::TxnRequest txn;
          *txn.add_success()->mutable_request_delete_range() = request;
          auto reply = etcd_.DoTxn(txn);
          if (!reply) return reply.error();
          return reply->responses(0).response_delete_range();
        },
        std::move(done));
  }
  void Txn(const etcdpb::TxnRequest& request, EtcdCallback<etcdpb::TxnResponse> done) override {
    Unary<etcdpb::TxnResponse>(
        "Txn", [&] { return etcd_.DoTxn(request); }, std::move(done));
  }
  void LeaseGrant(const etcdpb::LeaseGrantRequest& request,
                  EtcdCallback<etcdpb::LeaseGrantResponse> done) override {
    Unary<etcdpb::LeaseGrantResponse>(
        "LeaseGrant",
        [&]() -> Result<etcdpb::LeaseGrantResponse> {
          const int64_t id = request.id() != 0 ? request.id() : etcd_.next_lease_++;
          if (etcd_.leases_.contains(id)) {
            return MakeError(ErrorCode::kFailedPrecondition, "etcdserver: lease already exists");
          }
          etcd_.leases_[id].ttl = request.ttl();
          etcdpb::LeaseGrantResponse reply;
          etcd_.Header(reply.mutable_header());
          reply.set_id(id);
          reply.set_ttl(request.ttl());
          return reply;
        },
        std::move(done));
  }
  void LeaseRevoke(const etcdpb::LeaseRevokeRequest& request,
                   EtcdCallback<etcdpb::LeaseRevokeResponse> done) override {
    Unary<etcdpb::LeaseRevokeResponse>(
        "LeaseRevoke",
        [&]() -> Result<etcdpb::LeaseRevokeResponse> {
          if (!etcd_.leases_.contains(request.id())) return LeaseNotFound();
          etcd_.EndLease(request.id());
          etcdpb::LeaseRevokeResponse reply;
          etcd_.Header(reply.mutable_header());
          return reply;
        },
        std::move(done));
  }

  EtcdStreamPtr KeepAlive(int64_t lease_id, std::chrono::milliseconds,
                          std::function<void(const etcdpb::LeaseKeepAliveResponse&)> on_response,
                          std::function<void(Status)> on_end) override {
    auto stream = NewStream(std::move(on_end));
    stream->lease = lease_id;
    stream->on_keepalive = std::move(on_response);
    EtcdStreamPtr handle = Handle(stream);
    if (Refused(stream, "KeepAlive")) return handle;
    etcdpb::LeaseKeepAliveResponse reply;
    etcd_.Header(reply.mutable_header());
    reply.set_id(lease_id);
    auto lease = etcd_.leases_.find(lease_id);
    reply.set_ttl(lease == etcd_.leases_.end() ? 0 : lease->second.ttl);
    etcd_.Post([stream, reply] {
      if (!stream->cancelled) stream->on_keepalive(reply);
    });
    return handle;
  }

  EtcdStreamPtr Watch(const etcdpb::WatchCreateRequest& create,
                      std::function<void(const etcdpb::WatchResponse&)> on_response,
                      std::function<void(Status)> on_end) override {
    auto stream = NewStream(std::move(on_end));
    stream->watch = true;
    stream->key = create.key();
    stream->range_end = create.range_end();
    stream->on_watch = std::move(on_response);
    EtcdStreamPtr handle = Handle(stream);
    if (Refused(stream, "Watch")) return handle;
    etcdpb::WatchResponse created;
    etcd_.Header(created.mutable_header());
    created.set_created(true);
    const int64_t start = create.start_revision();
    if (start != 0 && start <= etcd_.compacted_) {
      created.set_canceled(true);
      created.set_compact_revision(etcd_.compacted_);
    }
    etcd_.Post([stream, created] {
      if (!stream->cancelled) stream->on_watch(created);
    });
    if (created.canceled()) {
      etcd_.End(stream,
                MakeError(ErrorCode::kFailedPrecondition, "etcd cancelled the watch: revision " +
                                                              std::to_string(etcd_.compacted_) +
                                                              " and older have been compacted"));
      return handle;
    }
    for (const Change& change : etcd_.history_) {
      if (start != 0 && change.revision >= start) etcd_.Deliver(stream, change);
    }
    return handle;
  }

  const std::string& current_endpoint() const override { return endpoint_; }

  void Close() override {
    closed_ = true;
    for (const auto& stream : etcd_.streams_) {
      if (stream->client == this) etcd_.End(stream, Closed());
    }
  }

 private:
  template <typename Resp>
  void Unary(const std::string& method, const std::function<Result<Resp>()>& apply,
             EtcdCallback<Resp> done) {
    std::optional<Error> refused =
        closed_ ? std::optional<Error>(Closed()) : etcd_.Intercept(method);
    Result<Resp> result = refused ? Result<Resp>(*refused) : apply();
    etcd_.Post([alive = std::weak_ptr<int>(alive_), done = std::move(done),
                result = std::move(result)]() mutable {
      if (!alive.expired()) done(std::move(result));
    });
  }

  std::shared_ptr<Stream> NewStream(std::function<void(Status)> on_end) {
    auto stream = std::make_shared<Stream>();
    stream->client = this;
    stream->on_end = std::move(on_end);
    etcd_.streams_.push_back(stream);
    return stream;
  }

  EtcdStreamPtr Handle(const std::shared_ptr<Stream>& stream) {
    FakeEtcd* etcd = &etcd_;
    Stream* raw = stream.get();
    return std::make_unique<StreamHandle>(stream, [etcd, raw] {
      raw->ended = raw->cancelled = true;
      std::erase_if(etcd->streams_, [raw](const auto& s) { return s.get() == raw; });
    });
  }

  // Ends a new stream at once when the client is closed, etcd is down or a
  // failure was injected.
  bool Refused(const std::shared_ptr<Stream>& stream, const std::string& method) {
    std::optional<Error> refused =
        closed_ ? std::optional<Error>(Closed()) : etcd_.Intercept(method);
    if (refused) etcd_.End(stream, *refused);
    return refused.has_value();
  }

  FakeEtcd& etcd_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  bool closed_ = false;
  std::string endpoint_ = "fake-etcd://in-memory";
};

FakeEtcd::FakeEtcd(uv_loop_t* loop) : loop_(loop), timer_(loop, [this] { Drain(); }) {}

FakeEtcd::~FakeEtcd() = default;

EtcdKvPtr FakeEtcd::Connect() { return std::make_unique<Client>(*this); }

void FakeEtcd::Post(std::function<void()> fn) {
  queue_.push_back(std::move(fn));
  if (!timer_.IsActive()) timer_.Start(0);
}

// Runs what was queued before this turn; what those callbacks queue runs on
// the next turn, so a callback never runs inside the call that queued it.
void FakeEtcd::Drain() {
  std::deque<std::function<void()>> now;
  now.swap(queue_);
  for (auto& fn : now) fn();
  if (!queue_.empty() && !timer_.IsActive()) timer_.Start(0);
}

std::optional<Error> FakeEtcd::Intercept(const std::string& method) {
  ++calls_[method];
  if (down_) return MakeError(ErrorCode::kUnavailable, "fake etcd is down");
  if (auto& failures = failures_[method]; !failures.empty()) {
    Error error = failures.front();
    failures.pop_front();
    return error;
  }
  if (auto& before = before_[method]; !before.empty()) {
    auto fn = std::move(before.front());
    before.pop_front();
    fn();
  }
  return std::nullopt;
}

void FakeEtcd::Header(etcdpb::ResponseHeader* header) const {
  header->set_cluster_id(1);
  header->set_member_id(1);
  header->set_revision(revision_);
}

Result<etcdpb::RangeResponse> FakeEtcd::DoRange(const etcdpb::RangeRequest& request) const {
  etcdpb::RangeResponse reply;
  Header(reply.mutable_header());
  for (auto it = kvs_.lower_bound(request.key()); it != kvs_.end(); ++it) {
    if (!InRange(it->first, request.key(), request.range_end())) break;
    if (request.limit() > 0 && reply.kvs_size() == request.limit()) {
      reply.set_more(true);
      break;
    }
    *reply.add_kvs() = it->second;
  }
  reply.set_count(reply.kvs_size());
  return reply;
}

bool FakeEtcd::Compare(const etcdpb::Compare& compare) const {
  auto it = kvs_.find(compare.key());
  const mvccpb::KeyValue none;
  const mvccpb::KeyValue& kv = it == kvs_.end() ? none : it->second;
  int order = 0;
  auto cmp = [](auto a, auto b) { return a < b ? -1 : (a > b ? 1 : 0); };
  switch (compare.target()) {
    case etcdpb::Compare::VERSION:
      order = cmp(kv.version(), compare.version());
      break;
    case etcdpb::Compare::CREATE:
      order = cmp(kv.create_revision(), compare.create_revision());
      break;
    case etcdpb::Compare::MOD:
      order = cmp(kv.mod_revision(), compare.mod_revision());
      break;
    case etcdpb::Compare::VALUE:
      order = kv.value().compare(compare.value());
      break;
    case etcdpb::Compare::LEASE:
      order = cmp(kv.lease(), compare.lease());
      break;
    default:
      return false;
  }
  switch (compare.result()) {
    case etcdpb::Compare::EQUAL:
      return order == 0;
    case etcdpb::Compare::NOT_EQUAL:
      return order != 0;
    case etcdpb::Compare::GREATER:
      return order > 0;
    case etcdpb::Compare::LESS:
      return order < 0;
    default:
      return false;
  }
}

Result<etcdpb::TxnResponse> FakeEtcd::DoTxn(const etcdpb::TxnRequest& request) {
  const bool succeeded = std::all_of(request.compare().begin(), request.compare().end(),
                                     [this](const etcdpb::Compare& c) { return Compare(c); });
  const auto& ops = succeeded ? request.success() : request.failure();
  for (const auto& op : ops) {
    if (op.has_request_put() && op.request_put().lease() != 0 &&
        !leases_.contains(op.request_put().lease())) {
      return LeaseNotFound();
    }
  }
  etcdpb::TxnResponse reply;
  reply.set_succeeded(succeeded);
  std::vector<mvccpb::Event> events;
  for (const auto& op : ops) {
    auto* out = reply.add_responses();
    if (op.has_request_range()) {
      auto range = DoRange(op.request_range());
      *out->mutable_response_range() = *range;
    } else if (op.has_request_put()) {
      const auto& put = op.request_put();
      Write(put.key(), put.value(), put.lease(), events);
      out->mutable_response_put();
    } else if (op.has_request_delete_range()) {
      const auto& del = op.request_delete_range();
      out->mutable_response_delete_range()->set_deleted(Erase(del.key(), del.range_end(), events));
    }
  }
  Commit(std::move(events));
  Header(reply.mutable_header());
  for (auto& response : *reply.mutable_responses()) {
    if (response.has_response_put()) Header(response.mutable_response_put()->mutable_header());
    if (response.has_response_delete_range()) {
      Header(response.mutable_response_delete_range()->mutable_header());
    }
  }
  return reply;
}

void FakeEtcd::Write(const std::string& key, const std::string& value, int64_t lease,
                     std::vector<mvccpb::Event>& events) {
  const int64_t revision = revision_ + 1;
  mvccpb::KeyValue& kv = kvs_[key];
  if (kv.create_revision() == 0) {
    kv.set_key(key);
    kv.set_create_revision(revision);
  }
  kv.set_mod_revision(revision);
  kv.set_version(kv.version() + 1);
  kv.set_value(value);
  kv.set_lease(lease);
  mvccpb::Event& event = events.emplace_back();
  event.set_type(mvccpb::Event::PUT);
  *event.mutable_kv() = kv;
}

int64_t FakeEtcd::Erase(const std::string& key, const std::string& range_end,
                        std::vector<mvccpb::Event>& events) {
  int64_t deleted = 0;
  for (auto it = kvs_.lower_bound(key); it != kvs_.end() && InRange(it->first, key, range_end);) {
    mvccpb::Event& event = events.emplace_back();
    event.set_type(mvccpb::Event::DELETE);
    event.mutable_kv()->set_key(it->first);
    event.mutable_kv()->set_mod_revision(revision_ + 1);
    it = kvs_.erase(it);
    ++deleted;
  }
  return deleted;
}

void FakeEtcd::Commit(std::vector<mvccpb::Event> events) {
  if (events.empty()) return;
  ++revision_;
  history_.push_back({revision_, std::move(events)});
  // Delivering may not change streams_ (callbacks run later, from the queue).
  for (const auto& stream : streams_) {
    if (stream->watch && !stream->ended) Deliver(stream, history_.back());
  }
}

void FakeEtcd::Deliver(const std::shared_ptr<Stream>& stream, const Change& change) {
  etcdpb::WatchResponse response;
  Header(response.mutable_header());
  response.mutable_header()->set_revision(change.revision);
  for (const mvccpb::Event& event : change.events) {
    if (InRange(event.kv().key(), stream->key, stream->range_end)) *response.add_events() = event;
  }
  if (response.events().empty()) return;
  Post([stream, response] {
    if (!stream->cancelled) stream->on_watch(response);
  });
}

void FakeEtcd::End(const std::shared_ptr<Stream>& stream, Error error) {
  if (stream->ended) return;
  stream->ended = true;
  Post([stream, error] {
    if (!stream->cancelled) stream->on_end(error);
  });
}

void FakeEtcd::EndLease(int64_t id) {
  if (leases_.erase(id) == 0) return;
  std::vector<mvccpb::Event> events;
  std::vector<std::string> keys;
  for (const auto& [key, kv] : kvs_) {
    if (kv.lease() == id) keys.push_back(key);
  }
  for (const std::string& key : keys) Erase(key, "", events);
  Commit(std::move(events));
  etcdpb::LeaseKeepAliveResponse gone;
  Header(gone.mutable_header());
  gone.set_id(id);
  gone.set_ttl(0);
  for (const auto& stream : streams_) {
    if (stream->watch || stream->ended || stream->lease != id) continue;
    Post([stream, gone] {
      if (!stream->cancelled) stream->on_keepalive(gone);
    });
  }
}

const mvccpb::KeyValue* FakeEtcd::Find(const std::string& key) const {
  auto it = kvs_.find(key);
  return it == kvs_.end() ? nullptr : &it->second;
}

std::vector<std::string> FakeEtcd::Keys(const std::string& prefix) const {
  std::vector<std::string> keys;
  for (auto it = kvs_.lower_bound(prefix); it != kvs_.end() && it->first.starts_with(prefix);
       ++it) {
    keys.push_back(it->first);
  }
  return keys;
}

void FakeEtcd::Put(const std::string& key, const std::string& value, int64_t lease) {
  std::vector<mvccpb::Event> events;
  Write(key, value, lease, events);
  Commit(std::move(events));
}

void FakeEtcd::Delete(const std::string& key) {
  std::vector<mvccpb::Event> events;
  Erase(key, "", events);
  Commit(std::move(events));
}

void FakeEtcd::ExpireLease(int64_t id) { EndLease(id); }

size_t FakeEtcd::keepalive_streams() const {
  return std::count_if(streams_.begin(), streams_.end(),
                       [](const auto& s) { return !s->watch && !s->ended; });
}

size_t FakeEtcd::watch_streams() const {
  return std::count_if(streams_.begin(), streams_.end(),
                       [](const auto& s) { return s->watch && !s->ended; });
}

void FakeEtcd::SetDown(bool down) {
  down_ = down;
  if (!down) return;
  for (const auto& stream : streams_) {
    End(stream, MakeError(ErrorCode::kUnavailable, "fake etcd is down"));
  }
}

void FakeEtcd::FailNext(const std::string& method, Error error) {
  failures_[method].push_back(std::move(error));
}

void FakeEtcd::BeforeNext(const std::string& method, std::function<void()> before) {
  before_[method].push_back(std::move(before));
}

void FakeEtcd::EndKeepAlives(Error error) {
  for (const auto& stream : streams_) {
    if (!stream->watch) End(stream, error);
  }
}

void FakeEtcd::Compact(int64_t revision) {
  compacted_ = std::max(compacted_, revision);
  std::erase_if(history_, [this](const Change& c) { return c.revision <= compacted_; });
  etcdpb::WatchResponse cancel;
  Header(cancel.mutable_header());
  cancel.set_canceled(true);
  cancel.set_compact_revision(compacted_);
  for (const auto& stream : streams_) {
    if (!stream->watch || stream->ended) continue;
    Post([stream, cancel] {
      if (!stream->cancelled) stream->on_watch(cancel);
    });
    End(stream, MakeError(ErrorCode::kFailedPrecondition, "etcd cancelled the watch: revision " +
                                                              std::to_string(compacted_) +
                                                              " and older have been compacted"));
  }
}

int FakeEtcd::calls(const std::string& method) const {
  auto it = calls_.find(method);
  return it == calls_.end() ? 0 : it->second;
}

}  // namespace podless::runtime::testing
