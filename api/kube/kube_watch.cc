#include "api/kube/kube_watch.h"

#include <algorithm>
#include <set>
#include <utility>

#include "api/output_format.h"
#include "proxy/base/json.h"

namespace podless::api::kube {
namespace {

// The agent object an item comes from: its kind, namespace and name.
std::string ObjectKeyOf(const v1::Object& object) {
  const v1::ObjectMeta& meta = MetaOf(object);
  return std::to_string(static_cast<int>(object.kind_case())) + "/" + meta.namespace_() + "/" +
         meta.name();
}

// The kinds of the agent's objects the resources are made of.
std::set<v1::Kind> SourceKinds() {
  std::set<v1::Kind> kinds;
  for (const Resource& resource : Resources()) kinds.insert(resource.object_kind);
  return kinds;
}

// `json` without the whitespace between tokens: an object's JSON is
// indented (as kubectl prints it), a watch event is one line.
std::string CompactJson(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < json.size()) {
        out += json[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
    if (c == '"') in_string = true;
    out += c;
  }
  return out;
}

// What a change of an item is judged by: its JSON without its
// resourceVersion and its cells without its age. A Pod carries its
// workload's resourceVersion, and its age moves with the clock; neither
// is a change of the Pod when its workload scales.
std::string Content(const Resource& resource, const Item& item) {
  std::string out;
  std::string_view json = item.json;
  constexpr std::string_view kKey = "\"resourceVersion\"";
  for (size_t at; (at = json.find(kKey)) != std::string_view::npos;) {
    out += json.substr(0, at);
    const size_t open = json.find('"', at + kKey.size());
    const size_t close = open == std::string_view::npos ? open : json.find('"', open + 1);
    if (close == std::string_view::npos) break;
    json.remove_prefix(close + 1);
  }
  out += json;
  const std::vector<Column>& columns = Columns(resource);
  for (size_t i = 0; i < item.cells.size(); ++i) {
    if (i < columns.size() && columns[i].name == "Age") continue;
    out += '\0';
    out += item.cells[i];
  }
  return out;
}

// `json` with its (first: metadata's) resourceVersion set to `revision`:
// a DELETED event's object is its last state at the delete's revision.
std::string WithVersion(const std::string& json, uint64_t revision) {
  constexpr std::string_view kKey = "\"resourceVersion\"";
  const size_t at = json.find(kKey);
  if (at == std::string::npos) return json;
  const size_t open = json.find('"', at + kKey.size());
  const size_t close = open == std::string::npos ? open : json.find('"', open + 1);
  if (close == std::string::npos) return json;
  return json.substr(0, open + 1) + std::to_string(revision) + json.substr(close);
}

std::string EventLine(std::string_view type, const std::string& object_json) {
  std::string line = "{\"type\":\"";
  line += type;
  line += "\",\"object\":";
  line += object_json;
  line += "}\n";
  return line;
}

// An object of the resource's kind with only metadata.resourceVersion
// (what a BOOKMARK carries), or a Table of no rows with it.
std::string BookmarkObject(const Resource& resource, const std::string& table_version,
                           uint64_t revision) {
  if (!table_version.empty()) return TableJson(resource, table_version, {}, revision);
  proxy::JsonWriter w;
  w.BeginObject();
  w.Key("kind").String(resource.kind);
  w.Key("apiVersion").String(resource.GroupVersion());
  w.Key("metadata").BeginObject();
  w.Key("resourceVersion").String(std::to_string(revision));
  w.EndObject();
  w.EndObject();
  return w.Take();
}

}  // namespace

WatchHub::WatchHub(uv_loop_t* loop, ObjectSource& source, ChangeFeed& feed,
                   std::function<int64_t()> now, WatchOptions options)
    : loop_(loop),
      source_(source),
      feed_(feed),
      now_(std::move(now)),
      options_(options),
      random_(std::random_device{}()),
      bookmark_timer_(loop, [this] { SendBookmarks(); }) {}

void WatchHub::Start() {
  if (started_) return;
  started_ = true;
  // The items of every object now, so the first change of one knows what
  // it changes (which Pods a scale removes). Listed and subscribed in one
  // loop turn: no change falls between.
  for (v1::Kind kind : SourceKinds()) {
    auto listed = source_.List(kind, "");
    if (!listed) continue;
    for (const v1::Object& object : listed->objects()) {
      for (const Resource& resource : Resources()) {
        if (resource.object_kind != kind) continue;
        std::vector<Item> items = ItemsOf(resource, {object}, now_());
        if (!items.empty()) last_[resource.name][ObjectKeyOf(object)] = KnownOf(resource, items);
      }
    }
  }
  floor_ = feed_.revision();
  feed_id_ = feed_.Subscribe(
      [this](const v1::Object& object, bool deleted) { OnChange(object, deleted); });
  if (options_.bookmark_interval_ms > 0) {
    bookmark_timer_.Start(options_.bookmark_interval_ms, options_.bookmark_interval_ms);
    bookmark_timer_.Unref();
  }
}

WatchHub::~WatchHub() {
  if (started_) feed_.Unsubscribe(feed_id_);
  for (auto& [id, watcher] : watchers_) {
    watcher->stream->OnRelease(nullptr);
    watcher->stream->End();
  }
}

WatchHub::Known WatchHub::KnownOf(const Resource& resource, const std::vector<Item>& items) {
  Known known;
  if (!items.empty()) known.labels = items.front().labels;
  known.items.reserve(items.size());
  for (const Item& item : items) {
    known.items.emplace_back(item.name, std::hash<std::string>{}(Content(resource, item)));
  }
  return known;
}

namespace {

// The items named in `names` as `object` would show them: the Pods a scale
// removed, rebuilt from the workload as it is now (replica <ordinal>
// without an address), or, for anything else, an object of the resource's
// kind with only its name, namespace and labels.
std::vector<Item> GoneItems(const Resource& resource, const v1::Object& object,
                            const std::vector<std::string>& names,
                            const std::map<std::string, std::string>& labels, int64_t now) {
  std::vector<Item> items;
  if (resource.source == Source::kPods && object.has_workload()) {
    v1::Object copy = object;
    auto* replicas = copy.mutable_workload()->mutable_status()->mutable_replicas();
    const std::string prefix = MetaOf(object).name() + "-";
    replicas->Clear();
    for (const std::string& name : names) {
      if (name.rfind(prefix, 0) != 0) continue;
      const std::string ordinal = name.substr(prefix.size());
      if (ordinal.empty() || ordinal.size() > 9 ||
          ordinal.find_first_not_of("0123456789") != std::string::npos) {
        continue;
      }
      v1::Replica* r = replicas->Add();
      r->set_name(name);
      r->set_ordinal(static_cast<uint32_t>(std::stoul(ordinal)));
    }
    items = ItemsOf(resource, {copy}, now);
  }
  for (const std::string& name : names) {
    const bool built = std::any_of(items.begin(), items.end(),
                                   [&](const Item& item) { return item.name == name; });
    if (built) continue;
    Item item;
    item.name = name;
    item.ns = resource.namespaced ? MetaOf(object).namespace_() : "";
    item.labels = labels;
    proxy::JsonWriter w;
    w.BeginObject();
    w.Key("kind").String(resource.kind);
    w.Key("apiVersion").String(resource.GroupVersion());
    w.Key("metadata").BeginObject();
    w.Key("name").String(name);
    if (!item.ns.empty()) w.Key("namespace").String(item.ns);
    w.Key("resourceVersion").String("0");
    if (!labels.empty()) {
      w.Key("labels").BeginObject();
      for (const auto& [key, value] : labels) w.Key(key).String(value);
      w.EndObject();
    }
    w.EndObject();
    w.EndObject();
    item.json = w.Take();
    item.cells.assign(Columns(resource).size(), "");
    if (!item.cells.empty()) item.cells[0] = name;
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace

void WatchHub::OnChange(const v1::Object& object, bool deleted) {
  const std::string key = ObjectKeyOf(object);
  const uint64_t revision = MetaOf(object).resource_version();
  for (const Resource& resource : Resources()) {
    if (resource.object_kind == v1::KIND_UNSPECIFIED) continue;
    // A deleted object is handed over as it was last: its items are what
    // the DELETED events carry.
    std::vector<Item> now = ItemsOf(resource, {object}, now_());
    auto& of_resource = last_[resource.name];
    auto it = of_resource.find(key);
    if (now.empty() && it == of_resource.end()) continue;
    Known before = it == of_resource.end() ? Known() : std::move(it->second);
    if (it != of_resource.end()) of_resource.erase(it);
    // Items gone while the object stays (Pods of replicas scaled away).
    std::vector<std::string> gone;
    for (const auto& [name, hash] : before.items) {
      const bool kept =
          std::any_of(now.begin(), now.end(), [&](const Item& item) { return item.name == name; });
      if (!kept) gone.push_back(name);
    }
    if (!gone.empty()) {
      for (Item& item : GoneItems(resource, object, gone, before.labels, now_())) {
        item.resource_version = revision;
        item.json = WithVersion(item.json, revision);
        Record({&resource, "DELETED", std::move(item), {}, revision});
      }
    }
    if (deleted) {
      // Every item the deleted object still shows goes too.
      for (Item& item : now) {
        item.resource_version = revision;
        item.json = WithVersion(item.json, revision);
        Record({&resource, "DELETED", std::move(item), {}, revision});
      }
      continue;
    }
    for (const Item& item : now) {
      auto was = std::find_if(before.items.begin(), before.items.end(),
                              [&](const auto& old) { return old.first == item.name; });
      if (was == before.items.end()) {
        Record({&resource, "ADDED", item, {}, revision});
      } else if (was->second != std::hash<std::string>{}(Content(resource, item))) {
        Record({&resource, "MODIFIED", item, before.labels, revision});
      }
    }
    if (!now.empty()) of_resource[key] = KnownOf(resource, now);
  }
}

void WatchHub::Record(Event event) {
  retired_.clear();
  ++delivering_;
  for (auto& [id, watcher] : watchers_) {
    if (!watcher->gone) Deliver(*watcher, event);
  }
  --delivering_;
  Sweep();
  ring_.push_back(std::move(event));
  while (ring_.size() > options_.ring_size) {
    floor_ = ring_.front().revision;
    ring_.pop_front();
  }
}

bool WatchHub::Deliver(Watcher& watcher, const Event& event) {
  const WatchParams& p = watcher.params;
  if (event.resource != p.resource) return true;
  if (!p.ns.empty() && event.item.ns != p.ns) return true;
  const bool now = !p.matches || p.matches(event.item);
  if (std::string_view(event.type) != "MODIFIED") {
    return !now || Send(watcher, event.type, event.item, event.revision);
  }
  Item before = event.item;
  before.labels = event.before_labels;
  const bool was = !p.matches || p.matches(before);
  if (now && was) return Send(watcher, "MODIFIED", event.item, event.revision);
  if (now) return Send(watcher, "ADDED", event.item, event.revision);
  if (was) return Send(watcher, "DELETED", event.item, event.revision);
  return true;
}

bool WatchHub::Send(Watcher& watcher, std::string_view type, const Item& item, uint64_t revision) {
  const WatchParams& p = watcher.params;
  const std::string object = p.table_version.empty()
                                 ? CompactJson(item.json)
                                 : TableJson(*p.resource, p.table_version, {item}, revision);
  return watcher.stream->Write(EventLine(type, object));
}

void WatchHub::End(uint64_t id) {
  auto it = watchers_.find(id);
  if (it == watchers_.end() || it->second->gone) return;
  // The stream sends what it queued, then the response ends; its release
  // callback marks the watcher gone.
  it->second->stream->End();
}

void WatchHub::Gone(uint64_t id) {
  auto it = watchers_.find(id);
  if (it == watchers_.end()) return;
  it->second->gone = true;
  it->second->timeout->Stop();
  if (delivering_ == 0) Sweep();
}

void WatchHub::Sweep() {
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    if (!it->second->gone) {
      ++it;
      continue;
    }
    // Not destroyed here: this may run inside the watcher's own timer
    // callback or its stream's call. Freed on the next event or watch.
    it->second->stream->OnRelease(nullptr);
    retired_.push_back(std::move(it->second));
    it = watchers_.erase(it);
  }
}

void WatchHub::SendBookmarks() {
  retired_.clear();
  const uint64_t revision = feed_.revision();
  ++delivering_;
  for (auto& [id, watcher] : watchers_) {
    if (!watcher->params.bookmarks || watcher->gone) continue;
    const std::string object =
        BookmarkObject(*watcher->params.resource, watcher->params.table_version, revision);
    watcher->stream->Write(EventLine("BOOKMARK", object));
  }
  --delivering_;
  Sweep();
}

KubeResponse WatchHub::Watch(WatchParams params) {
  retired_.clear();
  Start();
  if (watchers_.size() >= options_.max_watches) {
    return StatusResponse(
        429, "TooManyRequests",
        "too many open watches (" + std::to_string(options_.max_watches) + "); try again later");
  }
  auto watcher = std::make_unique<Watcher>();
  watcher->stream = std::make_shared<ResponseStream>(options_.stream_limit);
  watcher->params = std::move(params);
  Watcher& w = *watcher;
  const WatchParams& p = w.params;
  const std::string content_type =
      p.table_version.empty() ? "application/json"
                              : "application/json;as=Table;v=" + p.table_version + ";g=meta.k8s.io";
  KubeResponse response{200, content_type, ""};
  response.stream = w.stream;
  const bool from_now = p.resource_version.empty() || p.resource_version == "0";
  uint64_t from = 0;
  if (!from_now) {
    const std::string& rv = p.resource_version;
    const bool digits =
        std::all_of(rv.begin(), rv.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || rv.size() > 19) {
      return StatusResponse(400, "BadRequest", "invalid resource version: " + rv);
    }
    from = std::stoull(rv);
  }
  if (!from_now && from < floor_) {
    // Too old: the API server's answer, a watch of one ERROR event.
    w.stream->Write(
        EventLine("ERROR", StatusJson(410, "Expired",
                                      "too old resource version: " + p.resource_version + " (" +
                                          std::to_string(floor_ + 1) + ")")));
    w.stream->End();
    return response;
  }
  if (from_now || p.send_initial_events) {
    // The current state as ADDED events, then the changes after it.
    auto listed = source_.List(p.resource->object_kind, p.resource->namespaced ? p.ns : "");
    if (!listed) return StatusResponse(500, "InternalError", listed.error().message);
    const std::vector<v1::Object> objects(listed->objects().begin(), listed->objects().end());
    for (const Item& item : ItemsOf(*p.resource, objects, now_())) {
      if (!p.ns.empty() && p.resource->namespaced && item.ns != p.ns) continue;
      if (p.matches && !p.matches(item)) continue;
      if (!Send(w, "ADDED", item, item.resource_version)) return response;  // cut already
    }
    if (p.send_initial_events && p.bookmarks) {
      // The end of the initial events (the API server's WatchList marker).
      std::string object = BookmarkObject(*p.resource, p.table_version, listed->resource_version());
      object.insert(object.find("\"resourceVersion\""),
                    "\"annotations\":{\"k8s.io/initial-events-end\":\"true\"},");
      w.stream->Write(EventLine("BOOKMARK", object));
    }
  } else {
    for (const Event& event : ring_) {
      if (event.revision <= from) continue;
      if (!Deliver(w, event)) return response;
    }
  }
  // Ends at a random time in [min, 2 min) so the watches of many clients
  // do not all end together, or sooner at timeoutSeconds.
  uint64_t timeout_s =
      options_.min_timeout_s + random_() % std::max<uint64_t>(1, options_.min_timeout_s);
  if (p.timeout_seconds > 0) timeout_s = std::min<uint64_t>(timeout_s, p.timeout_seconds);
  const uint64_t id = next_watcher_++;
  w.timeout = std::make_unique<proxy::Timer>(loop_, [this, id] { End(id); });
  w.timeout->Start(timeout_s * 1000);
  // Ended, cut, or the client went: the watcher goes, and what it holds.
  w.stream->OnRelease([this, id] { Gone(id); });
  watchers_.emplace(id, std::move(watcher));
  return response;
}

}  // namespace podless::api::kube
