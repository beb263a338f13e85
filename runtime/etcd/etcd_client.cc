#include "runtime/etcd/etcd_client.h"

#include <list>
#include <optional>
#include <utility>

#include "proxy/base/timer.h"
#include "proxy/base/uv_handle.h"
#include "runtime/etcd/etcd_connection.h"
#include "runtime/grpc/framing.h"

namespace podless::runtime {
namespace {

using Millis = std::chrono::milliseconds;

constexpr char kRangePath[] = "/etcdserverpb.KV/Range";
constexpr char kPutPath[] = "/etcdserverpb.KV/Put";
constexpr char kDeleteRangePath[] = "/etcdserverpb.KV/DeleteRange";
constexpr char kTxnPath[] = "/etcdserverpb.KV/Txn";
constexpr char kLeaseGrantPath[] = "/etcdserverpb.Lease/LeaseGrant";
constexpr char kLeaseRevokePath[] = "/etcdserverpb.Lease/LeaseRevoke";
constexpr char kLeaseKeepAlivePath[] = "/etcdserverpb.Lease/LeaseKeepAlive";
constexpr char kWatchPath[] = "/etcdserverpb.Watch/Watch";

class EtcdClientImpl;

// Stops a timer that may never have been created (or was destroyed).
void StopTimer(const proxy::TimerPtr& timer) {
  if (timer) timer->Stop();
}

// One gRPC call as the client tracks it: unary (Range, Put, ...) or a
// long-lived stream (Watch, LeaseKeepAlive). Shared by the client's call list,
// the callbacks posted for it and, for a stream, the EtcdStream handle, so
// that whichever lets go last frees it.
struct Call final : GrpcStreamSink, std::enable_shared_from_this<Call> {
  EtcdClientImpl* client = nullptr;  // null once the call ended or the client is gone
  std::string path;
  bool streaming = false;
  std::list<std::shared_ptr<Call>>::iterator in_list;
  // Where it runs once started; both cleared when the stream is over.
  EtcdConnection* connection = nullptr;
  int32_t stream_id = -1;
  bool ended = false;        // its end is decided: nothing more is posted
  bool finished = false;     // on_end ran: nothing runs any more
  bool cancelled = false;    // the owner let go: nothing runs at all
  uint64_t deadline_ms = 0;  // uv_now() of a unary call's deadline
  proxy::TimerPtr deadline;  // unary calls
  proxy::TimerPtr ticker;    // keep-alives: the next request, the response check
  uint64_t last_response_ms = 0;
  std::string repeat_frame;  // keep-alives: the request every tick sends
  // Run from the client's dispatch, never inside nghttp2.
  std::function<void(std::string)> on_message;
  std::function<void(Status)> on_end;

  // GrpcStreamSink
  void OnGrpcMessage(std::string message) override;
  void OnGrpcClose(Status status) override;
};

// Destroying it cancels the stream; its callbacks never run again.
class StreamHandle final : public EtcdStream {
 public:
  explicit StreamHandle(std::shared_ptr<Call> call) : call_(std::move(call)) {}
  ~StreamHandle() override;

 private:
  std::shared_ptr<Call> call_;
};

class EtcdClientImpl final : public EtcdClient, public EtcdConnection::Listener {
 public:
  EtcdClientImpl(uv_loop_t* loop, EtcdOptions options, std::vector<EtcdEndpoint> endpoints,
                 EtcdTlsContextPtr tls);
  ~EtcdClientImpl() override;

  // EtcdClient
  void Range(const etcdpb::RangeRequest& request,
             EtcdCallback<etcdpb::RangeResponse> done) override {
    Unary(kRangePath, request, std::move(done));
  }
  void Put(const etcdpb::PutRequest& request, EtcdCallback<etcdpb::PutResponse> done) override {
    Unary(kPutPath, request, std::move(done));
  }
  void DeleteRange(const etcdpb::DeleteRangeRequest& request,
                   EtcdCallback<etcdpb::DeleteRangeResponse> done) override {
    Unary(kDeleteRangePath, request, std::move(done));
  }
  void Txn(const etcdpb::TxnRequest& request, EtcdCallback<etcdpb::TxnResponse> done) override {
    Unary(kTxnPath, request, std::move(done));
  }
  void LeaseGrant(const etcdpb::LeaseGrantRequest& request,
                  EtcdCallback<etcdpb::LeaseGrantResponse> done) override {
    Unary(kLeaseGrantPath, request, std::move(done));
  }
  void LeaseRevoke(const etcdpb::LeaseRevokeRequest& request,
                   EtcdCallback<etcdpb::LeaseRevokeResponse> done) override {
    Unary(kLeaseRevokePath, request, std::move(done));
  }
  EtcdStreamPtr KeepAlive(int64_t lease_id, Millis interval,
                          std::function<void(const etcdpb::LeaseKeepAliveResponse&)> on_response,
                          std::function<void(Status)> on_end) override;
  EtcdStreamPtr Watch(const etcdpb::WatchCreateRequest& create,
                      std::function<void(const etcdpb::WatchResponse&)> on_response,
                      std::function<void(Status)> on_end) override;
  bool connected() const override { return state_ == State::kConnected; }
  const std::string& current_endpoint() const override { return current_endpoint_; }
  void Close() override;

  // For Call and StreamHandle.
  uint64_t Now() const { return uv_now(loop_); }
  void Post(std::function<void()> fn);
  // Decides the call's end: stops its timers and stream, posts on_end.
  void End(const std::shared_ptr<Call>& call, Status status);
  // The owner let go: like End, but nothing runs.
  void Cancel(Call& call);

 private:
  enum class State { kIdle, kConnecting, kConnected };

  template <typename Req, typename Resp>
  void Unary(const char* path, const Req& request, EtcdCallback<Resp> done);
  std::shared_ptr<Call> NewCall(const char* path, bool streaming);
  void Start(const std::shared_ptr<Call>& call);
  void StartOnConnection(const std::shared_ptr<Call>& call);
  void KeepAliveTick(Call& call);
  void ConnectTo(size_t index);
  void Retire();
  void Dispatch();

  // EtcdConnection::Listener
  void OnConnected(EtcdConnection& connection) override;
  void OnConnectFailed(EtcdConnection& connection, Error error) override;
  void OnDisconnected(EtcdConnection& connection, Error error) override;

  uv_loop_t* loop_;
  EtcdOptions options_;
  std::vector<EtcdEndpoint> endpoints_;
  EtcdTlsContextPtr tls_;  // https:// endpoints
  // The connections' streams' deferred work; outlives the connections.
  proxy::Dispatcher streams_;
  size_t endpoint_index_ = 0;
  std::string current_endpoint_;
  State state_ = State::kIdle;
  bool closed_ = false;
  // The connect round: every endpoint once, starting at endpoint_index_.
  size_t round_attempts_ = 0;
  std::string round_errors_;
  EtcdConnectionPtr connection_;
  // Dead connections wait here for the next dispatch: they die while one of
  // their own callbacks is on the stack.
  std::vector<EtcdConnectionPtr> retired_;
  std::list<std::shared_ptr<Call>> calls_;  // every call whose end is not decided
  std::vector<std::function<void()>> posted_;
  proxy::IdleHandle dispatcher_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

void Call::OnGrpcMessage(std::string message) {
  if (ended || client == nullptr) return;
  client->Post([self = shared_from_this(), message = std::move(message)]() mutable {
    if (self->cancelled || self->finished) return;
    self->on_message(std::move(message));
  });
}

void Call::OnGrpcClose(Status status) {
  connection = nullptr;
  stream_id = -1;
  if (ended || client == nullptr) return;
  // A stream exists to stay open: even a clean end is a failure to its owner.
  if (streaming && status.ok()) {
    status = MakeError(ErrorCode::kUnavailable, "etcd ended the stream " + path);
  }
  client->End(shared_from_this(), std::move(status));
}

StreamHandle::~StreamHandle() {
  call_->cancelled = true;
  if (call_->client != nullptr) call_->client->Cancel(*call_);
}

EtcdClientImpl::EtcdClientImpl(uv_loop_t* loop, EtcdOptions options,
                               std::vector<EtcdEndpoint> endpoints, EtcdTlsContextPtr tls)
    : loop_(loop),
      options_(std::move(options)),
      endpoints_(std::move(endpoints)),
      tls_(std::move(tls)),
      streams_(loop) {
  current_endpoint_ = endpoints_.front().url;
  // uv_idle_init always returns 0. The idle handle keeps its trampoline: it
  // is the client's own post queue, started and stopped only here.
  (void)uv_idle_init(loop_, dispatcher_.get());
  dispatcher_->data = this;
}

EtcdClientImpl::~EtcdClientImpl() {
  alive_.reset();
  for (const std::shared_ptr<Call>& call : calls_) {
    call->client = nullptr;
    call->ended = true;
    call->deadline.reset();
    call->ticker.reset();
  }
  // Posted callbacks die unrun; the connections close their sockets.
}

void EtcdClientImpl::Post(std::function<void()> fn) {
  posted_.push_back(std::move(fn));
  if (!uv_is_active(dispatcher_.handle())) {
    // An idle handle runs on the next loop turn without blocking the poll:
    // callbacks never run inside the call that caused them.
    // uv_idle_start fails only for a null callback.
    (void)uv_idle_start(dispatcher_.get(), [](uv_idle_t* idle) {
      if (auto* self = static_cast<EtcdClientImpl*>(idle->data)) self->Dispatch();
    });
  }
}

void EtcdClientImpl::Dispatch() {
  retired_.clear();
  std::vector<std::function<void()>> batch;
  batch.swap(posted_);
  if (posted_.empty()) (void)uv_idle_stop(dispatcher_.get());  // Always 0.
  std::weak_ptr<bool> alive = alive_;
  for (std::function<void()>& fn : batch) {
    fn();
    if (alive.expired()) return;  // a callback destroyed the client
  }
}

std::shared_ptr<Call> EtcdClientImpl::NewCall(const char* path, bool streaming) {
  // The loop's cached time may be stale (the owner blocked since the last
  // turn); deadlines and keep-alive timers count from now.
  uv_update_time(loop_);
  auto call = std::make_shared<Call>();
  call->client = this;
  call->path = path;
  call->streaming = streaming;
  call->in_list = calls_.insert(calls_.end(), call);
  return call;
}

void EtcdClientImpl::End(const std::shared_ptr<Call>& call, Status status) {
  if (call->ended) return;
  call->ended = true;
  StopTimer(call->deadline);
  StopTimer(call->ticker);
  if (call->connection != nullptr) call->connection->Cancel(call->stream_id);
  call->connection = nullptr;
  call->stream_id = -1;
  calls_.erase(call->in_list);
  // An ended call no longer reaches the client: its handle may outlive it.
  call->client = nullptr;
  Post([call, status = std::move(status)]() mutable {
    if (call->cancelled || call->finished) return;
    call->finished = true;
    std::function<void(Status)> on_end = std::move(call->on_end);
    on_end(std::move(status));
  });
}

void EtcdClientImpl::Cancel(Call& call) {
  call.cancelled = true;
  if (call.ended) return;
  call.ended = true;
  call.deadline.reset();
  call.ticker.reset();
  if (call.connection != nullptr) call.connection->Cancel(call.stream_id);
  call.connection = nullptr;
  calls_.erase(call.in_list);
  call.client = nullptr;
}

template <typename Req, typename Resp>
void EtcdClientImpl::Unary(const char* path, const Req& request, EtcdCallback<Resp> done) {
  std::shared_ptr<Call> call = NewCall(path, /*streaming=*/false);
  // The one response message, kept until the status says whether it counts.
  auto reply = std::make_shared<std::optional<std::string>>();
  call->on_message = [reply](std::string message) {
    if (!*reply) *reply = std::move(message);
  };
  call->on_end = [reply, done = std::move(done), path = std::string(path)](Status status) {
    if (!status.ok()) return done(status.error());
    Resp response;
    if (!*reply) return done(MakeError(ErrorCode::kInternal, "etcd sent no response to " + path));
    if (!response.ParseFromString(**reply)) {
      return done(MakeError(ErrorCode::kInternal, "cannot parse etcd's response to " + path +
                                                      " as " + response.GetTypeName()));
    }
    done(std::move(response));
  };
  std::string bytes;
  if (!request.SerializeToString(&bytes)) {
    End(call,
        MakeError(ErrorCode::kInvalidArgument, "cannot serialize the request to " + call->path));
    return;
  }
  AppendGrpcFrame(call->outgoing, bytes);
  call->half_close = true;
  const auto timeout = static_cast<uint64_t>(std::max<int64_t>(options_.call_timeout.count(), 1));
  call->deadline_ms = uv_now(loop_) + timeout;
  // The timer is the call's: it dies with it.
  call->deadline = std::make_unique<proxy::Timer>(loop_, [c = call.get()] {
    if (c->client == nullptr) return;
    const std::string where =
        c->connection != nullptr ? " on " + c->connection->endpoint().url : " (connecting to etcd)";
    c->client->End(c->shared_from_this(), MakeError(ErrorCode::kDeadlineExceeded,
                                                    "etcd call " + c->path + " timed out" + where));
  });
  call->deadline->Start(timeout);
  Start(call);
}

EtcdStreamPtr EtcdClientImpl::KeepAlive(
    int64_t lease_id, Millis interval,
    std::function<void(const etcdpb::LeaseKeepAliveResponse&)> on_response,
    std::function<void(Status)> on_end) {
  std::shared_ptr<Call> call = NewCall(kLeaseKeepAlivePath, /*streaming=*/true);
  Call* raw = call.get();  // the callbacks belong to the call: never a cycle
  call->on_end = std::move(on_end);
  call->on_message = [raw, on_response = std::move(on_response)](std::string bytes) {
    etcdpb::LeaseKeepAliveResponse response;
    // `client` is null when the call ended after this message was queued;
    // the message is still delivered, before on_end.
    if (!response.ParseFromString(bytes)) {
      if (raw->client != nullptr) {
        raw->client->End(
            raw->shared_from_this(),
            MakeError(ErrorCode::kInternal, "cannot parse etcd's LeaseKeepAliveResponse"));
      }
      return;
    }
    if (raw->client != nullptr) raw->last_response_ms = raw->client->Now();
    on_response(response);
  };
  etcdpb::LeaseKeepAliveRequest request;
  request.set_id(lease_id);
  std::string bytes;
  request.SerializeToString(&bytes);
  AppendGrpcFrame(call->repeat_frame, bytes);
  call->outgoing = call->repeat_frame;
  // Each tick checks that the last request was answered within two
  // intervals (a silent etcd means a lease about to be lost) and sends the
  // next one.
  const auto period = static_cast<uint64_t>(std::max<int64_t>(interval.count(), 1));
  call->ticker = std::make_unique<proxy::Timer>(loop_, [raw] {
    if (raw->client != nullptr) raw->client->KeepAliveTick(*raw);
  });
  call->ticker->Start(period, period);
  Start(call);
  return std::make_unique<StreamHandle>(std::move(call));
}

void EtcdClientImpl::KeepAliveTick(Call& call) {
  if (call.connection == nullptr) return;  // still connecting: the first request waits
  const uint64_t period = call.ticker->repeat_ms();
  if (uv_now(loop_) - call.last_response_ms > 2 * period) {
    End(call.shared_from_this(),
        MakeError(ErrorCode::kUnavailable, "etcd at " + call.connection->endpoint().url +
                                               " answered no lease keep-alive within " +
                                               std::to_string(2 * period) + " ms"));
    return;
  }
  call.outgoing += call.repeat_frame;
  call.connection->Resume(call.stream_id);
}

EtcdStreamPtr EtcdClientImpl::Watch(const etcdpb::WatchCreateRequest& create,
                                    std::function<void(const etcdpb::WatchResponse&)> on_response,
                                    std::function<void(Status)> on_end) {
  std::shared_ptr<Call> call = NewCall(kWatchPath, /*streaming=*/true);
  Call* raw = call.get();
  call->on_end = std::move(on_end);
  call->on_message = [raw, on_response = std::move(on_response)](std::string bytes) {
    etcdpb::WatchResponse response;
    if (!response.ParseFromString(bytes)) {
      if (raw->client != nullptr) {
        raw->client->End(raw->shared_from_this(),
                         MakeError(ErrorCode::kInternal, "cannot parse etcd's WatchResponse"));
      }
      return;
    }
    on_response(response);
    // The owner may have dropped the stream or the client meanwhile.
    if (!response.canceled() || raw->cancelled || raw->client == nullptr) return;
    std::string why = response.compact_revision() != 0
                          ? "revision " + std::to_string(response.compact_revision()) +
                                " and older have been compacted"
                          : response.cancel_reason();
    if (why.empty()) why = "no reason given";
    raw->client->End(raw->shared_from_this(),
                     MakeError(ErrorCode::kFailedPrecondition, "etcd cancelled the watch: " + why));
  };
  etcdpb::WatchRequest request;
  *request.mutable_create_request() = create;
  std::string bytes;
  request.SerializeToString(&bytes);
  AppendGrpcFrame(call->outgoing, bytes);
  Start(call);
  return std::make_unique<StreamHandle>(std::move(call));
}

void EtcdClientImpl::Start(const std::shared_ptr<Call>& call) {
  if (closed_) {
    End(call, MakeError(ErrorCode::kUnavailable, "CANCELLED: the etcd client is closed"));
    return;
  }
  switch (state_) {
    case State::kConnected:
      StartOnConnection(call);
      break;
    case State::kIdle:
      // Every endpoint once, starting with the one that worked last.
      state_ = State::kConnecting;
      round_attempts_ = 0;
      round_errors_.clear();
      ConnectTo(endpoint_index_);
      break;
    case State::kConnecting:
      break;  // OnConnected starts it
  }
}

void EtcdClientImpl::StartOnConnection(const std::shared_ptr<Call>& call) {
  std::optional<Millis> timeout;
  if (!call->streaming) {
    const uint64_t now = uv_now(loop_);
    timeout = Millis(call->deadline_ms > now ? call->deadline_ms - now : 1);
  }
  Result<int32_t> stream = connection_->StartCall(call->path, timeout, *call);
  if (!stream.ok()) {
    End(call, stream.error());
    return;
  }
  // StartCall may already have failed the connection; its OnDisconnected ends
  // the call then.
  call->connection = connection_.get();
  call->stream_id = *stream;
  call->last_response_ms = uv_now(loop_);
}

void EtcdClientImpl::ConnectTo(size_t index) {
  endpoint_index_ = index;
  current_endpoint_ = endpoints_[index].url;
  connection_ = std::make_unique<EtcdConnection>(streams_, endpoints_[index], tls_, *this);
  connection_->Connect(options_.connect_timeout);
}

void EtcdClientImpl::Retire() {
  retired_.push_back(std::move(connection_));
  Post([] {});  // the dispatch frees it
}

void EtcdClientImpl::OnConnected(EtcdConnection&) {
  state_ = State::kConnected;
  // A copy: a call may end (and leave the list) while starting.
  const std::vector<std::shared_ptr<Call>> waiting(calls_.begin(), calls_.end());
  for (const std::shared_ptr<Call>& call : waiting) {
    if (!call->ended && call->connection == nullptr) StartOnConnection(call);
  }
}

void EtcdClientImpl::OnConnectFailed(EtcdConnection& connection, Error error) {
  (void)connection;
  Retire();
  if (!round_errors_.empty()) round_errors_ += "; ";
  round_errors_ += error.message;
  ++round_attempts_;
  const size_t next = (endpoint_index_ + 1) % endpoints_.size();
  if (round_attempts_ < endpoints_.size()) {
    ConnectTo(next);
    return;
  }
  // The next round starts after the endpoint that failed last.
  endpoint_index_ = next;
  state_ = State::kIdle;
  const Error failure =
      MakeError(ErrorCode::kUnavailable, "cannot connect to etcd: " + round_errors_);
  const std::vector<std::shared_ptr<Call>> waiting(calls_.begin(), calls_.end());
  for (const std::shared_ptr<Call>& call : waiting) End(call, failure);
}

void EtcdClientImpl::OnDisconnected(EtcdConnection& connection, Error error) {
  (void)connection;
  Retire();
  state_ = State::kIdle;
  const Error failure = MakeError(ErrorCode::kUnavailable, "lost the connection: " + error.message);
  const std::vector<std::shared_ptr<Call>> running(calls_.begin(), calls_.end());
  for (const std::shared_ptr<Call>& call : running) {
    call->connection = nullptr;  // the dead connection hears nothing more
    End(call, failure);
  }
}

void EtcdClientImpl::Close() {
  closed_ = true;
  const Error cancelled =
      MakeError(ErrorCode::kUnavailable, "CANCELLED: the etcd client was closed");
  const std::vector<std::shared_ptr<Call>> running(calls_.begin(), calls_.end());
  for (const std::shared_ptr<Call>& call : running) End(call, cancelled);
  connection_.reset();
  retired_.clear();
  state_ = State::kIdle;
  // Deliver now: the owner may destroy the client as soon as this returns.
  Dispatch();
}

}  // namespace

Result<EtcdClientPtr> EtcdClient::Create(uv_loop_t* loop, EtcdOptions options) {
  if (options.endpoints.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "no etcd endpoint given: expected http(s)://HOST:PORT[,...]");
  }
  if (options.connect_timeout.count() <= 0 || options.call_timeout.count() <= 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "etcd connect and call timeouts must be positive");
  }
  std::vector<EtcdEndpoint> endpoints;
  for (const std::string& url : options.endpoints) {
    Result<EtcdEndpoint> endpoint = ParseEtcdEndpoint(url);
    if (!endpoint.ok()) return endpoint.error();
    endpoints.push_back(std::move(*endpoint));
  }
  if (Status s = CheckEtcdTlsFlags(options.endpoints, options.tls); !s.ok()) return s.error();
  EtcdTlsContextPtr tls;
  if (endpoints.front().tls) {
    auto loaded = EtcdTlsContext::Load(options.tls);
    if (!loaded.ok()) return loaded.error();
    tls = std::move(loaded).value();
  }
  return EtcdClientPtr(
      new EtcdClientImpl(loop, std::move(options), std::move(endpoints), std::move(tls)));
}

void CompareAbsent(etcdpb::TxnRequest& txn, const std::string& key) {
  auto* compare = txn.add_compare();
  compare->set_key(key);
  compare->set_target(etcdpb::Compare::CREATE);
  compare->set_result(etcdpb::Compare::EQUAL);
  compare->set_create_revision(0);
}

std::string EtcdPrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();  // 0xff cannot grow: carry into the byte before
  }
  return std::string(1, '\0');  // every key from `prefix` on
}

}  // namespace podless::runtime
