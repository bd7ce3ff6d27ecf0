#!/bin/sh
# `acme loop`: obtain the certificate for DOMAIN, then check twice a day and renew when it is due
# (certbot renews 30 days before expiry). `acme once [certbot options]`: one attempt now.
# The result goes to /var/lib/acme/status for `invoke status` and `invoke up`.
set -u
state=/var/lib/acme
mkdir -p /tmp/certbot

write_status() { printf '%s\n' "$1" > "$state/status.tmp" && mv "$state/status.tmp" "$state/status"; }

if [ -z "${DOMAIN:-}" ] || [ -z "${LETSENCRYPT_EMAIL:-}" ] || [ -n "${TLS_CERT_FILE:-}" ]; then
  write_status "off"
  [ "${1:-loop}" = loop ] || { echo "Let's Encrypt is off: it needs DOMAIN and LETSENCRYPT_EMAIL, and no TLS_CERT_FILE." >&2; exit 1; }
  echo "Let's Encrypt is off (DOMAIN and LETSENCRYPT_EMAIL turn it on; TLS_CERT_FILE keeps it off)."
  exec sleep infinity
fi
# A private ACME server's own CA (ACME_CA_FILE), e.g. a test server.
[ -s /etc/acme-ca.pem ] && export REQUESTS_CA_BUNDLE=/etc/acme-ca.pem

attempt() {
  set -- --config-dir "$state/config" --work-dir /tmp/certbot/work --logs-dir /tmp/certbot/logs \
    --non-interactive --agree-tos --email "$LETSENCRYPT_EMAIL" --webroot -w /var/www/acme \
    --cert-name stack -d "$DOMAIN" --keep-until-expiring --deploy-hook acme-deploy-hook "$@"
  [ -n "${ACME_DIRECTORY_URL:-}" ] && set -- "$@" --server "$ACME_DIRECTORY_URL"
  if certbot certonly "$@" > /tmp/certbot/output 2>&1; then
    write_status "ok $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "Let's Encrypt: the certificate for $DOMAIN is in place."
    return 0
  fi
  # certbot's own explanation (e.g. "Detail: ... NXDOMAIN looking up A for ..."), on one line.
  reason=$(grep -E 'Detail:|Error|error:' /tmp/certbot/output | tr -s ' \n' ' ' | cut -c1-600)
  reason=${reason:-$(tail -n 3 /tmp/certbot/output | tr '\n' ' ')}
  write_status "failed $(date -u +%Y-%m-%dT%H:%M:%SZ) $reason"
  echo "Let's Encrypt: no certificate for $DOMAIN: $reason" >&2
  return 1
}

if [ "${1:-loop}" = once ]; then
  shift
  attempt "$@"
  exit $?
fi
write_status "pending"
while true; do
  attempt || echo "Let's Encrypt: no certificate this time; next try in 12 hours, or at the next invoke up." >&2
  sleep 43200 &
  wait $!
done
