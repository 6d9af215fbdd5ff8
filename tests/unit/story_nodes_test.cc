// The story template on the bundled base story model (stories260K): the draft splits into
// sentences, and an edge whose members share one model file (different seeds) expands them.
#include <gtest/gtest.h>

#include "cloud/cloud_config.h"
#include "cloud/cloud_service.h"
#include "common/config.h"
#include "common/server.h"
#include "edge/edge_config.h"
#include "edge/edge_service.h"
#include "grpcpp/create_channel.h"

namespace pice {
namespace {

constexpr char kCloud[] = R"(
node: story-cloud
listen: 127.0.0.1:0
model: models/stories260K.gguf
template: templates/story.yaml
threads: 1
)";

constexpr char kEdge[] = R"(
node: story-edge
listen: 127.0.0.1:0
template: templates/story.yaml
ensemble:
  - {name: warm, model: models/stories260K.gguf, temperature: 0.8, seed: 1}
  - {name: warmer, model: models/stories260K.gguf, temperature: 0.8, seed: 2}
  - {name: greedy, model: models/stories260K.gguf, temperature: 0}
selection: {method: hybrid, hybrid_weight: 0.5, agree_similarity: 0.5}
threads: 1
)";

TEST(StoryNodesTest, DraftSplitsIntoSentencesAndEdgesContinueThem) {
  auto cr = ConfigNode::LoadString(kCloud, "cloud.yaml", PICE_SOURCE_DIR);
  ASSERT_TRUE(cr.ok()) << cr.status();
  auto co = ParseCloudOptions(*cr);
  ASSERT_TRUE(co.ok()) << co.status();
  auto er = ConfigNode::LoadString(kEdge, "edge.yaml", PICE_SOURCE_DIR);
  ASSERT_TRUE(er.ok()) << er.status();
  auto eo = ParseEdgeOptions(*er);
  ASSERT_TRUE(eo.ok()) << eo.status();
  auto cloud = CloudService::Create(*co);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  auto edge = EdgeService::Create(*eo);
  ASSERT_TRUE(edge.ok()) << edge.status();
  ServerOptions so;
  so.drain_seconds = 1;
  auto server = GrpcServer::Start(so, {{v1::Cloud::service_full_name(), cloud->get()},
                                       {v1::Edge::service_full_name(), edge->get()}});
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials());

  auto cstub = v1::Cloud::NewStub(channel);
  grpc::ClientContext ctx;
  v1::SketchRequest req;
  req.set_question("Once upon a time, there was a little girl named Lily.");
  auto reader = cstub->Sketch(&ctx, req);
  v1::SketchEvent ev;
  std::vector<std::string> points;
  v1::SketchDone done;
  while (reader->Read(&ev)) {
    if (ev.has_point()) points.push_back(ev.point().text());
    if (ev.has_done()) done = ev.done();
  }
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_TRUE(done.split()) << done.raw();
  ASSERT_GE(points.size(), 2u) << done.raw();
  EXPECT_LE(points.size(), 4u);
  EXPECT_EQ(points[0], "Once upon a time, there was a little girl named Lily.");

  auto estub = v1::Edge::NewStub(channel);
  grpc::ClientContext ectx;
  v1::ExpandRequest x;
  x.set_question(req.question());
  for (const auto& p : points) x.add_sketch(p);
  x.set_index(1);
  v1::ExpandResponse resp;
  grpc::Status s = estub->Expand(&ectx, x, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.candidates_size(), 3);
  EXPECT_EQ(resp.selection(), "hybrid");
  EXPECT_EQ(resp.text().rfind(points[1], 0), 0u) << resp.text();  // the segment, continued
  (*server)->Shutdown(1);
}

}  // namespace
}  // namespace pice
