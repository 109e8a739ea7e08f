package plugin

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/docker/go-plugins-helpers/sdk"
	dv "github.com/docker/go-plugins-helpers/volume"
)

// mountPath is the VolumeDriver Mount route. serveMount registers it with
// its method, which makes it more specific than the helper's pattern for
// the same path, so it takes the requests and the helper's is never
// reached (https://pkg.go.dev/net/http#hdr-Patterns-ServeMux).
const mountPath = "POST /VolumeDriver.Mount"

// errClientGone ends a Mount whose client stopped waiting; nobody reads
// it, the log does.
var errClientGone = errors.New("dockerd stopped waiting for this mount before it was answered (docker plugin enable --timeout caps each request, 30 s unless set); the mount was taken back")

// serveMount serves Mount and hands its answer to dockerd inside the
// request, so that a Mount nobody receives is taken back. dockerd records
// a mount ID only for a Mount answered in time (moby
// volume/mounts/mounts.go@v26.1.5, MountPoint.Setup): when its client
// gives up (docker plugin enable --timeout, 30 s by default) it never
// sends that Mount's Unmount, and the volume would stay decrypted with no
// container. TestAMountDockerdGaveUpOnIsTakenBack pins it. An answer
// written in full just before dockerd gives up is still lost: dockerd's
// timer and its read race.
func (d *Driver) serveMount(h muxer) {
	h.HandleFunc(mountPath, func(w http.ResponseWriter, r *http.Request) {
		req := &dv.MountRequest{}
		if err := sdk.DecodeRequest(w, r, req); err != nil {
			return
		}
		// Read to the end: only then does the server watch the connection
		// and cancel the request's context when the client closes it.
		io.Copy(io.Discard, io.LimitReader(r.Body, 4096))
		rc := http.NewResponseController(w)
		answered := false
		err := d.mount(req, func(res *dv.MountResponse) error {
			if err := r.Context().Err(); err != nil {
				return err
			}
			answered = true
			sdk.EncodeResponse(w, res, false)
			// Writing to a socket its peer closed fails here.
			return rc.Flush()
		})
		if err != nil && !answered {
			sdk.EncodeResponse(w, dv.NewErrorResponse(err.Error()), true)
		}
	})
}

// mount runs one Mount and gives its answer to deliver; when deliver
// fails, the client is gone and the Mount is taken back by its Unmount.
func (d *Driver) mount(r *dv.MountRequest, deliver func(*dv.MountResponse) error) error {
	return d.call("mount", r.Name, d.long, func(ctx context.Context, m Manager) error {
		p, err := m.Mount(ctx, r.Name, r.ID)
		if err != nil {
			return err
		}
		if derr := deliver(&dv.MountResponse{Mountpoint: p}); derr != nil {
			if uerr := m.Unmount(ctx, r.Name, r.ID); uerr != nil {
				return errors.Join(errClientGone, derr, uerr)
			}
			return errors.Join(errClientGone, derr)
		}
		return nil
	})
}
