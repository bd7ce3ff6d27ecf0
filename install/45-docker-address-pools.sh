# Step: let Docker make many small networks. Each study has four (docker-compose.yml), the proxy
# one, and Docker's default pools hand out whole /16 and /20 subnets: about 30 networks, so a
# server would stop at seven studies with "could not find an available, non-overlapping IPv4
# address pool". The same address ranges in /24 pieces (254 addresses, more than a study's few
# containers need) make 3840; 172.17.0.0/16 stays with Docker's default bridge, which may
# already have all of it. A daemon.json the server already has is its administrator's: left as is.
DAEMON_JSON=/etc/docker/daemon.json
if [ ! -e "$DAEMON_JSON" ]; then
  say "Letting Docker make up to 3840 small networks (default-address-pools in $DAEMON_JSON)"
  as_root install -d /etc/docker
  as_root tee "$DAEMON_JSON" >/dev/null <<'EOF'
{
  "default-address-pools": [
    {"base": "172.18.0.0/15", "size": 24},
    {"base": "172.20.0.0/14", "size": 24},
    {"base": "172.24.0.0/13", "size": 24},
    {"base": "192.168.0.0/16", "size": 24}
  ]
}
EOF
  # Docker reads the pools only when it starts. A running engine with nothing in it (just
  # installed) is restarted now; one that runs containers is left alone, not to stop studies.
  if docker_ok; then
    if [ -z "$(as_root docker ps -q)" ]; then
      say "Restarting the Docker engine to use them"
      if [ -d /run/systemd/system ]; then
        as_root systemctl restart docker
      else
        as_root pkill -x dockerd || true
        for _ in $(seq 30); do pgrep -x dockerd >/dev/null || break; sleep 1; done
      fi
    else
      warn "Docker uses the new networks only after its next restart (a reboot, or 'sudo systemctl restart docker', which stops every study for a moment; they start again by themselves)."
    fi
  fi
elif ! grep -q '"default-address-pools"' "$DAEMON_JSON"; then
  warn "$DAEMON_JSON has no default-address-pools: Docker's defaults make about 30 networks, enough for seven studies (each uses four). The README's \"How many studies\" says what to add."
fi
