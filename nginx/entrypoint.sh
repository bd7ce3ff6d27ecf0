#!/bin/sh
# Prepares each study's certificate and TLS settings, then runs nginx with the configuration
# that `invoke` rendered from the settings files (stack/proxy.py) into /etc/nginx/edge. A study
# without a certificate yet gets a self-signed one, so it serves HTTPS from its first start,
# even on a bare IP address.
set -eu
edge=/etc/nginx/edge
certs=/etc/nginx/certs
# Prepared in a folder of its own, then swapped in by renaming a link: a reload (from invoke, or
# from the watcher below) never reads a half-prepared set.
mkdir -p /tmp/nginx
prepared=$(mktemp -d /tmp/nginx/prepared.XXXXXX)

for dir in "$edge"/studies/*/; do
  [ -f "$dir/name" ] || continue
  study=$(basename "$dir")
  name=$(cat "$dir/name")  # its DOMAIN, or localhost when it is reached by address
  mine="$certs/$study"
  mkdir -p "$mine" "$prepared/$study"
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
    printf 'ssl_stapling on;\nssl_stapling_verify on;\n' > "$prepared/$study/tls.conf"
    cp "$dir/headers.conf" "$prepared/$study/headers.conf"
  else
    : > "$prepared/$study/tls.conf"
    grep -v Strict-Transport-Security "$dir/headers.conf" > "$prepared/$study/headers.conf"
  fi
done
previous=$(readlink /tmp/nginx/studies 2>/dev/null || true)
ln -s "$prepared" "$prepared.link"
mv -T "$prepared.link" /tmp/nginx/studies
[ -z "$previous" ] || rm -rf "$previous"
# The certificates this preparation saw: the watcher below reloads only for newer ones.
cat "$certs"/*/fullchain.pem 2>/dev/null | cksum > /tmp/nginx/certificates.sum

# Starting the server (not a reload): prune the monitor's request log, and watch the certificates:
# when the certbot service renews one, prepare again and reload. Reloading keeps open connections,
# websockets included.
if [ "$*" = "nginx -g daemon off;" ]; then
  (
    while sleep 5; do
      # The monitor's request log (nginx.conf): it reads the last hour, two are kept.
      find /var/log/otree-stack -name 'requests-*.log' -mmin +125 -delete 2>/dev/null
      now=$(cat "$certs"/*/fullchain.pem 2>/dev/null | cksum)
      if [ "$now" != "$(cat /tmp/nginx/certificates.sum)" ]; then
        echo "nginx: a certificate changed; reloading."
        nginx-entrypoint nginx -s reload || echo "nginx: reload failed; still serving the previous certificates."
      fi
    done
  ) &
fi

exec "$@"
