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

# Closed doors (README "Security"). Known Host names: DOMAIN only when it is set; without it,
# IP addresses and localhost (the stack is then reached by address). Others get no answer.
if [ -n "$DOMAIN" ]; then
  KNOWN_HOSTS="\"$DOMAIN\" 1;"
else
  KNOWN_HOSTS='~^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ 1; ~^\[[0-9a-fA-F:.]+\]$ 1; localhost 1;'
fi
# ADMIN_ALLOW_IPS: addresses/CIDRs that may reach admin pages, exports and the REST API (empty: all).
ADMIN_ALLOW_GEO="default 1;"
if [ -n "$(echo "${ADMIN_ALLOW_IPS:-}" | tr -d ' ,')" ]; then
  ADMIN_ALLOW_GEO="default 0;"
  for entry in $(echo "$ADMIN_ALLOW_IPS" | tr ',' ' '); do ADMIN_ALLOW_GEO="$ADMIN_ALLOW_GEO $entry 1;"; done
fi
# Under DEMO the demo pages are public like participants' pages; under STUDY they are admin pages.
DEMO_PUBLIC=0
[ "${OTREE_AUTH_LEVEL:-}" = "DEMO" ] && DEMO_PUBLIC=1
export KNOWN_HOSTS ADMIN_ALLOW_GEO DEMO_PUBLIC

mkdir -p /tmp/nginx
vars='${SERVER_NAME} ${HTTPS_PORT_SUFFIX} ${LOGIN_RATE_LIMIT} ${LOGIN_RATE_BURST} ${MAX_BODY_SIZE} ${KNOWN_HOSTS} ${ADMIN_ALLOW_GEO} ${DEMO_PUBLIC}'
envsubst "$vars" < /etc/nginx/site.conf.template > /tmp/nginx/site.conf
envsubst '${HSTS_MAX_AGE}' < /etc/nginx/snippets/security-headers.conf.template > /tmp/nginx/security-headers.conf

certs=/etc/nginx/certs
name="${DOMAIN:-localhost}"
# A real certificate (yours, installed by `invoke up`, or Let's Encrypt's, from the certbot
# service) is used while DOMAIN stays the same; until there is one, a self-signed one.
real=""
for marker in provided-for issued-for; do
  [ "$(cat "$certs/$marker" 2>/dev/null)" = "$name" ] && real=yes
done
if [ -z "$real" ] && { [ ! -s "$certs/fullchain.pem" ] || [ "$(cat "$certs/self-signed-for" 2>/dev/null)" != "$name" ]; }; then
  echo "nginx: no certificate for $name yet; generating a self-signed one (browsers will warn)."
  san="DNS:$name,DNS:localhost,IP:127.0.0.1"
  # 365 days: what browsers accept at most for a certificate's life.
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$name" -addext "subjectAltName=$san" \
    -keyout "$certs/privkey.pem" -out "$certs/fullchain.pem" 2>/dev/null
  rm -f "$certs/provided-for" "$certs/issued-for"
  echo "$name" > "$certs/self-signed-for"
fi

# HSTS and OCSP stapling only with a real certificate: HSTS on a self-signed one would lock
# browsers out of the warning page, and a self-signed one has no OCSP responder.
if [ -n "$real" ]; then
  printf 'ssl_stapling on;\nssl_stapling_verify on;\n' > /tmp/nginx/tls-real-certificate.conf
else
  : > /tmp/nginx/tls-real-certificate.conf
  sed -i '/Strict-Transport-Security/d' /tmp/nginx/security-headers.conf
fi

# Starting the server (not a reload): watch the certificate, and when the certbot service renews
# it, render again and reload. Reloading keeps open connections, websockets included.
if [ "$*" = "nginx -g daemon off;" ]; then
  (
    last=$(cksum < "$certs/fullchain.pem")
    while sleep 5; do
      now=$(cksum < "$certs/fullchain.pem" 2>/dev/null) || continue
      if [ "$now" != "$last" ]; then
        last=$now
        echo "nginx: the certificate changed; reloading."
        nginx-entrypoint nginx -s reload || echo "nginx: reload failed; still serving the previous certificate."
      fi
    done
  ) &
fi

exec "$@"
