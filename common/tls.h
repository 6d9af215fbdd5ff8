// TLS and mutual TLS for every gRPC link, from PEM files that are reloaded when they change.
//
// Server side (every listener's `tls:` block):
//   tls: {cert: server.pem, key: server-key.pem, client_ca: ca.pem}
// cert + key serve TLS; client_ca also requires a client certificate signed by that CA
// (mutual TLS). Client side (the scheduler's `node_tls:` for its links to cloud and edges,
// `pice query --tls-dir`):
//   node_tls: {ca: ca.pem, cert: client.pem, key: client-key.pem, server_name: pice-edge}
// ca verifies the server (without it: the system's roots); cert + key are presented when the
// server asks; server_name is the name the server's certificate must carry when the address
// does not (edges reached by IP with a certificate for a DNS name).
//
// The files are read again every kTlsReloadSeconds and a changed set takes effect for new
// connections (rotation without restart); a set that does not load, match or is expired keeps
// the old one (common/tls_reload.h). At start the files are checked with OpenSSL so
// that a wrong path, a key that is not the certificate's or an expired certificate is a config
// error naming the key, not a handshake failure later.
#ifndef PICE_COMMON_TLS_H_
#define PICE_COMMON_TLS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace pice {

class ConfigNode;

inline constexpr unsigned kTlsReloadSeconds = 1;

struct ServerTls {
  std::string cert;       // PEM chain; empty = plaintext
  std::string key;        // PEM private key
  std::string client_ca;  // when set, clients must present a certificate signed by it
  bool enabled() const { return !cert.empty(); }
};

struct ClientTls {
  bool enabled = false;
  std::string ca;           // PEM roots that sign the servers; empty = system roots
  std::string cert, key;    // optional client certificate (mutual TLS)
  std::string server_name;  // expected name in the server's certificate; empty = the host
};

// Reads `key` ({cert, key, client_ca}) of `parent` when present; paths resolve against the
// config's directory. Checks the files (see CheckServerTls).
absl::Status ReadServerTls(const ConfigNode& parent, const std::string& key, ServerTls* out);
// Reads `key` ({ca, cert, key, server_name}) of `parent` when present (enabled = true).
absl::Status ReadClientTls(const ConfigNode& parent, const std::string& key, ClientTls* out);

// The files load, the key is the certificate's, the certificate is valid now and a CA file
// holds at least one certificate. INVALID_ARGUMENT "<field>.<key>: <file>: <problem>"
// (field "--": "--<key>: ..."; another field starting with "--": "<field>: ...").
absl::Status CheckServerTls(const ServerTls& tls, const std::string& field);
absl::Status CheckClientTls(const ClientTls& tls, const std::string& field);

// dir/server.pem + server-key.pem + ca.pem (client_ca): what scripts/dev-certs.sh writes.
ServerTls ServerTlsFromDir(const std::string& dir);
// dir/ca.pem + client.pem + client-key.pem.
ClientTls ClientTlsFromDir(const std::string& dir);

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const ServerTls& tls);
// Insecure credentials when !tls.enabled. Adds the server-name override to `args`.
std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const ClientTls& tls,
                                                                 grpc::ChannelArguments* args);

}  // namespace pice

#endif  // PICE_COMMON_TLS_H_
