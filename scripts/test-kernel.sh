#!/usr/bin/env bash
# make test-kernel: run the live tests that need kernel features this
# machine lacks (ipvlan) under Debian's stock kernel in qemu (TCG, no KVM).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod || need+=(busybox-static)
command -v xz >/dev/null || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
cache=${NETPLAN_LAB_KERNEL_CACHE:-/var/cache/netplan-lab-kernel}
mkdir -p "$cache"
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image/{print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image/{print $2; exit}')
fi
if [ ! -d "$cache/$pkg/boot" ]; then
  (cd "$cache" && rm -f "$pkg"_*.deb && apt-get download "$pkg" 2>/dev/null)
  rm -rf "$cache/$pkg" && dpkg -x "$cache/$pkg"_*.deb "$cache/$pkg"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go test -c -o "$work/live.test" ./internal/live
CGO_ENABLED=0 go build -o "$work/netplan-lab" ./cmd/netplan-lab
go run ./scripts/kerneltest -kernel-root "$cache/$pkg" -test "$work/live.test" -bin "$work/netplan-lab" -src . -run "${KERNEL_TEST_RUN:-}"
