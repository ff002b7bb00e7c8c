#!/usr/bin/env bash
# Two ranks on two hosts: two network namespaces joined by a veth pair (10.77.X.1 and
# 10.77.X.2, addresses that exist only inside them), each running vicreg_ddp_example as one
# rank with MASTER_ADDR the first host's address. Run twice: with GLOO_SOCKET_IFNAME naming
# each host's interface, and without it (this host's name resolves to a loopback address, so
# init_from_env must pick the address that routes to MASTER_ADDR). Both must reproduce the
# single process's loss at every step. The namespaces (and the veth pair in them) are removed
# on every exit path. Needs root, iproute2 and a kernel that lets this process create network
# namespaces and a veth pair (a chroot or a container without CAP_SYS_ADMIN does not): where it
# cannot, it exits 77 (skipped) with the reason and leaves nothing behind, unless
# VICREG_REQUIRE_TWO_HOSTS is set (CI sets it: there the test must run).
set -euo pipefail
example="$1"
skip() {
  if [ -n "${VICREG_REQUIRE_TWO_HOSTS:-}" ]; then
    echo "two_hosts: cannot run, and VICREG_REQUIRE_TWO_HOSTS is set: $1"
    exit 1
  fi
  echo "two_hosts: skipped: $1"
  exit 77
}
[ "$(id -u)" -eq 0 ] || skip "creating network namespaces needs root"
command -v ip >/dev/null || skip "needs iproute2 (the ip command)"
# Namespaces left by a run that was killed outright (SIGKILL skips the trap below).
for ns in $(ip netns list 2>/dev/null | awk '/^vicreg-[ab]-[0-9]+/ {print $1}'); do
  kill -0 "${ns##*-}" 2>/dev/null || ip netns del "$ns" 2>/dev/null || true
done
tag=$$
host_a="vicreg-a-$tag" host_b="vicreg-b-$tag"
dev_a="vra$tag" dev_b="vrb$tag"  # interface names: at most 15 characters
net="10.77.$((tag % 250))"
out=$(mktemp -d)
# `ip netns add` bind-mounts /run/netns onto itself the first time; where it then fails it
# leaves that mount behind, so it is undone here unless it was there before.
netns_was_mounted=$(mountpoint -q /run/netns 2>/dev/null && echo 1 || echo 0)
netns_dir_existed=$([ -d /run/netns ] && echo 1 || echo 0)
cleanup() {
  ip netns del "$host_a" 2>/dev/null || true
  ip netns del "$host_b" 2>/dev/null || true
  if [ "$netns_was_mounted" = 0 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
    [ "$netns_dir_existed" = 1 ] || rmdir /run/netns 2>/dev/null || true
  fi
  rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# The probe is the setup itself: any step that fails (creating the namespaces or the veth
# pair, or entering a namespace, which a chroot refuses) means this machine cannot host it.
setup() {
  ip netns add "$host_a" && ip netns add "$host_b" &&
    ip link add "$dev_a" netns "$host_a" type veth peer name "$dev_b" netns "$host_b" &&
    ip -n "$host_a" addr add "$net.1/24" dev "$dev_a" &&
    ip -n "$host_b" addr add "$net.2/24" dev "$dev_b" &&
    ip -n "$host_a" link set lo up && ip -n "$host_b" link set lo up &&
    ip -n "$host_a" link set "$dev_a" up && ip -n "$host_b" link set "$dev_b" up &&
    ip netns exec "$host_a" true
}
setup 2>"$out/probe" ||
  skip "cannot set up two network namespaces joined by a veth pair here: $(tr '\n' ' ' < "$out/probe")"

args=(--steps 20 --batch-size 63)
"$example" "${args[@]}" > "$out/single.txt"
status=0
for mode in ifname route; do
  port=$((20000 + RANDOM % 20000))
  pids=()
  for r in 0 1; do
    host=$([ $r = 0 ] && echo "$host_a" || echo "$host_b")
    env_ifname=()
    if [ $mode = ifname ]; then
      env_ifname=(GLOO_SOCKET_IFNAME="$([ $r = 0 ] && echo "$dev_a" || echo "$dev_b")")
    fi
    ip netns exec "$host" env RANK=$r WORLD_SIZE=2 MASTER_ADDR="$net.1" MASTER_PORT=$port \
      "${env_ifname[@]}" timeout 120 "$example" "${args[@]}" \
      > "$out/$mode$r.txt" 2> "$out/$mode$r.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { status=1; }; done
  for r in 0 1; do
    if ! paste -d' ' <(grep '^step' "$out/single.txt" | awk '{print $4}') \
                     <(grep '^step' "$out/$mode$r.txt" | awk '{print $4}') |
      awk -v r=$r -v m=$mode '{d = ($1 - $2) / $1; if (d < 0) d = -d; if (d > x) x = d; n++}
           END {printf "%s, rank %d: %d steps, max relative loss difference %.3g\n", m, r, n, x;
                exit (n == 20 && x < 1e-9) ? 0 : 1}'; then
      status=1
      echo "--- $mode rank $r stderr:"; cat "$out/$mode$r.err"
    fi
  done
  if [ $mode = route ] && ! grep -q "the local address that routes to MASTER_ADDR" "$out/route1.err"; then
    echo "route: rank 1 did not say which address it chose"; cat "$out/route1.err"; status=1
  fi
done
exit $status
