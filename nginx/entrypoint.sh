#!/bin/sh
# Renders the site config from .env values and makes a self-signed certificate when there is
# none, so the stack serves HTTPS at first start, even on a bare IP address.
set -eu
: "${HTTPS_PORT:=443}" "${LOGIN_RATE_LIMIT:=10r/m}" "${LOGIN_RATE_BURST:=5}"
: "${MAX_BODY_SIZE:=10m}" "${HSTS_MAX_AGE:=31536000}" "${DOMAIN:=}"

export SERVER_NAME="${DOMAIN:-_}"
export HTTPS_PORT_SUFFIX=""
[ "$HTTPS_PORT" = "443" ] || HTTPS_PORT_SUFFIX=":$HTTPS_PORT"
export LOGIN_RATE_LIMIT LOGIN_RATE_BURST MAX_BODY_SIZE HSTS_MAX_AGE

mkdir -p /tmp/nginx
vars='${SERVER_NAME} ${HTTPS_PORT_SUFFIX} ${LOGIN_RATE_LIMIT} ${LOGIN_RATE_BURST} ${MAX_BODY_SIZE}'
envsubst "$vars" < /etc/nginx/site.conf.template > /tmp/nginx/site.conf
envsubst '${HSTS_MAX_AGE}' < /etc/nginx/snippets/security-headers.conf.template > /tmp/nginx/security-headers.conf

certs=/etc/nginx/certs
name="${DOMAIN:-localhost}"
if [ ! -s "$certs/fullchain.pem" ] || { [ -f "$certs/self-signed-for" ] && [ "$(cat "$certs/self-signed-for")" != "$name" ]; }; then
  echo "nginx: no certificate for $name yet; generating a self-signed one (browsers will warn)."
  san="DNS:$name,DNS:localhost,IP:127.0.0.1"
  openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$name" -addext "subjectAltName=$san" \
    -keyout "$certs/privkey.pem" -out "$certs/fullchain.pem" 2>/dev/null
  echo "$name" > "$certs/self-signed-for"
fi

exec "$@"
