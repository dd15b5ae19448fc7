#!/bin/sh
# bench-fs.sh CMD...: runs CMD in a mount namespace of its own in which
# /run/netns and /etc/netns are fresh tmpfs, as `make bench` does (unless
# BENCH_MACHINE_FS=1).
#
# Why: this machine's /run and /etc are on ext4 without a journal, where
# every new file's inode is found by skipping, one by one, the inodes
# deleted in the last minute or more (ext4's recently_deleted, checked only
# without a journal). A benchmark phase that makes a thousand pins right
# after another deleted a thousand pays for those deletions, O(N) per new
# file: the phases measured each other. On a stock Debian machine /run is
# a tmpfs and / has a journal, and none of this happens. Everything the
# benchmark makes is pinned inside the private tmpfs: if it dies, the
# namespaces go with the mount namespace, and nothing shows on the machine.
set -e
made=
if [ ! -d /etc/netns ]; then
	mkdir /etc/netns
	made=1
fi
mkdir -p /run/netns
cleanup() {
	if [ -n "$made" ]; then
		rmdir /etc/netns 2>/dev/null || true
	fi
}
# Interrupted (Ctrl-C, a timeout): stop the benchmark, then clean up.
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; cleanup; exit 130' INT TERM
unshare --mount --propagation private sh -c '
	mount -t tmpfs -o mode=755,size=64m npl-bench /run/netns &&
	mount -t tmpfs -o mode=755,size=64m npl-bench /etc/netns &&
	exec "$@"' sh "$@" &
pid=$!
status=0
wait "$pid" || status=$?
cleanup
exit $status
