# Services: the wire contract, shared server plumbing, and the cloud, edge and
# scheduler nodes with their binaries. Included from the top-level CMakeLists.txt.

find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(prometheus-cpp REQUIRED)  # /metrics (Debian's prometheus-cpp-dev)  # https to remote OpenAI-compatible models (Boost.Asio SSL)

# --- proto ---------------------------------------------------------------------------
set(PICE_PROTO ${CMAKE_SOURCE_DIR}/proto/pice/v1/pice.proto)
set(PICE_PROTO_OUT ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${PICE_PROTO_OUT})
set(PICE_PROTO_SRCS
  ${PICE_PROTO_OUT}/pice/v1/pice.pb.cc ${PICE_PROTO_OUT}/pice/v1/pice.grpc.pb.cc)
add_custom_command(
  OUTPUT ${PICE_PROTO_SRCS}
         ${PICE_PROTO_OUT}/pice/v1/pice.pb.h ${PICE_PROTO_OUT}/pice/v1/pice.grpc.pb.h
  COMMAND protobuf::protoc
  ARGS --proto_path=${CMAKE_SOURCE_DIR}/proto --cpp_out=${PICE_PROTO_OUT}
       --grpc_out=${PICE_PROTO_OUT}
       --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>
       ${PICE_PROTO}
  DEPENDS ${PICE_PROTO}
  COMMENT "protoc pice.proto")
add_library(pice_proto STATIC ${PICE_PROTO_SRCS})
target_include_directories(pice_proto PUBLIC ${PICE_PROTO_OUT})
target_link_libraries(pice_proto PUBLIC gRPC::grpc++ protobuf::libprotobuf)
target_compile_options(pice_proto PRIVATE -w)

# --- libraries, one per folder; dependencies point down only (scripts/check-deps.sh) ---
#   pice_common: what every binary needs (config, flags, logging, server, status); no engine
#   pice_node:   what cloud and edge share (templates, ensemble + voting, Expand boundary,
#                request limits, node config, model backends: local engine or remote
#                OpenAI-compatible server) over the engine
#   pice_cloud, pice_edge: each node's service; pice_scheduler: never links the engine
macro(pice_folder_library name folder)
  file(GLOB _srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${folder}/*.cc)
  list(FILTER _srcs EXCLUDE REGEX "/main\\.cc$|/common/args\\.cc$")
  add_library(${name} STATIC ${_srcs})
endmacro()
pice_folder_library(pice_common common)
target_link_libraries(pice_common PUBLIC OpenSSL::SSL OpenSSL::Crypto
  prometheus-cpp::core prometheus-cpp::pull
  pice_args pice_proto gRPC::grpc++ gRPC::grpc++_reflection yaml-cpp spdlog::spdlog
  absl::status absl::statusor absl::strings absl::str_format absl::synchronization absl::time
  absl::random_random Threads::Threads)
pice_folder_library(pice_node node)
target_link_libraries(pice_node PUBLIC pice_common pice_engine OpenSSL::SSL OpenSSL::Crypto)
pice_folder_library(pice_cloud cloud)
target_link_libraries(pice_cloud PUBLIC pice_node)
pice_folder_library(pice_edge edge)
target_link_libraries(pice_edge PUBLIC pice_node)
pice_folder_library(pice_scheduler scheduler)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)  # the response cache in Redis
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)  # policy rules' regex (linear time)
pkg_check_modules(CARES REQUIRED IMPORTED_TARGET libcares)  # edges found by DNS
target_link_libraries(pice_scheduler PUBLIC pice_common OpenSSL::Crypto PkgConfig::HIREDIS PkgConfig::RE2
  PkgConfig::CARES)
# Everything, for the pice CLI and the tests.
add_library(pice_services INTERFACE)
target_link_libraries(pice_services INTERFACE pice_cloud pice_edge pice_scheduler)

add_executable(pice-cloud ${CMAKE_SOURCE_DIR}/cloud/main.cc)
target_link_libraries(pice-cloud PRIVATE pice_cloud)
add_executable(pice-edge ${CMAKE_SOURCE_DIR}/edge/main.cc)
target_link_libraries(pice-edge PRIVATE pice_edge)
add_executable(pice-scheduler ${CMAKE_SOURCE_DIR}/scheduler/main.cc)
target_link_libraries(pice-scheduler PRIVATE pice_scheduler)
target_link_libraries(pice PRIVATE pice_services)

if(PICE_BUILD_TESTS)
  file(GLOB PICE_UNIT_TEST_SRCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/*_test.cc)
  if(PICE_UNIT_TEST_SRCS)
    # bench/relay.cc: the testbed's emulated link; bench/sim/sim.cc: the simulator's model.
    add_executable(unit_tests ${PICE_UNIT_TEST_SRCS} ${CMAKE_SOURCE_DIR}/bench/relay.cc
                   ${CMAKE_SOURCE_DIR}/bench/sim/sim.cc)
    target_link_libraries(unit_tests PRIVATE pice_services GTest::gtest GTest::gtest_main)
    target_compile_definitions(unit_tests PRIVATE PICE_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
    gtest_discover_tests(unit_tests DISCOVERY_TIMEOUT 60)
  endif()
  file(GLOB PICE_IT_SRCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/*_test.cc)
  if(PICE_IT_SRCS)
    add_executable(integration_tests ${PICE_IT_SRCS})
    target_link_libraries(integration_tests PRIVATE pice_services GTest::gtest GTest::gtest_main)
    target_compile_definitions(integration_tests PRIVATE
      PICE_SOURCE_DIR="${CMAKE_SOURCE_DIR}" PICE_BIN_DIR="${CMAKE_BINARY_DIR}")
    add_dependencies(integration_tests pice pice-cloud pice-edge pice-scheduler)
    gtest_discover_tests(integration_tests DISCOVERY_TIMEOUT 60 PROPERTIES RUN_SERIAL TRUE)
  endif()
  # deploy/: kustomize renders, yamllint, systemd-analyze verify, the manifests' configs answer.
  add_test(NAME ValidateDeploy COMMAND ${CMAKE_SOURCE_DIR}/scripts/validate-deploy.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(ValidateDeploy PROPERTIES RUN_SERIAL TRUE TIMEOUT 300)
  # A one-second pice bench testbed run: pinned nodes, emulated links, both routes.
  add_test(NAME TestbedSmoke COMMAND ${CMAKE_SOURCE_DIR}/scripts/testbed-smoke.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(TestbedSmoke PROPERTIES RUN_SERIAL TRUE TIMEOUT 300)
  add_test(NAME SimSmoke COMMAND ${CMAKE_SOURCE_DIR}/scripts/sim-smoke.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(SimSmoke PROPERTIES TIMEOUT 120)
  # The official openai npm SDK against pice local's HTTP API (Node.js from Debian).
  add_test(NAME OpenAISdkTest
           COMMAND ${CMAKE_SOURCE_DIR}/scripts/openai-sdk-test.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(OpenAISdkTest PROPERTIES RUN_SERIAL TRUE TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()
