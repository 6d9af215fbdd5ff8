// Edge discovery's parts (scheduler/discovery.h): the edges file, the config's `dns` entries
// and their errors, a DNS server that does not answer.
#include "scheduler/discovery.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "common/config.h"
#include "scheduler/config.h"

namespace pice::scheduler {
namespace {

std::string TempFile(const std::string& text) {
  char name[] = "/tmp/pice_edges_XXXXXX";
  const int fd = mkstemp(name);
  close(fd);
  std::ofstream(name) << text;
  return name;
}

TEST(EdgeDiscoveryTest, EdgesFileLinesAndErrors) {
  const std::string ok = TempFile("# edges\n10.0.0.7:50071\nedge-b  10.0.0.8:50071  # the second\n\n");
  auto edges = ReadEdgesFile(ok);
  ASSERT_TRUE(edges.ok()) << edges.status();
  ASSERT_EQ(edges->size(), 2u);
  EXPECT_EQ((*edges)[0].address, "10.0.0.7:50071");
  EXPECT_EQ((*edges)[1].name, "edge-b");
  const std::string bad = TempFile("10.0.0.7:50071\n10.0.0.8\n");
  auto e = ReadEdgesFile(bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find(bad + ":2"), absl::string_view::npos) << e.status();
  EXPECT_EQ(ReadEdgesFile("/nonexistent/edges.txt").status().code(), absl::StatusCode::kNotFound);
  unlink(ok.c_str());
  unlink(bad.c_str());
}

TEST(EdgeDiscoveryTest, DnsEntriesAndEdgesFileInTheConfig) {
  auto parse = [](const std::string& yaml) {
    auto root = ConfigNode::LoadString("cloud: 127.0.0.1:1\n" + yaml, "scheduler.yaml");
    EXPECT_TRUE(root.ok());
    return ParseSchedulerOptions(*root);
  };
  auto o = parse("edges:\n  - 10.0.0.1:50071\n  - {dns: \"pice-edge.svc:50071\", refresh: 2s, server: \"127.0.0.1:53\"}\n");
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->edges.size(), 1u);
  ASSERT_EQ(o->edge_sources.size(), 1u);
  EXPECT_EQ(o->edge_sources[0].dns_host, "pice-edge.svc");
  EXPECT_EQ(o->edge_sources[0].port, 50071);
  EXPECT_DOUBLE_EQ(o->edge_sources[0].refresh_s, 2);
  for (const char* bad : {"edges: [{dns: pice-edge.svc}]\n", "edges: [{dns: \"a:1\", refresh: soon}]\n",
                          "edges: [{dns: \"a:1\", ttl: 1}]\n", "edges: [{dns: \"a:1\", server: nope}]\n",
                          "edges_file: /nonexistent/edges.txt\n"}) {
    auto r = parse(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("scheduler.yaml"), absl::string_view::npos) << r.status();
  }
}

TEST(EdgeDiscoveryTest, CloudReplicasInTheConfig) {
  auto parse = [](const std::string& yaml) {
    auto root = ConfigNode::LoadString(yaml, "scheduler.yaml");
    EXPECT_TRUE(root.ok());
    return ParseSchedulerOptions(*root);
  };
  auto one = parse("cloud: 127.0.0.1:1\n");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->clouds.size(), 1u);
  EXPECT_EQ(one->clouds[0].address, "127.0.0.1:1");
  EXPECT_TRUE(one->clouds[0].name.empty());  // the registry calls a lone cloud "cloud"
  auto many = parse("cloud:\n  - 10.0.0.1:50061\n  - {name: gpu-2, address: \"10.0.0.2:50061\"}\n"
                    "  - {dns: \"pice-cloud.svc:50061\", refresh: 3s}\n");
  ASSERT_TRUE(many.ok()) << many.status();
  ASSERT_EQ(many->clouds.size(), 2u);
  EXPECT_EQ(many->clouds[0].name, "cloud-0");
  EXPECT_EQ(many->clouds[1].name, "gpu-2");
  ASSERT_EQ(many->cloud_sources.size(), 1u);
  EXPECT_EQ(many->cloud_sources[0].dns_host, "pice-cloud.svc");
  EXPECT_EQ(many->cloud_sources[0].port, 50061);
  EXPECT_DOUBLE_EQ(many->cloud_sources[0].refresh_s, 3);
  for (const char* bad : {"cloud: []\n", "cloud: [nope]\n", "cloud: {address: \"a:1\"}\n",
                          "cloud: [{dns: pice-cloud.svc}]\n"}) {
    auto r = parse(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("scheduler.yaml: cloud"), absl::string_view::npos) << r.status();
  }
}

TEST(EdgeDiscoveryTest, ASilentDnsServerIsUnavailableNotNoEdges) {
  // Nothing listens on this UDP port: the lookup fails as UNAVAILABLE (the registry keeps the
  // edges it had), not NOT_FOUND.
  auto r = ResolveHost("pice-edge.test", "127.0.0.1:9", 0.5);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

}  // namespace
}  // namespace pice::scheduler
