#!/bin/sh
# The test certificates of tests/it (TLS), made once with openssl and committed, so that the
# tests need no openssl (only the ones that drive `openssl s_client` do). Valid for 100 years;
# run again to replace them all: `sh tests/certs/make.sh` from the repository's root.
#
#   ca.pem            the test CA (EC P-256), which signs the server certificates
#   server.pem/.key   localhost, 127.0.0.1 and ::1; the cert file is the chain: leaf, then CA
#   renewed.pem/.key  the same names under a new key: the certificate a SIGHUP rotates to
#   client-ca.pem     a second CA, which signs client certificates (`--tls-client-ca`)
#   client.pem/.key   a client certificate from client-ca
#   stranger.pem/.key a client certificate from a CA the server does not know
set -eu
cd "$(dirname "$0")"
days=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ca() { # name subject
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
        -subj "/CN=$2" -keyout "$tmp/$1.key" -out "$tmp/$1.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
}
leaf() { # name issuer subject extensions
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$3" \
        -keyout "$tmp/$1.key" -out "$tmp/$1.csr" 2>/dev/null
    printf '%s\n' "$4" > "$tmp/$1.ext"
    openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/$2.pem" -CAkey "$tmp/$2.key" \
        -CAcreateserial -days $days -extfile "$tmp/$1.ext" -out "$tmp/$1.crt" 2>/dev/null
}
server_ext='subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth'
client_ext='extendedKeyUsage=clientAuth'

ca ca "echoloop test CA"
ca client-ca "echoloop test client CA"
ca stranger-ca "a CA nobody trusts"
leaf server ca localhost "$server_ext"
leaf renewed ca localhost "$server_ext"
leaf client client-ca "test client" "$client_ext"
leaf stranger stranger-ca "stranger" "$client_ext"

cp "$tmp/ca.pem" ca.pem
cp "$tmp/client-ca.pem" client-ca.pem
for name in server renewed; do
    cat "$tmp/$name.crt" "$tmp/ca.pem" > $name.pem
    openssl pkcs8 -topk8 -nocrypt -in "$tmp/$name.key" -out $name.key
done
for name in client stranger; do
    cp "$tmp/$name.crt" $name.pem
    openssl pkcs8 -topk8 -nocrypt -in "$tmp/$name.key" -out $name.key
done
