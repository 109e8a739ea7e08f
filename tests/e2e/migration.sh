#!/usr/bin/env bash
# migration.sh: volumes made by the previous cryptvol (bin/plugin-prev, `make plugin-prev`: the last commit that gave
# containers the filesystem's root) come through an upgrade to this one with the same data at the same container
# path, moved into the data directory (mount/layout.go) at their first mount; a volume that containers of the old
# plugin still hold is refused to new containers, with an error saying so, until they stop; nothing lands on the
# host's disk. The upgrade is the one docker offers a plugin installed by name: disable -f, rm -f, install again.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/scripts/vm/check.sh"
source "$repo/tests/e2e/lib.bash"
[ "$(hostname)" = cryptvol-lab ] || { echo "migration.sh: run inside the lab guest" >&2; exit 2; }
: "${CRYPTVOL_KMIP_ENDPOINT:?start scripts/kmip/dev-server and source its env file}"
[ -f "$repo/bin/plugin-prev/config.json" ] || { echo "migration.sh: bin/plugin-prev missing (make plugin-prev)" >&2; exit 2; }

check "dockerd up with an imported image" "$repo/scripts/vm/lab-docker" start
content_image
# install BUNDLE: this script's plugin, whatever was installed before, with install_plugin's settings.
install() {
	if docker plugin inspect cryptvol >/dev/null 2>&1; then
		docker plugin disable -f cryptvol >/dev/null 2>&1
		docker plugin rm -f cryptvol >/dev/null || return 1
	fi
	"$repo/scripts/plugin/install" "$1" CRYPTVOL_VG=$vg CRYPTVOL_DEVICES=/dev/vda,/dev/vdb CRYPTVOL_DEFAULT_SIZE=80M \
		>/dev/null && docker plugin enable cryptvol >/dev/null
}

echo "== volumes made by the previous plugin"
check "the previous plugin installed and enabled" install "$repo/bin/plugin-prev"
check "mg4 (ext4) written" docker run --rm -v mg4:/data --volume-driver cryptvol $img \
	sh -c 'echo old4 > /data/f && mkdir /data/d && echo g > /data/d/g && echo n > /data/data'
check "mgx (xfs) written" sh -c "docker volume create -d cryptvol --opt fs=xfs --opt size=320M mgx >/dev/null &&
	docker run --rm -v mgx:/data $img sh -c 'echo oldx > /data/f'"
check "mgc got an image's content" docker run --rm -v mgc:/data --volume-driver cryptvol content:lab cat /data/hello
# At /vol, a path the image lacks: at /data dockerd would give the empty volume the image's /data owner and mode.
check "mgo (uid=1000, mode=0750) written by its user" sh -c "docker volume create -d cryptvol --opt uid=1000 --opt mode=0750 mgo >/dev/null &&
	docker run --rm -u 1000 -v mgo:/vol $img sh -c 'echo mine > /vol/f'"
check "mgh held by a running container" sh -c "docker run -d --name mgr -v mgh:/data --volume-driver cryptvol $img \
	sh -c 'echo held > /data/h; sleep 3600' >/dev/null && sleep 3 && docker exec mgr cat /data/h"
want_c=$(docker run --rm -v mgc:/data $img sh -c 'cd /data && find . | sort | while read f; do stat -c "%n %u:%g %a" "$f"; done')
want_o=$(docker run --rm -v mgo:/vol $img stat -c '%u %a' /vol)
check_eq "mgo's root has the options' owner and mode" "1000 750" "$want_o"

echo "== the upgrade: disable -f, rm -f, install this one"
check "this plugin installed and enabled in its place" install "$repo/bin/plugin"
check_eq "ext4: same files at the same path" "old4 g n" "$(docker run --rm -v mg4:/data $img sh -c 'cat /data/f /data/d/g /data/data' 2>&1 | tr '\n' ' ' | sed 's/ $//')"
check_eq "xfs: same file" oldx "$(docker run --rm -v mgx:/data $img cat /data/f 2>&1)"
check_eq "the image's content: same listing and ownership" "$want_c" \
	"$(docker run --rm -v mgc:/data $img sh -c 'cd /data && find . | sort | while read f; do stat -c "%n %u:%g %a" "$f"; done' 2>&1)"
check_eq "the root's owner and mode are the data directory's" "$want_o" "$(docker run --rm -v mgo:/vol $img stat -c '%u %a' /vol 2>&1)"
check_eq "and its user still writes" mine2 "$(docker run --rm -u 1000 -v mgo:/vol $img sh -c 'echo mine2 > /vol/f && cat /vol/f' 2>&1)"
check "the container of the previous plugin still sees its volume" docker exec mgr cat /data/h
check "a new container on mgh is refused while it holds it, saying why" says 'stop those containers' \
	docker run --rm -v mgh:/data $img cat /data/h
check "mgr stopped" docker rm -f mgr
wait_for "mgh closed after its last container" 60 closed mgh
check_eq "mgh moved at its next first mount" held "$(docker run --rm -v mgh:/data $img cat /data/h 2>&1)"
check "nothing on the host's disk" host_clean
check "volumes removed" docker volume rm mg4 mgx mgc mgo mgh

check "plugin disable" docker plugin disable cryptvol
finish
