#include "common/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <ctime>

#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/status_macros.h"
#include "common/tls_reload.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "spdlog/spdlog.h"

namespace pice {
namespace {

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

// How a key of `field` is named in errors: "tls.cert" in a config; "--cert" (field "--") or
// "--tls-dir" (one flag for every file) on a command line.
std::string Field(const std::string& field, const char* key) {
  if (field == "--") return absl::StrCat("--", key);
  if (field.rfind("--", 0) == 0) return field;
  return absl::StrCat(field, ".", key);
}

absl::Status FileError(const std::string& field, const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", path, ": ", what));
}

absl::StatusOr<BioPtr> Open(const std::string& field, const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"), BIO_free);
  if (!bio) {
    ERR_clear_error();
    return FileError(field, path, "cannot read the file");
  }
  return bio;
}

std::string Asn1Time(const ASN1_TIME* t) {
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || ASN1_TIME_print(bio.get(), t) != 1) return "?";
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n);
}

// Every certificate in a PEM file; error when none, or when the first is not valid now.
absl::StatusOr<std::vector<X509Ptr>> ReadCerts(const std::string& field, const std::string& path) {
  PICE_ASSIGN_OR_RETURN(BioPtr bio, Open(field, path));
  std::vector<X509Ptr> certs;
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(c, X509_free);
  }
  ERR_clear_error();  // the loop ends on "no start line"
  if (certs.empty()) return FileError(field, path, "no PEM certificate in the file");
  const X509* first = certs.front().get();
  if (X509_cmp_current_time(X509_get0_notAfter(first)) < 0) {
    return FileError(field, path,
                     absl::StrCat("the certificate expired on ", Asn1Time(X509_get0_notAfter(first))));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(first)) > 0) {
    return FileError(field, path, absl::StrCat("the certificate is not valid before ",
                                               Asn1Time(X509_get0_notBefore(first))));
  }
  return certs;
}

absl::Status CheckPair(const std::string& field, const std::string& cert_path,
                       const std::string& key_path) {
  PICE_ASSIGN_OR_RETURN(auto certs, ReadCerts(Field(field, "cert"), cert_path));
  PICE_ASSIGN_OR_RETURN(BioPtr bio, Open(Field(field, "key"), key_path));
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  ERR_clear_error();
  if (!key) return FileError(Field(field, "key"), key_path, "no PEM private key in the file");
  if (X509_check_private_key(certs.front().get(), key.get()) != 1) {
    ERR_clear_error();
    return FileError(Field(field, "key"), key_path,
                     absl::StrCat("this key does not belong to the certificate ", cert_path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckServerTls(const ServerTls& tls, const std::string& field) {
  if (!tls.enabled()) return absl::OkStatus();
  if (tls.key.empty()) return absl::InvalidArgumentError(Field(field, "key") + ": required with cert");
  PICE_RETURN_IF_ERROR(CheckPair(field, tls.cert, tls.key));
  if (!tls.client_ca.empty()) {
    PICE_RETURN_IF_ERROR(ReadCerts(Field(field, "client_ca"), tls.client_ca).status());
  }
  return absl::OkStatus();
}

absl::Status CheckClientTls(const ClientTls& tls, const std::string& field) {
  if (!tls.enabled) return absl::OkStatus();
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(field, "cert"), ", ", Field(field, "key"),
                     ": a client certificate and its key go together"));
  }
  if (!tls.cert.empty()) PICE_RETURN_IF_ERROR(CheckPair(field, tls.cert, tls.key));
  if (!tls.ca.empty()) PICE_RETURN_IF_ERROR(ReadCerts(Field(field, "ca"), tls.ca).status());
  return absl::OkStatus();
}

absl::Status ReadServerTls(const ConfigNode& parent, const std::string& key, ServerTls* out) {
  if (!parent.Has(key)) return absl::OkStatus();
  ConfigNode t = parent.Child(key);
  PICE_RETURN_IF_ERROR(t.CheckKeys({"cert", "key", "client_ca"}));
  PICE_RETURN_IF_ERROR(t.Require("cert"));
  PICE_RETURN_IF_ERROR(t.Require("key"));
  ServerTls tls;
  PICE_RETURN_IF_ERROR(t.ReadPath("cert", &tls.cert));
  PICE_RETURN_IF_ERROR(t.ReadPath("key", &tls.key));
  PICE_RETURN_IF_ERROR(t.ReadPath("client_ca", &tls.client_ca, true));
  if (auto s = CheckServerTls(tls, key); !s.ok()) return parent.Error(std::string(s.message()));
  *out = std::move(tls);
  return absl::OkStatus();
}

absl::Status ReadClientTls(const ConfigNode& parent, const std::string& key, ClientTls* out) {
  if (!parent.Has(key)) return absl::OkStatus();
  ConfigNode t = parent.Child(key);
  PICE_RETURN_IF_ERROR(t.CheckKeys({"ca", "cert", "key", "server_name"}));
  ClientTls tls;
  tls.enabled = true;
  PICE_RETURN_IF_ERROR(t.ReadPath("ca", &tls.ca, true));
  PICE_RETURN_IF_ERROR(t.ReadPath("cert", &tls.cert, true));
  PICE_RETURN_IF_ERROR(t.ReadPath("key", &tls.key, true));
  PICE_RETURN_IF_ERROR(t.ReadString("server_name", &tls.server_name));
  if (auto s = CheckClientTls(tls, key); !s.ok()) return parent.Error(std::string(s.message()));
  *out = std::move(tls);
  return absl::OkStatus();
}

ServerTls ServerTlsFromDir(const std::string& dir) {
  return {dir + "/server.pem", dir + "/server-key.pem", dir + "/ca.pem"};
}

ClientTls ClientTlsFromDir(const std::string& dir) {
  ClientTls t;
  t.enabled = true;
  t.ca = dir + "/ca.pem";
  t.cert = dir + "/client.pem";
  t.key = dir + "/client-key.pem";
  return t;
}

namespace {

// A provider over the checked copies of the files (common/tls_reload.h); over the files
// themselves when they cannot be copied now (the handshakes then say what is wrong).
std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider> Provider(
    const std::string& cert, const std::string& key, const std::string& ca) {
  auto copy = WatchTlsFiles(cert, key, ca);
  if (!copy.ok()) {
    spdlog::error("tls: {}", std::string(copy.status().message()));
    return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        key, cert, ca, kTlsReloadSeconds);
  }
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      copy->identity, copy->identity, copy->ca, kTlsReloadSeconds);
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const ServerTls& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  auto provider = Provider(tls.cert, tls.key, tls.client_ca);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!tls.client_ca.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const ClientTls& tls,
                                                                 grpc::ChannelArguments* args) {
  if (!tls.enabled) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (!tls.ca.empty() || !tls.cert.empty()) {
    options.set_certificate_provider(Provider(tls.cert, tls.key, tls.ca));
    if (!tls.ca.empty()) options.watch_root_certs();
    if (!tls.cert.empty()) options.watch_identity_key_cert_pairs();
  }
  options.set_verify_server_certs(true);
  if (!tls.server_name.empty() && args) args->SetSslTargetNameOverride(tls.server_name);
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace pice
