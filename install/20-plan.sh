# Step: work out what is missing, say it, and ask before installing anything.
APT_PACKAGES=()
have invoke || APT_PACKAGES+=(python3-invoke)
# dockerd is in /usr/sbin, which is not on a plain user's PATH.
if ! have dockerd && [ ! -x /usr/sbin/dockerd ]; then APT_PACKAGES+=(docker.io); fi
# The docker command: part of docker.io up to bookworm, its own package (docker-cli) from trixie.
NEED_CLI=0
have docker || NEED_CLI=1
NEED_COMPOSE=0
compose_ok || NEED_COMPOSE=1

if [ ${#APT_PACKAGES[@]} -eq 0 ] && [ "$NEED_COMPOSE" -eq 0 ] && [ "$NEED_CLI" -eq 0 ]; then
  say "invoke, the Docker engine and Compose v2 are already installed."
else
  say "setup.sh will install from your distribution's packages:"
  for p in "${APT_PACKAGES[@]}"; do echo "      - $p"; done
  [ "$NEED_CLI" -eq 1 ] && echo "      - the docker command (docker-cli where it is a package of its own)"
  [ "$NEED_COMPOSE" -eq 1 ] && echo "      - the Docker Compose v2 plugin"
  if [ "$ASSUME_YES" -ne 1 ] && [ -t 0 ]; then
    read -r -p "    Continue? [y/N] " answer
    case "$answer" in y|Y|yes|YES) ;; *) die "nothing was installed." ;; esac
  fi
fi
