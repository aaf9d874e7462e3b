#!/bin/sh
# Make a CA and a control-plane server certificate for TLS between Envoy and the control
# plane (openssl; Ed25519 keys would do, but Envoy's BoringSSL and every client take
# P-256 everywhere).
#
#   scripts/gen-tls.sh <dir> [name]
#
# Writes <dir>/ca.pem (the CA: give it to Envoy as TG_CP_CA), <dir>/cp.pem and
# <dir>/cp.key (give them to the control plane as TOKENGATE_TLS_CERT and
# TOKENGATE_TLS_KEY). The certificate is for DNS:<name> (default control-plane, the
# `authority` Envoy sends), DNS:localhost and IP:127.0.0.1, valid 825 days. Keys are mode
# 600; the CA key is kept in <dir>/ca.key to issue more certificates, or delete it.
# Existing files are not overwritten (remove <dir> to make new ones).
set -eu
me=gen-tls.sh
[ "$#" -ge 1 ] || { echo "usage: $me <dir> [name]" >&2; exit 2; }
dir=$1
name=${2:-control-plane}
command -v openssl >/dev/null 2>&1 || { echo "$me: openssl not found (apt-get install openssl)" >&2; exit 1; }
if [ -e "$dir/ca.pem" ] || [ -e "$dir/cp.pem" ]; then
    echo "$me: $dir already holds certificates; remove it to make new ones" >&2
    exit 1
fi
mkdir -p "$dir"
umask 077
echo "$me: CA (P-256) in $dir/ca.pem"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=tokengate local CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
echo "$me: server certificate for $name in $dir/cp.pem"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$dir/cp.key" -out "$dir/cp.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$name" >"$dir/cp.ext"
openssl x509 -req -in "$dir/cp.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 825 \
    -extfile "$dir/cp.ext" -out "$dir/cp.pem" 2>/dev/null
rm -f "$dir/cp.csr" "$dir/cp.ext" "$dir/ca.srl"
chmod 644 "$dir/ca.pem" "$dir/cp.pem"
echo "$me: done (TG_CP_CA=$dir/ca.pem; TOKENGATE_TLS_CERT=$dir/cp.pem TOKENGATE_TLS_KEY=$dir/cp.key)"
