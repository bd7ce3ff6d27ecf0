# Step: install invoke and the Docker engine from the distribution's packages.
if [ ${#APT_PACKAGES[@]} -gt 0 ] || [ "$NEED_CLI" -eq 1 ]; then
  as_root apt-get update -qq
  # From trixie on, docker.io only recommends its command-line client, and we install without
  # recommends: ask for it by name where it is a package of its own.
  if [ "$NEED_CLI" -eq 1 ] && apt-cache show docker-cli >/dev/null 2>&1; then APT_PACKAGES+=(docker-cli); fi
  if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
    say "Installing ${APT_PACKAGES[*]}"
    apt_install "${APT_PACKAGES[@]}"
  fi
  have docker || die "the docker command is still missing after installing ${APT_PACKAGES[*]}; install your distribution's Docker client by hand."
fi
