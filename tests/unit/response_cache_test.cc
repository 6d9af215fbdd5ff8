// The response cache's parts (scheduler/response_cache.h): the in-memory LRU with its TTL
// and byte bound, the key (what changes it and what does not), the event records and the
// `cache:` settings.
#include "scheduler/response_cache.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "common/config.h"

namespace pice::scheduler {
namespace {

CacheOptions Memory(int64_t max_bytes, double ttl_s = 600) {
  CacheOptions o;
  o.kind = "memory";
  o.max_bytes = max_bytes;
  o.ttl_s = ttl_s;
  return o;
}

TEST(ResponseCacheTest, MemoryEvictsTheLeastRecentlyUsedBeyondItsBytes) {
  auto c = ResponseCache::Create(Memory(3000));
  ASSERT_NE(c, nullptr);
  const std::string v(900, 'x');
  c->Put("a", v);
  c->Put("b", v);
  c->Put("c", v);
  ASSERT_TRUE(c->Get("a").has_value());  // a is now the most recent
  c->Put("d", v);                        // over 3000 bytes: b goes
  EXPECT_FALSE(c->Get("b").has_value());
  EXPECT_TRUE(c->Get("a").has_value());
  EXPECT_TRUE(c->Get("c").has_value());
  EXPECT_TRUE(c->Get("d").has_value());
  c->Put("huge", std::string(5000, 'y'));  // larger than the whole cache: not stored
  EXPECT_FALSE(c->Get("huge").has_value());
  const CacheStats s = c->Stats();
  EXPECT_EQ(s.entries, 3);
  EXPECT_LE(s.bytes, 3000);
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.stores, 4u);
  EXPECT_GE(s.hits, 4u);
  EXPECT_EQ(s.misses, 2u);
}

TEST(ResponseCacheTest, MemoryEntriesExpire) {
  auto c = ResponseCache::Create(Memory(1 << 20, 0.05));
  c->Put("k", "v");
  EXPECT_EQ(c->Get("k").value_or(""), "v");
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  EXPECT_FALSE(c->Get("k").has_value());
  EXPECT_EQ(c->Stats().entries, 0);
}

v1::QueryRequest Req(const std::string& prompt) {
  v1::QueryRequest r;
  r.set_prompt(prompt);
  return r;
}

TEST(ResponseCacheTest, TheKeyChangesWithEverythingThatShapesTheAnswer) {
  const v1::QueryRequest base = Req("add 3 and 4");
  const std::string k = CacheKey(base, "alice", "cloud v1 edge e1");
  EXPECT_EQ(k.size(), 64u);
  EXPECT_EQ(CacheKey(Req("  add 3\tand  4\n"), "alice", "cloud v1 edge e1"), k) << "whitespace";
  EXPECT_NE(CacheKey(Req("Add 3 and 4"), "alice", "cloud v1 edge e1"), k);
  EXPECT_NE(CacheKey(base, "bob", "cloud v1 edge e1"), k);
  EXPECT_NE(CacheKey(base, "", "cloud v1 edge e1"), k);
  EXPECT_NE(CacheKey(base, "alice", "cloud v2 edge e1"), k);
  EXPECT_NE(CacheKey(base, "alice", "cloud v1 edge e2"), k);
  auto changed = [&](auto edit) {
    v1::QueryRequest r = base;
    edit(&r);
    return CacheKey(r, "alice", "cloud v1 edge e1") != k;
  };
  EXPECT_TRUE(changed([](v1::QueryRequest* r) { r->set_route(v1::ROUTE_SKETCH); }));
  EXPECT_TRUE(changed([](v1::QueryRequest* r) { r->set_max_points(3); }));
  EXPECT_TRUE(changed([](v1::QueryRequest* r) { r->set_category("math"); }));
  EXPECT_TRUE(changed([](v1::QueryRequest* r) { r->set_model("arith-cloud"); }));
  EXPECT_TRUE(changed([](v1::QueryRequest* r) { r->mutable_params()->set_max_tokens(5); }));
  EXPECT_TRUE(changed([](v1::QueryRequest* r) { r->mutable_params()->set_seed(9); }));
  EXPECT_TRUE(changed([](v1::QueryRequest* r) { r->mutable_params()->set_top_k(3); }));
  EXPECT_TRUE(changed([](v1::QueryRequest* r) { r->mutable_params()->add_stop("."); }));
  EXPECT_TRUE(changed([](v1::QueryRequest* r) {
    auto* t = r->add_history();
    t->set_role("user");
    t->set_content("hi");
  }));
  // Length-prefixed fields: moving text between two fields is another key.
  v1::QueryRequest x = Req("ab");
  x.set_category("c");
  v1::QueryRequest y = Req("a");
  y.set_category("bc");
  EXPECT_NE(CacheKey(x, "", "v"), CacheKey(y, "", "v"));
  // The request id is not part of it.
  EXPECT_FALSE(changed([](v1::QueryRequest* r) { r->set_request_id("r-1"); }));
}

TEST(ResponseCacheTest, OnlyDeterministicRequestsAndWholeAnswers) {
  v1::QueryRequest r = Req("q");
  EXPECT_TRUE(Deterministic(r));
  r.mutable_params()->set_temperature(0.7f);
  EXPECT_FALSE(Deterministic(r));
  r.mutable_params()->set_seed(42);
  EXPECT_TRUE(Deterministic(r));

  std::vector<v1::QueryEvent> ev(2);
  ev[0].mutable_route()->set_route(v1::ROUTE_SKETCH);
  ev[1].mutable_answer()->set_text("7");
  ev[1].mutable_answer()->set_finish_reason(v1::STOP);
  EXPECT_TRUE(WorthCaching(ev));
  ev[1].mutable_answer()->set_degraded(true);
  EXPECT_FALSE(WorthCaching(ev));
  ev[1].mutable_answer()->set_degraded(false);
  ev[1].mutable_answer()->set_failed_over(1);
  EXPECT_FALSE(WorthCaching(ev));
  ev[1].mutable_answer()->set_failed_over(0);
  ev[1].mutable_answer()->set_finish_reason(v1::CANCELLED);
  EXPECT_FALSE(WorthCaching(ev));
  EXPECT_FALSE(WorthCaching({ev[0]}));
}

TEST(ResponseCacheTest, EventRecordsRoundTripAndGarbageIsRefused) {
  std::vector<v1::QueryEvent> ev(3);
  ev[0].mutable_route()->set_reason("rule 'x'");
  ev[1].mutable_sketch_point()->set_text("3+4");
  ev[2].mutable_answer()->set_text(std::string(300, 'z'));  // a multi-byte length prefix
  const std::string bytes = EncodeEvents(ev);
  std::vector<v1::QueryEvent> back;
  ASSERT_TRUE(DecodeEvents(bytes, &back));
  ASSERT_EQ(back.size(), 3u);
  for (size_t i = 0; i < ev.size(); ++i) EXPECT_EQ(back[i].SerializeAsString(), ev[i].SerializeAsString());
  EXPECT_FALSE(DecodeEvents("", &back));
  EXPECT_FALSE(DecodeEvents("garbage", &back));
  EXPECT_FALSE(DecodeEvents(bytes.substr(0, bytes.size() - 10), &back));
  EXPECT_FALSE(DecodeEvents(EncodeEvents({ev[0]}), &back)) << "no answer: not a record";
}

TEST(ResponseCacheTest, SettingsAndTheirErrors) {
  auto read = [](const std::string& yaml, CacheOptions* o) {
    auto root = ConfigNode::LoadString(yaml, "scheduler.yaml");
    EXPECT_TRUE(root.ok());
    return ReadCacheOptions(*root, o);
  };
  CacheOptions o;
  ASSERT_TRUE(read("other: 1\n", &o).ok());
  EXPECT_EQ(o.kind, "off") << "absent: off";
  ASSERT_TRUE(read("cache: {}\n", &o).ok());
  EXPECT_EQ(o.kind, "memory") << "given: memory";
  ASSERT_TRUE(read("cache: redis\n", &o).ok());
  EXPECT_EQ(o.kind, "redis");
  ASSERT_TRUE(read("cache: {kind: redis, address: \"10.0.0.9:6380\", ttl: 90s, max_bytes: 4096}\n", &o).ok());
  EXPECT_EQ(o.address, "10.0.0.9:6380");
  EXPECT_DOUBLE_EQ(o.ttl_s, 90);
  EXPECT_EQ(o.max_bytes, 4096);
  for (const char* bad : {"cache: sometimes\n", "cache: {kind: disk}\n", "cache: {ttl: soon}\n",
                          "cache: {address: nohost}\n", "cache: {size: 1}\n"}) {
    absl::Status s = read(bad, &o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("cache"), absl::string_view::npos) << s;
  }
}

}  // namespace
}  // namespace pice::scheduler
