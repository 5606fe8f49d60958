#!/usr/bin/env bash
# Installs, from Debian's packages, the servers that the integration tests
# run against. Does nothing when they are already there.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# ZooKeeper runs from its jar (scripts/zookeeper.sh); the package brings java.
{ [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1; } || need+=(zookeeper)
# Headless browser for the on-call pages' tests.
command -v chromium >/dev/null 2>&1 || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "== installing ${need[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; the tests start their own on free
# loopback ports, so stop the system ones just installed, where a service
# manager runs (one that was there before is left alone).
for svc in "${need[@]}"; do
  [[ $svc == chromium ]] && continue
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
  fi
done
