#!/usr/bin/env bash
# Makes certificates for tests and first deployments with openssl:
#   DIR/ca.pem, ca-key.pem            a CA (kept: a second run re-issues the leaves under it)
#   DIR/server.pem, server-key.pem    valid for localhost, 127.0.0.1 and ::1 (+ $PICE_CERT_SANS)
#   DIR/client.pem, client-key.pem    a client certificate (CN = $PICE_CERT_CLIENT or pice-client)
# Usage: scripts/dev-certs.sh DIR [DAYS]   (DAYS: leaf validity, default 365; negative = expired)
# Extra server names: PICE_CERT_SANS="DNS:edge-1.example,IP:10.0.0.5" scripts/dev-certs.sh DIR
# Every file is written under a temporary name and renamed, so a node watching DIR never reads
# a half-written certificate (rotation: run it again on the same DIR).
set -euo pipefail
dir=${1:?usage: dev-certs.sh DIR [DAYS]}
days=${2:-365}
command -v openssl >/dev/null || { echo "dev-certs.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.dev-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ ! -s "$dir/ca.pem" || ! -s "$dir/ca-key.pem" ]]; then
  key "$tmp/ca-key.pem"
  openssl req -x509 -new -key "$tmp/ca-key.pem" -out "$tmp/ca.pem" -days 3650 \
    -subj "/CN=pice dev CA $(date +%s%N)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  chmod 600 "$tmp/ca-key.pem"
  mv "$tmp/ca-key.pem" "$dir/ca-key.pem"
  mv "$tmp/ca.pem" "$dir/ca.pem"
fi

leaf() {  # name subject extensions
  key "$tmp/$1-key.pem"
  openssl req -new -key "$tmp/$1-key.pem" -out "$tmp/$1.csr" -subj "$2"
  printf '%s\n' "$3" > "$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -extfile "$tmp/$1.ext" \
    -out "$tmp/$1.pem" 2>/dev/null
  chmod 600 "$tmp/$1-key.pem"
}
sans="DNS:localhost,IP:127.0.0.1,IP:::1${PICE_CERT_SANS:+,$PICE_CERT_SANS}"
leaf server "/CN=localhost" "subjectAltName=$sans
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature"
leaf client "/CN=${PICE_CERT_CLIENT:-pice-client}" "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"
# Keys first: a watcher that sees the new certificate finds its key already there.
for f in server-key.pem client-key.pem server.pem client.pem; do mv "$tmp/$f" "$dir/$f"; done
echo "dev-certs.sh: $dir: ca.pem server.pem server-key.pem client.pem client-key.pem (leaves valid $days days)"
