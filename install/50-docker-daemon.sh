# Step: make sure the Docker engine runs. With systemd it is a service; in a container or a
# CI sandbox without systemd, dockerd is started in the background and logs to /var/log/dockerd.log.
if ! docker_ok; then
  if [ -d /run/systemd/system ]; then
    say "Starting the Docker service"
    as_root systemctl enable --now docker
  else
    say "Starting dockerd in the background (no systemd here); log: /var/log/dockerd.log"
    as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 60); do docker_ok && break; sleep 1; done
  docker_ok || die "the Docker engine did not start. See /var/log/dockerd.log or 'journalctl -u docker'."
fi
if [ "$(id -u)" -ne 0 ] && ! docker info >/dev/null 2>&1; then
  die "Docker runs but your user may not use it. Run: sudo usermod -aG docker $USER, log in again, rerun setup.sh."
fi
