// Certificate rotation without torn pairs (used by common/tls.cc).
//
// gRPC's FileWatcherCertificateProvider re-reads the key and the certificate as two files: a
// rotation that replaces them one after the other (every tool does) can be read half-way, a
// new key with the old certificate, and every handshake then fails until the next read; a
// file being written or holding garbage is loaded as it is. So the providers never watch the
// operator's files. A reloader thread does, once every kTlsReloadSeconds: when their contents
// change and the new set checks out (the PEM parses, the key is the certificate's, the
// certificate is valid now), it writes the key and certificate chain together into one
// private file and the CA into another, each replaced atomically (rename); the providers
// watch those. A set that does not check out is logged and the previous one kept.
//
// The private copies live in $TMPDIR/pice-tls-<pid>-XXXXXX (mode 0700, files 0600), removed
// at exit; directories left by processes that no longer exist are removed at the next start.
#ifndef PICE_COMMON_TLS_RELOAD_H_
#define PICE_COMMON_TLS_RELOAD_H_

#include <string>

#include "absl/status/statusor.h"

namespace pice {

struct TlsSnapshot {
  std::string identity;  // key + certificate chain in one PEM file; "" without a cert
  std::string ca;        // the CA bundle; "" without one
};

// Starts watching (cert, key, ca) (cert and key both empty or both set; ca may be empty) and
// returns the paths of their checked copies. The same files share one watch. Error when the
// files do not check out now.
absl::StatusOr<TlsSnapshot> WatchTlsFiles(const std::string& cert, const std::string& key,
                                          const std::string& ca);

}  // namespace pice

#endif  // PICE_COMMON_TLS_RELOAD_H_
