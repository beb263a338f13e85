#include "runtime/state/label_index.h"

#include <doctest.h>

#include <algorithm>
#include <deque>

namespace podless::runtime {
namespace {

// Workload entries as the store would hold them (stable addresses).
struct Entries {
  std::deque<StoredObject> objects;
  const StoredObject* Make(const std::string& ns, const std::string& name,
                           workloads::Labels labels) {
    workloads::Workload workload;
    workload.metadata.ns = ns;
    workload.metadata.name = name;
    workload.metadata.labels = std::move(labels);
    objects.push_back(StoredObject{workload, {}, {}, 1});
    return &objects.back();
  }
};

std::vector<std::string> Names(std::vector<const StoredObject*> selected) {
  std::vector<std::string> out;
  for (const StoredObject* entry : selected) out.push_back(workloads::MetaOf(entry->object).name);
  std::sort(out.begin(), out.end());
  return out;
}

TEST_CASE("LabelIndex: selects by every label of the selector, within the namespace") {
  Entries entries;
  LabelIndex index;
  LabelIndex::Change change;
  const StoredObject* web = entries.Make("shop", "web", {{"app", "web"}, {"tier", "front"}});
  const StoredObject* web2 =
      entries.Make("shop", "web-canary", {{"app", "web"}, {"tier", "canary"}});
  const StoredObject* db = entries.Make("shop", "db", {{"app", "db"}, {"tier", "back"}});
  const StoredObject* other = entries.Make("other", "web", {{"app", "web"}});
  for (const StoredObject* entry : {web, web2, db, other}) {
    const auto& meta = workloads::MetaOf(entry->object);
    change.Add(entry, meta.ns, meta.labels);
  }
  index.Update(change);

  CHECK(Names(index.Select("shop", {{"app", "web"}})) ==
        std::vector<std::string>{"web", "web-canary"});
  CHECK(Names(index.Select("shop", {{"app", "web"}, {"tier", "front"}})) ==
        std::vector<std::string>{"web"});
  CHECK(Names(index.Select("other", {{"app", "web"}})) == std::vector<std::string>{"web"});
  CHECK(index.Select("shop", {{"app", "cache"}}).empty());
  CHECK(index.Select("shop", {{"app", "web"}, {"tier", "back"}}).empty());
  CHECK(index.Select("shop", {}).empty());  // as Kubernetes: no selector, no endpoints
}

TEST_CASE("LabelIndex: a relabel moves the entry; Prepare changes nothing until Apply") {
  Entries entries;
  LabelIndex index;
  const StoredObject* web = entries.Make("shop", "web", {{"app", "web"}});
  LabelIndex::Change add;
  add.Add(web, "shop", {{"app", "web"}});
  index.Update(add);

  LabelIndex::Change relabel;
  relabel.Remove(web, "shop", {{"app", "web"}});
  relabel.Add(web, "shop", {{"app", "store"}});
  LabelIndex::Prepared prepared = index.Prepare(relabel);
  // The entry's labels change with the publish; the index still answers as before.
  CHECK(Names(index.Select("shop", {{"app", "web"}})) == std::vector<std::string>{"web"});
  CHECK(index.lists() == 1);
  const_cast<StoredObject*>(web)->object = [] {
    workloads::Workload w;
    w.metadata.ns = "shop";
    w.metadata.name = "web";
    w.metadata.labels = {{"app", "store"}};
    return workloads::Object(w);
  }();
  index.Apply(prepared);
  CHECK(index.Select("shop", {{"app", "web"}}).empty());
  CHECK(Names(index.Select("shop", {{"app", "store"}})) == std::vector<std::string>{"web"});
  CHECK(index.lists() == 1);  // the emptied list is gone

  LabelIndex::Change remove;
  remove.Remove(web, "shop", {{"app", "store"}});
  index.Update(remove);
  CHECK(index.lists() == 0);
}

TEST_CASE("LabelIndex: a large list loses only the entries removed") {
  Entries entries;
  LabelIndex index;
  LabelIndex::Change add;
  std::vector<const StoredObject*> all;
  for (int i = 0; i < 1000; ++i) {
    all.push_back(entries.Make("ns", "w" + std::to_string(i), {{"app", "many"}}));
    add.Add(all.back(), "ns", {{"app", "many"}});
  }
  index.Update(add);
  LabelIndex::Change remove;
  for (int i = 0; i < 1000; i += 2) remove.Remove(all[i], "ns", {{"app", "many"}});
  index.Update(remove);
  auto selected = index.Select("ns", {{"app", "many"}});
  CHECK(selected.size() == 500);
  for (const StoredObject* entry : selected) {
    const std::string& name = workloads::MetaOf(entry->object).name;
    CHECK(std::stoi(name.substr(1)) % 2 == 1);
  }
}

}  // namespace
}  // namespace podless::runtime
