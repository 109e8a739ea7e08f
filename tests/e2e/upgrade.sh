#!/usr/bin/env bash
# upgrade.sh: the plugin as users get it and keep it, from a registry. The last release (bin/plugin-old, `make
# plugin-old`: the commit UPGRADE_FROM) and this build (bin/plugin) are pushed as `make plugin-push` does to a
# throwaway registry in the guest (Debian's docker-registry, distribution 2.8, on 127.0.0.1:5000). The release is
# installed with `docker plugin install` and its settings on the command line, with no cryptvol plugin installed
# before, as the README says; three volumes are made under it (one held by a running container, one idle, one
# half-removed with KMIP down); then the upgrade follows docs/operations.md ("Upgrade and roll back"), with the new
# build SIGKILLed at its first start: every file reads back, every key id is the same, the half-removed volume is
# finished, and the state file is the new build's. A roll back to the release reads the same data. A state file
# of a newer format makes the new build refuse to start, naming both builds, with nothing changed on disk. The
# administrators' command line is the binary read out of the installed plugin's rootfs, first with this checkout's
# bin/ hidden, as on a host that never built cryptvol, and again after the upgrade. At the end the plugin is
# removed, so that later scripts install bin/plugin as they expect (install_plugin).
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/scripts/vm/check.sh"
source "$repo/tests/e2e/lib.bash"
[ "$(hostname)" = cryptvol-lab ] || { echo "upgrade.sh: run inside the lab guest" >&2; exit 2; }
: "${CRYPTVOL_KMIP_ENDPOINT:?start scripts/kmip/dev-server and source its env file}"
for b in plugin plugin-old; do
	[ -x "$repo/bin/$b/rootfs/usr/bin/cryptvol" ] || { echo "upgrade.sh: bin/$b missing (make $b)" >&2; exit 2; }
done
command -v docker-registry > /dev/null || { echo "upgrade.sh: docker-registry not installed (scripts/vm/prepare)" >&2; exit 2; }

registry=127.0.0.1:5000
dir=/scratch/registry
state=/var/lib/cryptvol/mounts.json
# The tags are the bundles' versions, which `make plugin-push` pushes without TAG.
new=$("$repo/bin/plugin/rootfs/usr/bin/cryptvol" version --json | jq -r .version)
old=$("$repo/bin/plugin-old/rootfs/usr/bin/cryptvol" version --json | jq -r .version)

# remove_plugin: no cryptvol plugin installed, whichever way it came (bin/plugin or the registry).
remove_plugin() {
	docker plugin inspect cryptvol > /dev/null 2>&1 || return 0
	docker plugin disable -f cryptvol > /dev/null 2>&1
	docker plugin rm -f cryptvol > /dev/null
}
registry_pid=
stop_registry() {
	[ -n "$registry_pid" ] && kill -KILL "$registry_pid" 2> /dev/null && wait "$registry_pid" 2> /dev/null
	registry_pid=
}
# show_bin: bin/ as it was, if this script hid it (below) and stopped before showing it again.
show_bin() { mountpoint -q "$repo/bin" && umount "$repo/bin"; }
trap 'stop_registry; show_bin' EXIT
# running_version: the build the enabled plugin runs, from its bundle's config (Config.Env, which an upgrade
# replaces; Settings.Env keeps the install's values).
running_version() {
	docker plugin inspect cryptvol | jq -r '.[0].Config.Env[] | select(.Name == "CRYPTVOL_VERSION") | .Value'
}
# holders: the running containers that use a cryptvol volume, as docs/operations.md finds them (the driver is
# cryptvol:latest, whatever the alias).
holders() {
	local v
	for v in $(docker volume ls --format '{{.Driver}} {{.Name}}' | awk '$1 ~ /^cryptvol(:latest)?$/ {print $2}'); do
		docker ps -q -f volume="$v"
	done | sort -u
}
# upgrade_to TAG: the procedure of docs/operations.md, the containers stopped and started again by the caller.
upgrade_to() {
	docker plugin disable -f cryptvol > /dev/null &&
		timeout 300 docker plugin upgrade --grant-all-permissions --skip-remote-check cryptvol "$registry/cryptvol:$1" \
			> "$dir/upgrade.out" 2>&1 < /dev/null &&
		docker plugin enable --timeout 120 cryptvol > /dev/null
}
# disk: what the plugin may change on disk: the state directory's files and every LV's name, tags and state.
disk() {
	(cd /var/lib/cryptvol && find . -type f | sort | xargs sha256sum)
	lvs --noheadings -o lv_name,lv_tags,lv_attr "$vg"
}
sha() { docker run --rm -v "$1":/data $img sha256sum /data/r 2>&1 | cut -d' ' -f1; }

check "dockerd up with an imported image" "$repo/scripts/vm/lab-docker" start

echo "== a registry: docker-registry $(docker-registry --version 2>&1 | awk '{print $NF}') on $registry"
rm -rf "$dir" && mkdir -p "$dir/data"
cat > "$dir/config.yml" << EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: $registry
EOF
docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
registry_pid=$!
wait_for "the registry answers /v2/" 60 curl -fsS "http://$registry/v2/"

echo "== push: the release ($old) and this build ($new), as make plugin-push does"
check "two builds to upgrade between" test "$old" != "$new"
check "no cryptvol plugin installed (any earlier one removed)" remove_plugin
# Through the script `make plugin-push` runs: make itself would first read the whole checkout over the guest's
# shared root (its $(shell find)s, git describe --dirty).
check "scripts/plugin/push without a registry fails saying what to set" says 'set REGISTRY=HOST:PORT' \
	"$repo/scripts/plugin/push" ""
check "scripts/plugin/push $registry '' bin/plugin-old" "$repo/scripts/plugin/push" $registry "" "$repo/bin/plugin-old"
check "scripts/plugin/push $registry '' bin/plugin" "$repo/scripts/plugin/push" $registry "" "$repo/bin/plugin"
check "the registry lists both tags" sh -c "curl -fsS http://$registry/v2/cryptvol/tags/list |
	jq -e --arg o '$old' --arg n '$new' '(.tags | index(\$o)) and (.tags | index(\$n))'"
check_eq "nothing named cryptvol is left installed by the pushes" "" "$(docker plugin ls --format '{{.Name}}' | grep cryptvol)"
# From here to the upgrade this guest is a host that never built cryptvol: bin/ (the binary, both bundles,
# key-state) is hidden under an empty tmpfs.
check "bin/ hidden: a host with no build of cryptvol" mount -t tmpfs -o size=1m,mode=0555 nobuild "$repo/bin"
check_eq "...nothing in it, no cryptvol on PATH" "0 no" "$(ls -A "$repo/bin" | wc -l) $(command -v cryptvol > /dev/null && echo yes || echo no)"

echo "== install the release from the registry, as a user would"
mkdir -p /var/lib/cryptvol /run/lock/lvm /run/lvm
install -d -m 0700 /etc/cryptvol/kmip
install -m 0600 "$CRYPTVOL_KMIP_CA" /etc/cryptvol/kmip/ca.pem
install -m 0600 "$CRYPTVOL_KMIP_CERT" /etc/cryptvol/kmip/client.pem
install -m 0600 "$CRYPTVOL_KMIP_KEY" /etc/cryptvol/kmip/client.key
# The install enables the plugin itself; a first start too slow for it leaves the plugin installed but disabled,
# and the README's next step, `docker plugin enable --timeout 120`, takes it from there.
docker plugin install --grant-all-permissions --alias cryptvol "$registry/cryptvol:$old" CRYPTVOL_VG=$vg \
	CRYPTVOL_DEVICES=/dev/vda,/dev/vdb CRYPTVOL_KMIP_ENDPOINT="$CRYPTVOL_KMIP_ENDPOINT" \
	CRYPTVOL_KMIP_SERVER_NAME="${CRYPTVOL_KMIP_SERVER_NAME:-localhost}" CRYPTVOL_DEFAULT_SIZE=80M > "$dir/install.out" 2>&1
rc=$?
sed 's/^/     | /' "$dir/install.out"
check "docker plugin install $registry/cryptvol:$old (with its settings) installed it" docker plugin inspect cryptvol
if [ "$(docker plugin inspect -f '{{.Enabled}}' cryptvol 2>/dev/null)" != true ]; then
	echo "     | the install did not enable it (exit $rc): docker plugin enable --timeout 120"
	check "docker plugin enable --timeout 120 cryptvol" docker plugin enable --timeout 120 cryptvol
fi
docker plugin inspect cryptvol > "$dir/plugin.json" 2>&1
# inspect JQ: JQ of the install's `docker plugin inspect` (one CLI call for all the checks below).
inspect() { jq -r ".[0] | $1" "$dir/plugin.json"; }
check_eq "enabled" true "$(inspect .Enabled)"
check_eq "installed from the registry" "$registry/cryptvol:$old" "$(inspect .PluginReference)"
check "the settings from the install command line took" sh -c "jq -e '.[0].Settings.Env | index(\"CRYPTVOL_DEVICES=/dev/vda,/dev/vdb\")' '$dir/plugin.json'"
check_eq "docker plugin inspect shows the version" "$old" "$(inspect '.Config.Env[] | select(.Name == "CRYPTVOL_VERSION") | .Value')"
# Read from the config, not tried: `docker plugin set` refuses any change while the plugin is enabled.
check_eq "...an entry docker plugin set cannot change (nothing settable)" "[]" \
	"$(inspect '.Config.Env[] | select(.Name == "CRYPTVOL_VERSION") | .Settable // [] | tojson')"

echo "== three volumes under the release: held by a running container, idle, half-removed"
# upw ends at its SIGTERM, as a service does: docker stop then takes no 10-second grace.
check "upa held by upw, which wrote to it" sh -c "docker run -d --name upw -v upa:/data --volume-driver cryptvol $img \
	sh -c 'trap \"exit 0\" TERM; echo held > /data/f; sync; sleep 3600 & wait' > /dev/null && sleep 2 && docker exec upw cat /data/f"
check "upb written (8 MiB of random bytes) and idle" docker run --rm -v upb:/data --volume-driver cryptvol $img \
	sh -c 'head -c 8388608 /dev/urandom > /data/r && sync'
shab=$(sha upb)
check "upc written" docker run --rm -v upc:/data --volume-driver cryptvol $img sh -c 'echo c > /data/f'

echo "== the administrators' command line on that host, read out of the installed plugin's rootfs"
id=$(docker plugin inspect -f '{{.Id}}' cryptvol)
rootfs=$(docker info -f '{{.DockerRootDir}}')/plugins/$id/rootfs
check "copied from the plugin's rootfs" install -m 0755 "$rootfs/usr/bin/cryptvol" "$dir/cryptvol"
check_eq "cryptvol version names the installed build" "cryptvol $old" "$("$dir/cryptvol" version 2>&1 | head -1)"
key0=$(status upa kmip_key_id)
check "cryptvol rotate upa (through the plugin's socket)" "$dir/cryptvol" rotate upa
keya=$(status upa kmip_key_id) keyb=$(status upb kmip_key_id) keyc=$(status upc kmip_key_id)
check "upa has a new KMIP key" sh -c "[ -n '$keya' ] && [ '$keya' != '$key0' ]"
check "bin/ shown again (the checks below read KMIP with bin/key-state)" umount "$repo/bin"
check "KMIP stopped" "$repo/scripts/kmip/dev-server" stop /scratch/kmip
check "docker volume rm upc fails half-way with KMIP away, saying so" says 'already unreadable' docker volume rm upc
check_eq "the release's state file: format 2, no writer" "2 null" "$(jq -r '"\(.version) \(.writer)"' $state 2>&1)"
check "...with upc's remove journaled" sh -c "jq -e '.removing[] | select(.volume == \"upc\")' $state"
check "KMIP back" "$repo/scripts/kmip/dev-server" start /scratch/kmip

echo "== the upgrade (docs/operations.md): stop the holders, disable -f, upgrade, enable, start them"
ctrs=$(holders)
check_eq "the holders are upw" "$(docker ps -q -f name=upw)" "$ctrs"
check "the holders stopped" docker stop $ctrs
check "docker plugin disable -f cryptvol" docker plugin disable -f cryptvol
# The CLI asks before an upgrade to another reference, which another tag is (docker/cli
# cli/command/plugin/upgrade.go@v26.1.5, runUpgrade): the answer comes on its input, as a user types it.
check "docker plugin upgrade --grant-all-permissions cryptvol $registry/cryptvol:$new, asking, answered y" sh -c \
	"echo y | timeout 300 docker plugin upgrade --grant-all-permissions cryptvol '$registry/cryptvol:$new' > '$dir/upgrade.out' 2>&1"
sed 's/^/     | /' "$dir/upgrade.out"
check "...which asked whether the images may differ" grep -q 'Plugin images do not match, are you sure?' "$dir/upgrade.out"
# The new build's first start, killed: whether dockerd then restarts it or `docker plugin enable` fails, what the
# release left must come through, as the checks below show.
(for _ in $(seq 1 300); do p=$(pgrep -x cryptvol) && { kill -9 $p; echo "     | SIGKILLed the new build's first start (pid $p)"; exit 0; }; sleep 0.05; done) &
killer=$!
docker plugin enable --timeout 120 cryptvol > "$dir/enable.out" 2>&1 || echo "     | the enable failed: $(head -1 "$dir/enable.out")"
wait $killer
plugin_up || check "docker plugin enable --timeout 120 cryptvol, again" docker plugin enable --timeout 120 cryptvol
wait_for "the new build serves" 120 plugin_up
check_eq "it is the new build" "$new" "$(running_version)"
check_eq "docker plugin ls shows it at the head of the description" "cryptvol:latest cryptvol $new:" \
	"$(docker plugin ls --no-trunc --format '{{.Name}} {{.Description}}' | grep '^cryptvol:latest ' | cut -d' ' -f1-3)"
check_eq "installed from the registry's new tag" "$registry/cryptvol:$new" "$(docker plugin inspect -f '{{.PluginReference}}' cryptvol 2>&1)"
id=$(docker plugin inspect -f '{{.Id}}' cryptvol)
check "its log names its version at start" sh -c "grep -a 'plugin=$id' /scratch/dockerd.log | grep 'cryptvol starting' | grep -q 'version=$new'"
check "the holders started again" docker start $ctrs
check_eq "upa: upw reads its file again" held "$(docker exec upw cat /data/f 2>&1)"
check "...and writes" docker exec upw sh -c 'echo after > /data/g && sync'
check_eq "upb: the same bytes" "$shab" "$(sha upb)"
check_eq "every key id unchanged" "$keya $keyb" "$(status upa kmip_key_id) $(status upb kmip_key_id)"
wait_for "upc's remove finished: its key destroyed on KMIP" 90 "$repo/scripts/kmip/key-state" --gone "$keyc"
check_not "...and its LV gone" lv_exists upc
docker volume rm upc > /dev/null 2>&1
check_not "...and docker lists it no more" sh -c 'docker volume ls -q | grep -qx upc'
wait_for "the state file is the new build's: format 2, writer cryptvol $new, no remove left" 60 sh -c \
	"jq -e --arg w 'cryptvol $new' '.version == 2 and .writer == \$w and ((.removing // []) | length == 0)' $state"
check "the audit trail's start record names the new version" sh -c \
	"jq -r 'select(.op == \"plugin.start\") | .detail' /var/lib/cryptvol/audit.log | tail -1 | grep -q '^cryptvol $new, state format'"

echo "== the administrators' command line again, after the upgrade"
check "copied again from the plugin's rootfs" install -m 0755 "$rootfs/usr/bin/cryptvol" "$dir/cryptvol"
check_eq "cryptvol version names the new build" "cryptvol $new" "$("$dir/cryptvol" version 2>&1 | head -1)"
check "cryptvol rotate upb (through the plugin's socket)" "$dir/cryptvol" rotate upb
keyb2=$(status upb kmip_key_id)
check "upb has a new KMIP key" sh -c "[ -n '$keyb2' ] && [ '$keyb2' != '$keyb' ]"

echo "== a state file of a newer format: the new build refuses to start and changes nothing"
ctrs=$(holders)
check "the holders stopped" docker stop $ctrs
check "docker plugin disable -f cryptvol" docker plugin disable -f cryptvol
cp $state "$dir/state.saved"
check "the state file made format 3, written by cryptvol 99.0" sh -c \
	"jq '.version = 3 | .writer = \"cryptvol 99.0\"' '$dir/state.saved' > $state"
before=$(disk)
check "docker plugin enable (the socket answers)" docker plugin enable --timeout 120 cryptvol
check "a create is refused, naming both builds and formats" says \
	"refuses to start: state file $state has state format 3, written by cryptvol 99.0; this plugin is cryptvol $new and reads state formats 1 to 2" \
	docker volume create -d cryptvol upz
check "...every time" says "upgrade the plugin to cryptvol 99.0 or later" docker volume create -d cryptvol upz
check "its log says start-up refused, once" sh -c "[ \$(grep -a 'plugin=$id' /scratch/dockerd.log | grep -c 'start-up refused') = 1 ]"
check_eq "nothing changed on disk: the state directory's files, every LV's tags and state" "$before" "$(disk)"
check "docker plugin disable -f, the state file put back, enable" sh -c "docker plugin disable -f cryptvol > /dev/null &&
	cp '$dir/state.saved' $state && docker plugin enable --timeout 120 cryptvol > /dev/null"
check "...and it serves" plugin_up

echo "== roll back to the release, the same way (the holders still stopped)"
check "back to $old: disable -f, upgrade, enable" upgrade_to "$old"
check_eq "it is the release" "$old" "$(running_version)"
check "the holders started again" docker start $ctrs
check_eq "upa: both files" "held after" "$(docker exec upw cat /data/f /data/g 2>&1 | tr '\n' ' ' | sed 's/ $//')"
check_eq "upb: the same bytes, under its rotated key" "$shab" "$(sha upb)"
check_eq "key ids as the new build left them" "$keya $keyb2" "$(status upa kmip_key_id) $(status upb kmip_key_id)"

echo "== clean up: the volumes, the plugin, the registry"
check "upw removed" docker rm -f upw
check "upa and upb removed" docker volume rm upa upb
check "the registry's plugin removed (later scripts install bin/plugin)" remove_plugin
stop_registry
rm -rf "$dir"
finish
