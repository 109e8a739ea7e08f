#!/usr/bin/env bash
# upgrade.sh: docs/operations.md's upgrade in a shared volume group, one host at a time, run on this host by
# scripts/vm/run-pair (`make test-shared-upgrade`; not in `make test`, for its time): both hosts install the last
# release (bin/plugin-old, the commit UPGRADE_FROM) from a registry of their own, with the shared group's settings;
# node 1 has a volume held by a running container, node 2 an idle one. Node 1 is upgraded to this build while node 2
# still runs the release: the two builds share the group, the volume node 1's container wrote under the new build
# moves to node 2's release once the container is gone, and a mount of a volume the other host holds is refused by
# either. Then node 2 is upgraded, and every volume reads back on the other host with its KMIP key unchanged.
#   usage: scripts/vm/run-pair tests/shared/upgrade.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck disable=SC1091
source "$repo/scripts/vm/pair-lib.sh"
# shellcheck disable=SC1091
source "$here/checks.bash"
for b in plugin plugin-old; do
	[ -x "$repo/bin/$b/rootfs/usr/bin/cryptvol" ] || { echo "upgrade.sh: bin/$b missing (make $b)" >&2; exit 2; }
done
old=$("$repo/bin/plugin-old/rootfs/usr/bin/cryptvol" version --json | jq -r .version)
new=$("$repo/bin/plugin/rootfs/usr/bin/cryptvol" version --json | jq -r .version)
img=busybox:lab
# keys: the KMIP key ids of pv1 and pv2, as this host's inspect shows them.
keys='docker volume inspect pv1 pv2 --format "{{index .Status \"kmip_key_id\"}}" | xargs'

pair_setup
echo "== both hosts: dockerd, a registry with the release ($old) and this build ($new), the release installed"
check2 "dockerd, and a registry with both builds pushed, on each host" \
	"source $here/node.bash; \$repo/scripts/vm/lab-docker start && registry_up" \
	"source $here/node.bash; \$repo/scripts/vm/lab-docker start && registry_up" || finish
check2 "the release installed from it with the shared group's settings, and enabled, on each host" \
	"source $here/node.bash; install_release" "source $here/node.bash; install_release" || finish
check2 "both run the release" "source $here/node.bash; [ \"\$(running_version)\" = $old ]" \
	"source $here/node.bash; [ \"\$(running_version)\" = $old ]"

echo "== volumes under the release: pv1 held on node 1, pv2 idle, made on node 2"
check "node 1: pv1 held by pw1, which wrote to it" 1 \
	"docker run -d --name pw1 -v pv1:/data --volume-driver cryptvol $img sh -c 'trap \"exit 0\" TERM; echo one > /data/f; sync; sleep 3600 & wait' > /dev/null &&
	 sleep 2 && docker exec pw1 cat /data/f"
check "node 2: pv2 written" 2 "docker run --rm -v pv2:/data --volume-driver cryptvol $img sh -c 'echo two > /data/f'"
check "the key ids, as node 1 sees them" 1 "$keys > /lab/pair/keys-before && cat /lab/pair/keys-before && [ \$(wc -w < /lab/pair/keys-before) = 2 ]"

echo "== node 1 upgraded to this build, node 2 still on the release"
check "node 1: the upgrade (pw1 stopped, disable -f, upgrade, enable, pw1 started)" 1 "upgrade_to bin/plugin && [ \"\$(running_version)\" = $new ]"
check "node 1: pw1 reads its file again, and writes" 1 \
	"[ \"\$(docker exec pw1 cat /data/f)\" = one ] && docker exec pw1 sh -c 'echo one-new > /data/g && sync'"
check "node 2 (the release) reads pv2 again" 2 "[ \"\$(docker run --rm -v pv2:/data $img cat /data/f)\" = two ]"
check "node 2 (the release) is refused pv1 while node 1 (this build) holds it, saying so" 2 \
	"! docker run --rm -v pv1:/data $img true 2> /scratch/pv1.err; cat /scratch/pv1.err; grep -q 'in use on another host' /scratch/pv1.err"
check "node 1: pw1 removed, pv1 closed there" 1 \
	'docker rm -f pw1 > /dev/null && for i in $(seq 1 60); do closed pv1 && exit 0; sleep 1; done; exit 1'
check "node 2 (the release) reads what node 1 (this build) wrote to pv1" 2 \
	"[ \"\$(docker run --rm -v pv1:/data $img cat /data/f /data/g | xargs)\" = 'one one-new' ]"

echo "== node 2 upgraded"
check "node 2: the upgrade" 2 "upgrade_to bin/plugin && [ \"\$(running_version)\" = $new ]"
check "node 1 reads pv2, which node 2 wrote under the release" 1 "[ \"\$(docker run --rm -v pv2:/data $img cat /data/f)\" = two ]"
check "node 2 reads pv1" 2 "[ \"\$(docker run --rm -v pv1:/data $img cat /data/g)\" = one-new ]"
check "every key id unchanged, as either host sees it" 2 "[ \"\$($keys)\" = \"\$(cat /lab/pair/keys-before)\" ]"

echo "== clean up"
check "pv1 and pv2 removed (their keys destroyed)" 1 "docker volume rm pv1 pv2"
finish
