# node.bash: what a job in one of run-pair's guests uses (sourced; tests/shared/pair.sh hands the jobs): the
# plugin run directly as this host's (bin/cryptvol, shared mode, the KMIP server on node 2) and VolumeDriver calls;
# Docker 26 and the managed plugin bundle for the Swarm part.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
node=${HOSTNAME#cryptvol-}
pd=/scratch/cv
sock=$pd/cryptvol.sock
mnt=/mnt/cv
# The KMIP server shares node 2's one emulated CPU with dockerd and, early on, the managed plugin's install: a
# create from node 1 ran out of the default 10 s once.
kmip_timeout=30s
# Docker 26.1 (scripts/vm/docker-debian trixie, unpacked on the lab's host; pair.sh names its root): Swarm's stack
# volumes need Docker 26 at least.
if [ -f /lab/pair/docker-root ]; then
	droot=$(cat /lab/pair/docker-root)
	PATH=$droot/usr/sbin:$droot/usr/bin:$PATH
fi

# call OP BODY: one VolumeDriver request, as dockerd sends it; prints the reply.
call() { curl -sS --max-time 900 --unix-socket "$sock" -X POST -d "$2" "http://plugin/VolumeDriver.$1"; echo; }
# jqe FILTER: jq -e on stdin, failing on empty input, which jq -e takes for true (jq 1.6 exits 0 with no input): a
# request that got no reply (curl timed out: node 2's guest clock once jumped 21 minutes during the takeover) passed
# checks that way.
jqe() {
	local in
	in=$(cat)
	[ -n "${in//[[:space:]]/}" ] || { echo "jqe: no reply to check" >&2; return 1; }
	jq -e "$@" <<< "$in"
}
# ok OP BODY: call, failing unless the reply has no Err.
ok() {
	local r
	r=$(call "$@")
	printf '%s\n' "$r"
	jqe '(.Err // "") == ""' <<< "$r" > /dev/null
}

# plug_start: the plugin of this host on the shared group sv, with the cluster's one KMIP identity (and
# CRYPTVOL_REMOVE_GRACE=$remove_grace, off unless set).
plug_start() {
	mkdir -p "$pd"
	# shellcheck disable=SC1091
	source /lab/pair/kmip/env
	CRYPTVOL_VG=sv CRYPTVOL_SHARED=true CRYPTVOL_NODE=$node CRYPTVOL_DEFAULT_SIZE=64M CRYPTVOL_SOCKET=$sock \
		CRYPTVOL_KMIP_TIMEOUT=$kmip_timeout CRYPTVOL_REMOVE_GRACE=${remove_grace:-off} \
		CRYPTVOL_STATE_DIR=$pd/state CRYPTVOL_MOUNT_ROOT=$mnt CRYPTVOL_LOG_LEVEL=debug \
		setsid "$repo/bin/cryptvol" >> "$pd/plugin.log" 2>&1 < /dev/null &
	echo $! > "$pd/pid"
	# Start-up joins the group's sanlock lockspace (vgchange --lock-start): tens of seconds.
	for _ in $(seq 1 900); do
		[[ $(call List '{}' 2> /dev/null) == *'"Volumes"'* ]] && return 0
		kill -0 "$(cat "$pd/pid")" 2> /dev/null || break
		sleep 0.2
	done
	echo "the plugin did not start; its log:" >&2
	tail -30 "$pd/plugin.log" >&2
	return 1
}

# local_start: a second plugin on this host, on a local volume group of its own (from its data disk /dev/vda), with
# the cluster's one KMIP identity; its socket is $lsock, its mount root $lmnt. What another site's host would be.
lsock=/scratch/cvl/cryptvol.sock
lmnt=/mnt/cvl
local_start() {
	mkdir -p /scratch/cvl
	# lvm takes the global lock from lvmlockd to make any volume group, local ones too (lvmlockd(8), "global
	# lock"): it lives in the shared group's lockspace, which must be started on this host first. A first start
	# fails while lvm makes the lockspace's device node (lvm/shared.go, StartLocks): once more.
	vgchange --lock-start sv > /dev/null 2>&1 || vgchange --lock-start sv > /dev/null || return 1
	# shellcheck disable=SC1091
	source /lab/pair/kmip/env
	CRYPTVOL_VG=local$node CRYPTVOL_DEVICES=/dev/vda CRYPTVOL_NODE=$node CRYPTVOL_DEFAULT_SIZE=64M CRYPTVOL_SOCKET=$lsock \
		CRYPTVOL_KMIP_TIMEOUT=$kmip_timeout CRYPTVOL_STATE_DIR=/scratch/cvl/state CRYPTVOL_MOUNT_ROOT=$lmnt \
		CRYPTVOL_LOG_LEVEL=debug setsid "$repo/bin/cryptvol" >> /scratch/cvl/plugin.log 2>&1 < /dev/null &
	for _ in $(seq 1 900); do
		[[ $(sock=$lsock call List '{}' 2> /dev/null) == *'"Volumes"'* ]] && return 0
		sleep 0.2
	done
	echo "the local plugin did not start; its log:" >&2
	tail -30 /scratch/cvl/plugin.log >&2
	return 1
}

# docker_up: dockerd, then the managed plugin bundle (bin/plugin) created and set for the shared group, not yet
# enabled, as the README's install and docs/shared-volume-group.md, "Host setup", say: the host's sanlock host_id is its node number.
docker_up() {
	# shellcheck disable=SC1091
	source /lab/pair/kmip/env
	"$repo/scripts/vm/lab-docker" start &&
		"$repo/scripts/plugin/install" "$repo/bin/plugin" CRYPTVOL_VG=sv CRYPTVOL_SHARED=true CRYPTVOL_NODE="$node" \
			CRYPTVOL_HOST_ID="${node#node}" CRYPTVOL_DEFAULT_SIZE=64M CRYPTVOL_LOG_LEVEL=debug \
			CRYPTVOL_KMIP_TIMEOUT=$kmip_timeout
}
# task_says TEXT: the stack's task on this host is running and its log file says TEXT.
task_says() {
	local c
	c=$(docker ps -q -f name=st_app | head -1)
	[ -n "$c" ] && docker exec "$c" cat /data/log | grep -q -- "$1"
}

# lv_state V: this host's view of V's LV: active or inactive, and its mount record tag.
lv_state() { lvs --noheadings -o lv_active,lv_tags "sv/cv-$1" | tr -s ' '; }
# mapped V: V's dm-crypt mapping exists on this host.
mapped() { [ -e "/dev/mapper/cryptvol-$1" ]; }
# closed V: V exists, and this host has no mapping of it, its LV inactive here and no mount record of this host.
closed() { ! mapped "$1" && lv_state "$1" > /dev/null && ! lv_state "$1" | grep -q "active\|cryptvol_on_$node"; }

# registry_up: a throwaway registry on this host's 127.0.0.1:5000 (Debian's docker-registry, as
# tests/e2e/upgrade.sh runs it) with the last release (bin/plugin-old) and this build (bin/plugin) pushed to it,
# each tagged with its version, as `make plugin-push` does. Each host has its own: dockerd pulls from a registry on
# 127.0.0.0/8 over plain HTTP, and from one elsewhere only with TLS or --insecure-registry.
registry_up() {
	local d=/scratch/registry
	mkdir -p "$d/data"
	printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5000\n' \
		"$d/data" > "$d/config.yml"
	setsid docker-registry serve "$d/config.yml" > "$d/registry.log" 2>&1 < /dev/null &
	for _ in $(seq 1 120); do curl -fsS http://127.0.0.1:5000/v2/ > /dev/null 2>&1 && break; sleep 0.5; done
	"$repo/scripts/plugin/push" 127.0.0.1:5000 "" "$repo/bin/plugin-old" > "$d/push-old.log" 2>&1 &&
		"$repo/scripts/plugin/push" 127.0.0.1:5000 "" "$repo/bin/plugin" > "$d/push-new.log" 2>&1
}
# version_of BUNDLE: the version `make plugin-push` tags BUNDLE's push with.
version_of() { "$repo/$1/rootfs/usr/bin/cryptvol" version --json | jq -r .version; }
# install_release: dockerd, then the last release installed from this host's registry with the shared group's
# settings on the command line, as the README's install and docs/shared-volume-group.md's host setup say.
install_release() {
	# shellcheck disable=SC1091
	source /lab/pair/kmip/env
	mkdir -p /var/lib/cryptvol /run/lock/lvm /run/lvm
	install -d -m 0700 /etc/cryptvol/kmip
	install -m 0600 "$CRYPTVOL_KMIP_CA" /etc/cryptvol/kmip/ca.pem
	install -m 0600 "$CRYPTVOL_KMIP_CERT" /etc/cryptvol/kmip/client.pem
	install -m 0600 "$CRYPTVOL_KMIP_KEY" /etc/cryptvol/kmip/client.key
	docker plugin install --grant-all-permissions --disable --alias cryptvol "127.0.0.1:5000/cryptvol:$(version_of bin/plugin-old)" \
		CRYPTVOL_VG=sv CRYPTVOL_SHARED=true CRYPTVOL_NODE="$node" CRYPTVOL_HOST_ID="${node#node}" CRYPTVOL_DEFAULT_SIZE=64M \
		CRYPTVOL_KMIP_ENDPOINT="$CRYPTVOL_KMIP_ENDPOINT" CRYPTVOL_KMIP_SERVER_NAME="${CRYPTVOL_KMIP_SERVER_NAME:-localhost}" \
		CRYPTVOL_KMIP_TIMEOUT=$kmip_timeout > /dev/null &&
		docker plugin enable --timeout 120 cryptvol > /dev/null
}
# upgrade_to BUNDLE: docs/operations.md's upgrade on this host: the containers that use a cryptvol volume stopped,
# disable -f, upgrade to BUNDLE's tag, enable, the containers started again.
upgrade_to() {
	local v ctrs
	ctrs=$(for v in $(docker volume ls --format '{{.Driver}} {{.Name}}' | awk '$1 ~ /^cryptvol(:latest)?$/ {print $2}'); do
		docker ps -q -f volume="$v"; done | sort -u)
	[ -z "$ctrs" ] || docker stop $ctrs > /dev/null || return 1
	docker plugin disable -f cryptvol > /dev/null &&
		docker plugin upgrade --grant-all-permissions --skip-remote-check cryptvol "127.0.0.1:5000/cryptvol:$(version_of "$1")" > /dev/null &&
		docker plugin enable --timeout 120 cryptvol > /dev/null || return 1
	[ -z "$ctrs" ] || docker start $ctrs > /dev/null
}
# running_version: the build this host's enabled plugin runs (its bundle's config).
running_version() { docker plugin inspect cryptvol | jq -r '.[0].Config.Env[] | select(.Name == "CRYPTVOL_VERSION") | .Value'; }

# csi_up: dockerd (Docker 28.5 for tests/shared/csi.sh, whose run names its root), then the CSI bundle
# (bin/plugin-csi) installed as cryptvol-csi for the shared group and enabled, as docs/csi.md's install says.
csi_up() {
	# shellcheck disable=SC1091
	source /lab/pair/kmip/env
	"$repo/scripts/vm/lab-docker" start &&
		CRYPTVOL_PLUGIN_NAME=cryptvol-csi "$repo/scripts/plugin/install" "$repo/bin/plugin-csi" CRYPTVOL_VG=sv \
			CRYPTVOL_SHARED=true CRYPTVOL_NODE="$node" CRYPTVOL_HOST_ID="${node#node}" CRYPTVOL_LOG_LEVEL=debug \
			CRYPTVOL_KMIP_TIMEOUT=$kmip_timeout &&
		docker plugin enable --timeout 120 cryptvol-csi
}
# app_says TEXT: the service app's task on this host is running and its log file says TEXT.
app_says() {
	local c
	c=$(docker ps -q -f name=app. | head -1)
	[ -n "$c" ] && docker exec "$c" cat /data/log | grep -q -- "$1"
}
# csi_pid: the CSI plugin's process on this host (its mount namespace holds the staged volumes).
csi_pid() { pgrep -f '^/usr/bin/cryptvol$' | while read -r p; do grep -q CSI_ENDPOINT "/proc/$p/environ" && echo "$p"; done | head -1; }
# swarm_diag: what Swarm says of the service app and volume cv1, and dockerd's lines about volumes, for a failed check.
swarm_diag() {
	docker service ps --no-trunc app 2> /dev/null | cut -c1-300
	docker volume inspect cv1 --format '{{json .ClusterVolume}}' 2> /dev/null | cut -c1-600
	grep -iE 'csi|volume|publish' /scratch/dockerd.log | grep -v 'CSI call\\"\|sweep done\|NodeGetInfo' | tail -15 | cut -c1-400
}
