# install.bash: sourced by the end-to-end scripts (after scripts/vm/check.sh): dockerd up, the KMIP client
# certificates where the bundle's kmip mount expects them, and the plugin bundle from bin/plugin (make plugin)
# installed and configured over /dev/vda and /dev/vdb, unless a script before this one installed it already.
# Each script runs on its own as well as after another.
install_plugin() {
	check "dockerd up with an imported image" "$repo/scripts/vm/lab-docker" start
	mkdir -p /etc/cryptvol/kmip /var/lib/cryptvol /run/lock/lvm
	cp "$CRYPTVOL_KMIP_CA" /etc/cryptvol/kmip/ca.pem
	cp "$CRYPTVOL_KMIP_CERT" /etc/cryptvol/kmip/client.pem
	cp "$CRYPTVOL_KMIP_KEY" /etc/cryptvol/kmip/client.key
	docker plugin inspect cryptvol > /dev/null 2>&1 && return 0
	echo "== install the plugin"
	check "docker plugin create" docker plugin create cryptvol "$repo/bin/plugin"
	check "docker plugin set" docker plugin set cryptvol CRYPTVOL_VG=cryptvg CRYPTVOL_DEVICES=/dev/vda,/dev/vdb \
		CRYPTVOL_DEFAULT_SIZE=80M CRYPTVOL_KMIP_ENDPOINT="$CRYPTVOL_KMIP_ENDPOINT" CRYPTVOL_KMIP_SERVER_NAME=localhost \
		kmip.source=/etc/cryptvol/kmip
}
