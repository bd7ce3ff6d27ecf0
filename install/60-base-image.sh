# Step: the Debian base image every service image is built from. Pulled where a registry
# answers; otherwise built from this machine's Debian mirror with debootstrap, which is
# installed for that (air-gapped labs, registry rate limits).
BASE_IMAGE=${BASE_IMAGE:-debian:trixie-slim}
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "Pulling the base image $BASE_IMAGE"
  if ! timeout 120 docker pull "$BASE_IMAGE"; then
    say "No registry answered; the base image will be built with debootstrap from this machine's Debian mirror."
    have debootstrap || { say "Installing debootstrap"; apt_install debootstrap; }
    invoke build-base
  fi
fi
