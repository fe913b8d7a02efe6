#!/usr/bin/env bash
# Debian's prometheus and promtool binaries, unpacked into .cache/prometheus/root (gitignored):
# `apt-get download` + `dpkg -x` rather than `apt-get install`, whose install would start a
# Prometheus service on the machine. Idempotent: does nothing when both binaries are there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/prometheus
bin=$dir/root/usr/bin
if [ -x "$bin/prometheus" ] && [ -x "$bin/promtool" ]; then exit 0; fi
mkdir -p "$dir"
cd "$dir"
rm -f prometheus_*.deb
apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }
rm -rf root
dpkg -x prometheus_*.deb root
rm -f prometheus_*.deb
"$PWD/root/usr/bin/promtool" --version | head -1
