# Step: make sure this is a machine the set-up knows how to prepare.
if ! have apt-get; then
  die "setup.sh prepares Debian or Ubuntu machines (apt-get not found).
       On another system install Docker with Compose v2 and Python's 'invoke', then run: invoke up"
fi
if [ "$(id -u)" -ne 0 ] && ! have sudo; then
  die "run setup.sh as root or install sudo: it needs to install packages."
fi
