#!/usr/bin/env bash
# One-shot `certs` service of docker-compose.yml: a self-signed keystore for the amazonmq
# stand-in and its certificate as the CA strangler trusts, in the `certs` volume (/certs).
# Idempotent: an existing pair is kept, so restarts do not invalidate the CA.
set -euo pipefail
out="${CERTS_DIR:-/certs}"
if [[ -s "$out/broker.p12" && -s "$out/ca.pem" ]]; then
    echo "certs: keeping the existing $out/broker.p12 and $out/ca.pem"
    exit 0
fi
rm -f "$out/broker.p12" "$out/ca.pem" "$out/ca.pem.tmp"
# SAN: the compose service name strangler connects to (the proxy verifies the host name).
keytool -genkeypair -noprompt -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
    -storetype PKCS12 -keystore "$out/broker.p12" \
    -storepass "$KEYSTORE_PASSWORD" -keypass "$KEYSTORE_PASSWORD" \
    -dname "CN=amazonmq, OU=strangler compose, O=strangler" \
    -ext "SAN=dns:amazonmq,dns:localhost,ip:127.0.0.1"
keytool -exportcert -rfc -alias broker -storetype PKCS12 -keystore "$out/broker.p12" \
    -storepass "$KEYSTORE_PASSWORD" -file "$out/ca.pem.tmp"
mv "$out/ca.pem.tmp" "$out/ca.pem"
# Readable by the broker and by strangler (uid 10001). A local demo keystore, nothing more.
chmod 0644 "$out/broker.p12" "$out/ca.pem"
echo "certs: wrote $out/broker.p12 and $out/ca.pem"
