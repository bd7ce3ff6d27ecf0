#!/bin/sh
# certbot runs this after it obtained or renewed a certificate: hand it to nginx as its study's
# (the lineage is named after the study), whole files only (nginx checks for a change every few
# seconds and reloads without dropping connections).
set -eu
study=$(basename "$RENEWED_LINEAGE")
certs=/etc/nginx/certs/$study
mkdir -p "$certs"
cp "$RENEWED_LINEAGE/fullchain.pem" "$certs/.fullchain.pem.new"
cp "$RENEWED_LINEAGE/privkey.pem" "$certs/.privkey.pem.new"
chmod 600 "$certs/.privkey.pem.new"
mv "$certs/.privkey.pem.new" "$certs/privkey.pem"
mv "$certs/.fullchain.pem.new" "$certs/fullchain.pem"
# The new marker is in place (whole) before the self-signed one goes: nginx's entrypoint makes a
# self-signed certificate over the study's files whenever it finds neither marker for its name.
echo "$RENEWED_DOMAINS" | cut -d' ' -f1 > "$certs/.issued-for.new"
mv "$certs/.issued-for.new" "$certs/issued-for"
rm -f "$certs/self-signed-for" "$certs/provided-for"
