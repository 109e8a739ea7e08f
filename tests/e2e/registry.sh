#!/usr/bin/env bash
# registry.sh: the plugin as users get it, from a registry: the bundle (bin/plugin, make plugin) pushed to a
# throwaway registry in the guest (Debian's docker-registry, distribution 2.8, on 127.0.0.1:5000, data under
# /scratch) with `make plugin-push`, then installed with `docker plugin install --alias cryptvol` and its settings
# on the install command line, as the README's Install section says, with no cryptvol plugin installed before. A
# volume is made, written and read back in a new container; `docker plugin inspect` shows the version; and the
# administrators' command line is the binary read out of the installed plugin's rootfs, not bin/cryptvol. At the
# end the plugin is removed, so the scripts after this one install bin/plugin as they expect (install_plugin).
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/scripts/vm/check.sh"
source "$repo/tests/e2e/lib.bash"
[ "$(hostname)" = cryptvol-lab ] || { echo "registry.sh: run inside the lab guest" >&2; exit 2; }
: "${CRYPTVOL_KMIP_ENDPOINT:?start scripts/kmip/dev-server and source its env file}"
[ -x "$repo/bin/plugin/rootfs/usr/bin/cryptvol" ] || { echo "registry.sh: bin/plugin missing (make plugin)" >&2; exit 2; }
command -v docker-registry > /dev/null || { echo "registry.sh: docker-registry not installed (scripts/vm/prepare)" >&2; exit 2; }

registry=127.0.0.1:5000
dir=/scratch/registry
# The tag is the bundle's version, which is what `make plugin-push` pushes without TAG.
tag=$("$repo/bin/plugin/rootfs/usr/bin/cryptvol" version --json | jq -r .version)
ref=$registry/cryptvol:$tag

# remove_plugin: no cryptvol plugin installed, whichever way it came (bin/plugin or the registry).
remove_plugin() {
	docker plugin inspect cryptvol > /dev/null 2>&1 || return 0
	docker plugin disable -f cryptvol > /dev/null 2>&1
	docker plugin rm -f cryptvol > /dev/null
}
registry_pid=
stop_registry() {
	[ -n "$registry_pid" ] && kill "$registry_pid" 2> /dev/null && wait "$registry_pid" 2> /dev/null
	registry_pid=
}
trap stop_registry EXIT

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

echo "== push: make plugin-push REGISTRY=$registry"
check "no cryptvol plugin installed (any earlier one removed)" remove_plugin
t0=$SECONDS
check "make plugin-push (docker plugin create, push) without REGISTRY fails saying what to set" says 'set REGISTRY=HOST:PORT' \
	make -s -C "$repo" plugin-push
check "make plugin-push REGISTRY=$registry (TAG: the bundle's version, $tag)" make -s -C "$repo" plugin-push REGISTRY=$registry
echo "     | push took $((SECONDS - t0)) s"
check "the registry lists cryptvol:$tag" sh -c "curl -fsS http://$registry/v2/cryptvol/tags/list | jq -e --arg t '$tag' '.tags | index(\$t)'"
check_eq "nothing named cryptvol is left installed by the push" "" "$(docker plugin ls --format '{{.Name}}' | grep cryptvol)"

echo "== install from the registry, as a user would"
mkdir -p /var/lib/cryptvol /run/lock/lvm /run/lvm
install -d -m 0700 /etc/cryptvol/kmip
install -m 0600 "$CRYPTVOL_KMIP_CA" /etc/cryptvol/kmip/ca.pem
install -m 0600 "$CRYPTVOL_KMIP_CERT" /etc/cryptvol/kmip/client.pem
install -m 0600 "$CRYPTVOL_KMIP_KEY" /etc/cryptvol/kmip/client.key
t0=$SECONDS
# The install enables the plugin itself; a first start too slow for it leaves the plugin installed but disabled,
# and the README's next step, `docker plugin enable --timeout 120`, takes it from there.
docker plugin install --grant-all-permissions --alias cryptvol "$ref" CRYPTVOL_VG=$vg \
	CRYPTVOL_DEVICES=/dev/vda,/dev/vdb CRYPTVOL_KMIP_ENDPOINT="$CRYPTVOL_KMIP_ENDPOINT" \
	CRYPTVOL_KMIP_SERVER_NAME="${CRYPTVOL_KMIP_SERVER_NAME:-localhost}" CRYPTVOL_DEFAULT_SIZE=80M > "$dir/install.out" 2>&1
rc=$?
sed 's/^/     | /' "$dir/install.out"
check "docker plugin install $ref (with its settings) installed it" docker plugin inspect cryptvol
if [ "$(docker plugin inspect -f '{{.Enabled}}' cryptvol 2>/dev/null)" != true ]; then
	echo "     | the install did not enable it (exit $rc): docker plugin enable --timeout 120"
	check "docker plugin enable --timeout 120 cryptvol" docker plugin enable --timeout 120 cryptvol
fi
echo "     | install and enable took $((SECONDS - t0)) s"
check_eq "enabled" true "$(docker plugin inspect -f '{{.Enabled}}' cryptvol 2>&1)"
check_eq "installed from the registry" "$ref" "$(docker plugin inspect -f '{{.PluginReference}}' cryptvol 2>&1)"
check "the settings from the install command line took" sh -c \
	"docker plugin inspect -f '{{range .Settings.Env}}{{println .}}{{end}}' cryptvol | grep -qx 'CRYPTVOL_DEVICES=/dev/vda,/dev/vdb'"
check_eq "docker plugin inspect shows the version (CRYPTVOL_VERSION)" "CRYPTVOL_VERSION=$tag" \
	"$(docker plugin inspect -f '{{range .Settings.Env}}{{println .}}{{end}}' cryptvol | grep '^CRYPTVOL_VERSION=')"
# Read from the config, not tried: `docker plugin set` refuses any change while the plugin is enabled.
check_eq "...an entry docker plugin set cannot change (no settable fields)" "[]" \
	"$(docker plugin inspect -f '{{range .Config.Env}}{{if eq .Name "CRYPTVOL_VERSION"}}{{.Settable}}{{end}}{{end}}' cryptvol 2>&1)"
check "the plugin answers docker volume ls" docker volume ls
# dockerd logs the plugin's lines with plugin=ID: this install's, not an earlier one's of the same build.
id=$(docker plugin inspect -f '{{.Id}}' cryptvol)
check "its log names its version at start" sh -c "grep -a 'plugin=$id' /scratch/dockerd.log | grep 'cryptvol starting' | grep -q 'version=$tag'"

echo "== a volume through the registry's plugin"
check "docker volume create -d cryptvol --opt size=64M reg1" docker volume create -d cryptvol --opt size=64M reg1
check_eq "listed under the alias's driver name" "cryptvol:latest" "$(docker volume inspect -f '{{.Driver}}' reg1 2>&1)"
check "written through a container" docker run --rm -v reg1:/data $img sh -c 'echo registry-install > /data/f && sync'
check_eq "read back by a new container" registry-install "$(docker run --rm -v reg1:/data $img cat /data/f 2>&1)"
check "closed after the containers exit" closed reg1
check "the audit trail's start record names the version" sh -c \
	"jq -r 'select(.op == \"plugin.start\") | .detail' /var/lib/cryptvol/audit.log | tail -1 | grep -q '^cryptvol $tag, state format'"

echo "== the administrators' command line, read out of the installed plugin's rootfs"
rootfs=$(docker info -f '{{.DockerRootDir}}')/plugins/$id/rootfs
check "copied from the plugin's rootfs" install -m 0755 "$rootfs/usr/bin/cryptvol" "$dir/cryptvol"
check_eq "cryptvol version names the installed build" "cryptvol $tag" "$("$dir/cryptvol" version 2>&1 | head -1)"
check "...and the state format it reads" sh -c "'$dir/cryptvol' version | grep -q '^state format [0-9]'"
key1=$(status reg1 kmip_key_id)
check "cryptvol rotate reg1 (through the plugin's socket)" "$dir/cryptvol" rotate reg1
key2=$(status reg1 kmip_key_id)
check "reg1 has a new KMIP key" sh -c "[ -n '$key2' ] && [ '$key2' != '$key1' ]"
check_eq "reg1 reads back after the rotation" registry-install "$(docker run --rm -v reg1:/data $img cat /data/f 2>&1)"

echo "== clean up: the volume, the plugin, the registry"
check "reg1 removed" docker volume rm reg1
check "the registry's plugin removed (later scripts install bin/plugin)" remove_plugin
stop_registry
rm -rf "$dir"
finish
