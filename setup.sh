#!/usr/bin/env bash
# One command for a fresh Debian or Ubuntu machine: installs what is missing (after saying
# what), then starts the stack with `invoke up`. Safe to run again.
#   ./setup.sh          asks before installing anything
#   ./setup.sh --yes    installs without asking (scripts, CI)
set -euo pipefail
cd "$(dirname "$0")"

ASSUME_YES=0
case "${1:-}" in
  --yes|-y) ASSUME_YES=1 ;;
  "") ;;
  *) echo "usage: ./setup.sh [--yes]" >&2; exit 2 ;;
esac
[ "${CI:-}" = "true" ] && ASSUME_YES=1

source install/lib.sh
for step in install/[0-9][0-9]-*.sh; do
  source "$step"
done

say "Starting the stack"
invoke up
