// WatchHub: the Kubernetes API's watch (`?watch=1`), over the agent's
// changes.
//
// The hub is told of every change of the agent's state (ChangeFeed: the
// agent's AddWatcher, or a fake in tests) as the object written (or
// deleted) with its status. It turns each into events of every resource
// the object shows as: a workload is a Deployment (or StatefulSet, ...,
// or a podless Workload) and one Pod per replica, so a scale from 2 to 3
// is a MODIFIED Deployment, MODIFIED Pods 0-1 and an ADDED Pod 2; a
// Service is a Service. To know which Pods went and which changed, it keeps
// of each object the names of its items, a hash of each one's content and
// the object's labels (about 50 B per Pod, not the objects: the API
// server's watch cache keeps whole objects). A DELETED event of a deleted
// object carries its last state (the agent hands it over); a Pod a scale
// removed is rebuilt from the workload as it is now, without its address.
//
// Events are kept in a ring of the last `ring_size` (10,000 by default:
// a few minutes of heavy change, at most a few tens of MiB) with their
// resourceVersion (the agent's revision of the change), so a client that
// lost its watch resumes from the resourceVersion it saw. A resourceVersion
// older than the ring (or than the agent's start: the ring starts empty)
// is answered as the API server answers it: a watch whose first event is
// ERROR with a Status 410 Expired; the client relists.
//
// Each watch is a ResponseStream (response_stream.h) of JSON lines
// {"type":...,"object":...}: bounded, so a watcher that does not read is
// cut; at most `max_watches` are open (429 beyond). A watch ends at a
// random time between `min_timeout_s` and twice it (the API server's
// --min-request-timeout of 1800 s does the same), or sooner at its
// timeoutSeconds, and the client watches again from the last
// resourceVersion it saw.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "api/kube/kube_api.h"
#include "api/kube/objects.h"
#include "api/kube/resources.h"
#include "api/kube/response_stream.h"
#include "proxy/base/timer.h"

namespace podless::api::kube {

// The agent's changes, one call per object written or deleted.
class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;
  // `object` with its status and metadata.resource_version (a deleted
  // one's: the revision of its delete).
  using Callback = std::function<void(const v1::Object& object, bool deleted)>;
  virtual uint64_t Subscribe(Callback callback) = 0;
  virtual void Unsubscribe(uint64_t id) = 0;
  // The revision of the last change.
  virtual uint64_t revision() const = 0;
};

struct WatchOptions {
  size_t ring_size = 10'000;
  uint64_t bookmark_interval_ms = 60'000;
  size_t max_watches = 1'000;
  size_t stream_limit = ResponseStream::kDefaultLimit;
  uint64_t min_timeout_s = 1'800;
};

// One watch, as the router parsed it.
struct WatchParams {
  const Resource* resource = nullptr;
  std::string ns;  // "": every namespace
  // The label and field selectors (and the name of a watch of one object).
  std::function<bool(const Item&)> matches;
  std::string resource_version;  // "" or "0": the current state first
  bool bookmarks = false;        // allowWatchBookmarks
  bool send_initial_events = false;
  int64_t timeout_seconds = 0;  // 0: the default (random, see above), which also caps it
  std::string table_version;    // "v1": each object a Table of one row; "": JSON
};

class WatchHub {
 public:
  WatchHub(uv_loop_t* loop, ObjectSource& source, ChangeFeed& feed, std::function<int64_t()> now,
           WatchOptions options = {});
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Follows the agent's changes from now on: the first Watch() calls it, so
  // an agent no one watches pays nothing for the hub. Then the ring starts
  // empty at the agent's revision of now.
  void Start();

  // The response to a watch request: a stream, or an error Status.
  KubeResponse Watch(WatchParams params);

  // What is kept, for tests and the docs' claims.
  size_t watch_count() const { return watchers_.size(); }
  size_t ring_count() const { return ring_.size(); }
  // The oldest resourceVersion a watch may start from.
  uint64_t oldest_version() const { return floor_; }
  // Sends a BOOKMARK to every watch that asked (the timer's job).
  void SendBookmarks();

 private:
  struct Event {
    const Resource* resource;
    const char* type;  // "ADDED", "MODIFIED", "DELETED"
    Item item;
    // A MODIFIED item's labels before: a watch whose selector the change
    // takes it out of sees DELETED, into: ADDED.
    std::map<std::string, std::string> before_labels;
    uint64_t revision;
  };
  struct Watcher {
    WatchParams params;
    ResponseStreamPtr stream;
    std::unique_ptr<proxy::Timer> timeout;
    bool gone = false;  // its stream is over: removed at the next Sweep
  };

  void OnChange(const v1::Object& object, bool deleted);
  void Record(Event event);
  // Writes the event to the watcher if it is of its resource and selected;
  // false once the watcher's stream is over.
  bool Deliver(Watcher& watcher, const Event& event);
  bool Send(Watcher& watcher, std::string_view type, const Item& item, uint64_t revision);
  // The watch's time is up: its stream ends.
  void End(uint64_t id);
  // Its stream is over: forget the watcher (now, or after the delivery loop).
  void Gone(uint64_t id);
  void Sweep();

  uv_loop_t* loop_;
  ObjectSource& source_;
  ChangeFeed& feed_;
  std::function<int64_t()> now_;
  WatchOptions options_;
  bool started_ = false;
  uint64_t feed_id_ = 0;
  std::deque<Event> ring_;
  uint64_t floor_ = 0;  // events after this revision are all in the ring
  // What is kept of an agent object's items in one resource.
  struct Known {
    std::map<std::string, std::string> labels;            // of the items (one object: the same)
    std::vector<std::pair<std::string, uint64_t>> items;  // name, hash of Content()
  };
  static Known KnownOf(const Resource& resource, const std::vector<Item>& items);
  // resource name -> "kind/ns/name" of the agent object -> what it shows now.
  std::map<std::string, std::map<std::string, Known>> last_;
  std::map<uint64_t, std::unique_ptr<Watcher>> watchers_;
  uint64_t next_watcher_ = 1;
  int delivering_ = 0;  // inside a loop over watchers_
  std::vector<std::unique_ptr<Watcher>> retired_;
  std::mt19937_64 random_;
  proxy::Timer bookmark_timer_;
};

}  // namespace podless::api::kube
