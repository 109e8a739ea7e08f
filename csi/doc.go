// Package csi serves the Container Storage Interface (CSI v1,
// https://github.com/container-storage-interface/spec/blob/v1.13.0/spec.md)
// on top of the volume lifecycle, for Docker Swarm's cluster volumes
// (moby docs/cluster_volumes.md@v26.1.5) and any other orchestrator that
// speaks CSI. Like package plugin, it owns only the translation: requests
// in, each with its own deadline; results, and errors as gRPC status codes,
// out. Volumes are package volume's, the same ones the VolumeDriver makes:
// a CSI volume's id is its volume name.
//
// The calls map onto the lifecycle as follows:
//
//   - CreateVolume, DeleteVolume: volume.Manager Create and Remove (a
//     journaled create and remove, the key made and destroyed on KMIP).
//   - NodePublishVolume: Mount under a mount ID of the target path (activate,
//     KMIP Get, open, mount), then the volume's data directory bound at the
//     target, read-only if asked; NodeUnpublishVolume unbinds and removes the
//     target, then releases the mount (the last release closes the volume).
//     There is no stage: node.go, NodeGetCapabilities, says why.
//   - ControllerPublishVolume checks that the node shares the volume's
//     group; a node of a shared group activates the LV exclusively at its
//     publish (lvmlockd), which is what keeps a volume on one node at a time.
//
// Never a directory that is not the volume: a target path is a bind mount
// of the data directory inside the volume's filesystem (mount/layout.go),
// checked in the mount table to be the volume's decrypted device before the
// publish returns; it is created by the publish that binds it and removed by
// the unpublish that unbinds it (csi/node.go).
//
// Concurrency: the gRPC server runs calls concurrently; package volume
// serializes the calls of one volume with its lock, and the node's binds of
// one volume are serialized here by a lock per volume.
package csi
