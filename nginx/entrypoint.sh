#!/bin/sh
# Prepares each study's certificate and TLS settings, then runs nginx with the configuration
# that `invoke` rendered from the settings files (stack/edge.py) into /etc/nginx/edge. A study
# without a certificate yet gets a self-signed one, so it serves HTTPS from its first start,
# even on a bare IP address.
set -eu
edge=/etc/nginx/edge
certs=/etc/nginx/certs
rm -rf /tmp/nginx/studies
mkdir -p /tmp/nginx/studies

for dir in "$edge"/studies/*/; do
  [ -f "$dir/name" ] || continue
  study=$(basename "$dir")
  name=$(cat "$dir/name")  # its DOMAIN, or localhost when it is reached by address
  mine="$certs/$study"
  mkdir -p "$mine" "/tmp/nginx/studies/$study"
  # A real certificate (yours, installed by `invoke up`, or Let's Encrypt's, from the certbot
  # service) is used while the study's name stays the same; until there is one, a self-signed one.
  real=""
  for marker in provided-for issued-for; do
    [ "$(cat "$mine/$marker" 2>/dev/null)" = "$name" ] && real=yes
  done
  if [ -z "$real" ] && { [ ! -s "$mine/fullchain.pem" ] || [ "$(cat "$mine/self-signed-for" 2>/dev/null)" != "$name" ]; }; then
    echo "nginx: no certificate for $study ($name) yet; generating a self-signed one (browsers will warn)."
    # 365 days: what browsers accept at most for a certificate's life.
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$name" \
      -addext "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1" \
      -keyout "$mine/privkey.pem" -out "$mine/fullchain.pem" 2>/dev/null
    rm -f "$mine/provided-for" "$mine/issued-for"
    echo "$name" > "$mine/self-signed-for"
  fi
  # HSTS and OCSP stapling only with a real certificate: HSTS on a self-signed one would lock
  # browsers out of the warning page, and a self-signed one has no OCSP responder.
  if [ -n "$real" ]; then
    printf 'ssl_stapling on;\nssl_stapling_verify on;\n' > "/tmp/nginx/studies/$study/tls.conf"
    cp "$dir/headers.conf" "/tmp/nginx/studies/$study/headers.conf"
  else
    : > "/tmp/nginx/studies/$study/tls.conf"
    grep -v Strict-Transport-Security "$dir/headers.conf" > "/tmp/nginx/studies/$study/headers.conf"
  fi
done

# Starting the server (not a reload): watch the certificates, and when the certbot service renews
# one, prepare again and reload. Reloading keeps open connections, websockets included.
if [ "$*" = "nginx -g daemon off;" ]; then
  (
    last=$(cat "$certs"/*/fullchain.pem 2>/dev/null | cksum)
    while sleep 5; do
      now=$(cat "$certs"/*/fullchain.pem 2>/dev/null | cksum)
      if [ "$now" != "$last" ]; then
        last=$now
        echo "nginx: a certificate changed; reloading."
        nginx-entrypoint nginx -s reload || echo "nginx: reload failed; still serving the previous certificates."
      fi
    done
  ) &
fi

exec "$@"
