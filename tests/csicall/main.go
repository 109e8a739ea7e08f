// Command csi-call sends one CSI request to a plugin's socket and prints the
// answer, for `make bench` (scripts/bench/run-guest, which times a node
// publish against the VolumeDriver's first mount) and for working in the lab
// guest by hand. The request and the answer are the CSI messages in their
// protobuf JSON form (https://protobuf.dev/programming-guides/json/).
//
//	csi-call SOCKET METHOD JSON     METHOD: CreateVolume, DeleteVolume, ControllerPublishVolume,
//	                                NodePublishVolume, NodeUnpublishVolume, NodeGetInfo, ListVolumes
//
// Exit 0: the answer, on stdout; 1: the plugin's error (code and message, on
// stderr); 2: usage.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: csi-call SOCKET METHOD JSON")
		return 2
	}
	conn, err := grpc.NewClient("unix://"+args[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "csi-call:", err)
		return 2
	}
	defer conn.Close()
	ctl, node := csipb.NewControllerClient(conn), csipb.NewNodeClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var req proto.Message
	var call func() (proto.Message, error)
	switch args[1] {
	case "CreateVolume":
		r := &csipb.CreateVolumeRequest{}
		req, call = r, func() (proto.Message, error) { return ctl.CreateVolume(ctx, r) }
	case "DeleteVolume":
		r := &csipb.DeleteVolumeRequest{}
		req, call = r, func() (proto.Message, error) { return ctl.DeleteVolume(ctx, r) }
	case "ControllerPublishVolume":
		r := &csipb.ControllerPublishVolumeRequest{}
		req, call = r, func() (proto.Message, error) { return ctl.ControllerPublishVolume(ctx, r) }
	case "ListVolumes":
		r := &csipb.ListVolumesRequest{}
		req, call = r, func() (proto.Message, error) { return ctl.ListVolumes(ctx, r) }
	case "NodePublishVolume":
		r := &csipb.NodePublishVolumeRequest{}
		req, call = r, func() (proto.Message, error) { return node.NodePublishVolume(ctx, r) }
	case "NodeUnpublishVolume":
		r := &csipb.NodeUnpublishVolumeRequest{}
		req, call = r, func() (proto.Message, error) { return node.NodeUnpublishVolume(ctx, r) }
	case "NodeGetInfo":
		r := &csipb.NodeGetInfoRequest{}
		req, call = r, func() (proto.Message, error) { return node.NodeGetInfo(ctx, r) }
	default:
		fmt.Fprintf(os.Stderr, "csi-call: method %q is not one of CreateVolume, DeleteVolume, ControllerPublishVolume, ListVolumes, NodePublishVolume, NodeUnpublishVolume, NodeGetInfo\n", args[1])
		return 2
	}
	if err := protojson.Unmarshal([]byte(args[2]), req); err != nil {
		fmt.Fprintf(os.Stderr, "csi-call: %s request: %v\n", args[1], err)
		return 2
	}
	resp, err := call()
	if err != nil {
		st := status.Convert(err)
		fmt.Fprintf(os.Stderr, "csi-call: %s: %s\n", st.Code(), st.Message())
		return 1
	}
	out, _ := protojson.Marshal(resp)
	fmt.Println(string(out))
	return 0
}
