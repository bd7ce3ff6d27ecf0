#!/bin/sh
# Let's Encrypt for every study that has a DOMAIN and no certificate of its own: the list is
# /etc/nginx/edge/letsencrypt.list ("study domain" lines, rendered by `invoke`, stack/proxy.py).
# `acme loop`: obtain each study's certificate (a study added later within a minute), then check
# twice a day and renew when one is due (certbot renews 30 days before expiry).
# `acme once [STUDY [DOMAIN]] [-- CERTBOT OPTIONS]`: one attempt now, for one study or all; with
# DOMAIN, for that name instead of the listed one (to check a new name's DNS before switching).
# Each study's result goes to /var/lib/acme/result/STUDY for `invoke status` and `invoke up`.
set -u
state=/var/lib/acme
list=/etc/nginx/edge/letsencrypt.list
mkdir -p /tmp/certbot "$state/result"

write_result() { printf '%s\n' "$2" > "$state/result/.$1.tmp" && mv "$state/result/.$1.tmp" "$state/result/$1"; }

if [ -z "${LETSENCRYPT_EMAIL:-}" ]; then
  [ "${1:-loop}" = loop ] || { echo "Let's Encrypt is off: set LETSENCRYPT_EMAIL in the server's .env." >&2; exit 1; }
  echo "Let's Encrypt is off (LETSENCRYPT_EMAIL in .env and a study's DOMAIN turn it on)."
  exec sleep infinity
fi
# A private ACME server's own CA (ACME_CA_FILE), e.g. a test server.
[ -s /etc/acme-ca.pem ] && export REQUESTS_CA_BUNDLE=/etc/acme-ca.pem

attempt() {  # attempt STUDY DOMAIN [CERTBOT OPTIONS]
  study=$1 domain=$2
  shift 2
  set -- "$@" --config-dir "$state/config" --work-dir /tmp/certbot/work --logs-dir /tmp/certbot/logs \
    --non-interactive --agree-tos --email "$LETSENCRYPT_EMAIL" --webroot -w /var/www/acme \
    --cert-name "$study" -d "$domain" --keep-until-expiring --deploy-hook acme-deploy-hook
  [ -n "${ACME_DIRECTORY_URL:-}" ] && set -- "$@" --server "$ACME_DIRECTORY_URL"
  if certbot certonly "$@" > /tmp/certbot/output 2>&1; then
    write_result "$study" "ok $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "Let's Encrypt: the certificate for $domain ($study) is in place."
    return 0
  fi
  # certbot's own explanation (e.g. "Detail: ... NXDOMAIN looking up A for ..."), on one line.
  reason=$(grep -E 'Detail:|Error|error:' /tmp/certbot/output | tr -s ' \n' ' ' | cut -c1-600)
  reason=${reason:-$(tail -n 3 /tmp/certbot/output | tr '\n' ' ')}
  write_result "$study" "failed $(date -u +%Y-%m-%dT%H:%M:%SZ) $reason"
  echo "Let's Encrypt: no certificate for $domain ($study): $reason" >&2
  return 1
}

if [ "${1:-loop}" = once ]; then
  shift
  only="" name=""
  [ "${1:-}" = "--" ] || { only=${1:-}; [ $# -gt 0 ] && shift; }
  [ "${1:-}" = "--" ] || { name=${1:-}; [ $# -gt 0 ] && shift; }
  [ "${1:-}" = "--" ] && shift
  failed=0 found=""
  while read -r study domain; do
    [ -n "$study" ] || continue
    [ -z "$only" ] || [ "$only" = "$study" ] || continue
    found=yes
    attempt "$study" "${name:-$domain}" "$@" || failed=1
  done < "$list"
  [ -n "$found" ] || { echo "Let's Encrypt: no study ${only:+named $only }with a DOMAIN is listed." >&2; exit 1; }
  exit $failed
fi
while true; do
  while read -r study domain; do
    [ -n "$study" ] || continue
    # A new study, or 12 hours since its last attempt.
    [ -n "$(find "$state/result/$study" -mmin -720 2>/dev/null)" ] && continue
    attempt "$study" "$domain" ||
      echo "Let's Encrypt: next try for $domain in 12 hours, or at the next invoke up." >&2
  done < "$list"
  sleep 60 &
  wait $!
done
