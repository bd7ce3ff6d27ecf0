# Step: the Compose v2 plugin. Ubuntu ships it as docker-compose-v2, Debian trixie as
# docker-compose 2.x. Debian bookworm only has Compose v1, so there the plugin's binary is
# taken from trixie's package (it needs nothing but libc), through a temporary apt source
# made from this machine's own Debian mirror; the machine's own sources stay as they are.
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins

compose_from_trixie() {
  local mirror tmp
  # The same reading of the apt sources that the base image build uses.
  mirror=$(python3 stack/apt_sources.py)
  [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d/*}; install the Compose v2 plugin by hand."
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$tmp/trixie.list"
  local opts=(-o "Dir::Etc::sourcelist=$tmp/trixie.list" -o Dir::Etc::sourceparts=- \
              -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::archives=$tmp/archives" \
              -o APT::Get::List-Cleanup=0)
  as_root apt-get "${opts[@]}" update -qq
  (cd "$tmp" && as_root apt-get "${opts[@]}" download docker-compose)
  dpkg-deb -x "$tmp"/docker-compose_*.deb "$tmp/root"
  as_root install -D -m 755 "$tmp/root/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN_DIR/docker-compose"
  rm -rf "$tmp"
}

if [ "$NEED_COMPOSE" -eq 1 ] && ! compose_ok; then
  say "Installing the Docker Compose v2 plugin"
  if apt-cache show docker-compose-v2 >/dev/null 2>&1; then
    apt_install docker-compose-v2
  elif apt-cache policy docker-compose | grep -q 'Candidate: 2\.'; then
    apt_install docker-compose
  else
    compose_from_trixie
  fi
  compose_ok || die "the Compose v2 plugin did not install; see the messages above."
fi
