#!/bin/sh
# Checks a certificate you bring (TLS_CERT_FILE and TLS_KEY_FILE in a study's settings file, sent
# by `invoke up` on stdin as a tar of fullchain.pem and privkey.pem) and, only if every check
# passes, installs it for nginx as STUDY's. Runs in a one-off container; each refusal is one line
# that says how to fix it.
set -eu
: "${STUDY:?}" "${DOMAIN:?}"
certs=/etc/nginx/certs/$STUDY
mkdir -p "$certs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/provided"
tar -x -C "$work/provided"
cert="$work/provided/fullchain.pem"
key="$work/provided/privkey.pem"

refuse() { echo "$1" >&2; exit 1; }

openssl x509 -in "$cert" -noout 2>/dev/null ||
  refuse "TLS_CERT_FILE is not a PEM certificate. Use the full chain file (-----BEGIN CERTIFICATE----- ...)."
openssl pkey -in "$key" -noout -passin pass: 2>/dev/null ||
  refuse "TLS_KEY_FILE is not an unencrypted PEM private key. Remove its passphrase: openssl pkey -in KEY -out KEY.plain"
[ "$(openssl x509 -in "$cert" -noout -pubkey)" = "$(openssl pkey -in "$key" -pubout)" ] ||
  refuse "TLS_KEY_FILE does not belong to the certificate in TLS_CERT_FILE (their public keys differ). Use the key that the certificate was requested with."
openssl x509 -in "$cert" -noout -checkend 0 >/dev/null ||
  refuse "The certificate in TLS_CERT_FILE expired on $(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2). Renew it with your certificate authority."
openssl x509 -in "$cert" -noout -checkhost "$DOMAIN" | grep -q "does match" ||
  refuse "The certificate in TLS_CERT_FILE does not cover DOMAIN=$DOMAIN (it names: $(openssl x509 -in "$cert" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' ')). Use a certificate for $DOMAIN, or correct DOMAIN."

# Split the file: 001.pem is your certificate, the rest the chain that should follow it.
awk -v dir="$work" '/-----BEGIN CERTIFICATE-----/ { n++ } n { print > sprintf("%s/%03d.pem", dir, n) }' "$cert"
ls "$work"/[0-9][0-9][0-9].pem | tail -n +2 > "$work/chain-files"
: > "$work/rest.pem"
cp /etc/ssl/certs/ca-certificates.crt "$work/trusted.pem"
while read -r part; do
  cat "$part" >> "$work/rest.pem"
  # A root at the end of the file counts as the chain's end; browsers trust only well-known ones.
  [ "$(openssl x509 -in "$part" -noout -subject | cut -d= -f2-)" = "$(openssl x509 -in "$part" -noout -issuer | cut -d= -f2-)" ] &&
    cat "$part" >> "$work/trusted.pem"
done < "$work/chain-files"
untrusted=""
[ -s "$work/rest.pem" ] && untrusted="-untrusted $work/rest.pem"
# shellcheck disable=SC2086  # $untrusted is two words or none
openssl verify -CAfile "$work/trusted.pem" $untrusted "$work/001.pem" >/dev/null 2>&1 ||
  refuse "The chain in TLS_CERT_FILE is incomplete: it does not lead from your certificate to a root. Append your certificate authority's intermediate certificates after yours (the 'full chain' file)."
# shellcheck disable=SC2086
if ! openssl verify $untrusted "$work/001.pem" >/dev/null 2>&1; then
  echo "warning: the certificate chains to a root that Debian does not trust (a private CA?); participants' browsers will warn unless that root is installed on their machines."
fi

# Whole files only (nginx's watcher reloads when fullchain.pem changes), the key first; then the
# new marker before the others go: nginx's entrypoint makes a self-signed certificate over the
# study's files whenever it finds no marker for its name.
install -m 600 "$key" "$certs/.privkey.pem.new"
install -m 644 "$cert" "$certs/.fullchain.pem.new"
mv "$certs/.privkey.pem.new" "$certs/privkey.pem"
mv "$certs/.fullchain.pem.new" "$certs/fullchain.pem"
echo "$DOMAIN" > "$certs/.provided-for.new"
mv "$certs/.provided-for.new" "$certs/provided-for"
rm -f "$certs/self-signed-for" "$certs/issued-for"
echo "Installed the certificate for $DOMAIN, valid until $(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)."
