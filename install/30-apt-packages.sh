# Step: install invoke and the Docker engine from the distribution's packages.
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  say "Installing ${APT_PACKAGES[*]}"
  as_root apt-get update -qq
  apt_install "${APT_PACKAGES[@]}"
fi
