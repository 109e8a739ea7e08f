module github.com/cryptvol/cryptvol

go 1.26.8

require (
	github.com/docker/go-connections v0.5.0
	github.com/docker/go-plugins-helpers v0.0.0-20240701071450-45e2431495c8
	github.com/moby/sys/mountinfo v0.7.2
	github.com/ovh/kmip-go v0.8.1
	github.com/sirupsen/logrus v1.9.3
	golang.org/x/sys v0.1.0
)

require (
	github.com/Microsoft/go-winio v0.4.14 // indirect
	github.com/coreos/go-systemd v0.0.0-20191104093116-d3cd4ed1dbcf // indirect
)
