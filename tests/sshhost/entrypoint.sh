#!/bin/sh
# The deploy user: home at $DEPLOY_HOME (mounted from the test machine), the test's public key,
# the Docker socket's group, passwordless sudo (as on a cloud VM's default user). Then sshd.
set -eu
socket_group=$(stat -c %g /var/run/docker.sock)
getent group "$socket_group" >/dev/null || groupadd -g "$socket_group" hostdocker
useradd --home-dir "$DEPLOY_HOME" --no-create-home --shell /bin/bash \
  --groups "$(getent group "$socket_group" | cut -d: -f1)" deploy
mkdir -p "$DEPLOY_HOME/.ssh"
cp /keys/authorized_keys "$DEPLOY_HOME/.ssh/authorized_keys"
chown -R deploy:deploy "$DEPLOY_HOME"
chmod 700 "$DEPLOY_HOME/.ssh"
echo "deploy ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/deploy
ssh-keygen -A >/dev/null
exec /usr/sbin/sshd -D -e -o PasswordAuthentication=no
