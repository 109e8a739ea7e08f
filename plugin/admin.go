package plugin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/docker/go-plugins-helpers/sdk"

	"github.com/cryptvol/cryptvol/volume"
)

// The administrators' requests: `cryptvol rotate` reaches the plugin on its
// own socket, beside Docker's VolumeDriver paths, for work that touches a
// volume's device and must be serialized with Docker's requests by the same
// volume locks. Same framing as Docker's: POST a JSON body, get JSON back
// with "Err" set on failure.

// Paths of the administrators' requests; each takes a VolumeRequest.
const (
	RotatePath    = "/Cryptvol.Rotate"
	ReencryptPath = "/Cryptvol.Reencrypt"
	ResizePath    = "/Cryptvol.Resize"
	TrashPath     = "/Cryptvol.Trash"
	RestorePath   = "/Cryptvol.Restore"
)

// DefaultReencryptTimeout bounds a reencryption, which rewrites the whole
// volume: at its end cryptsetup gets SIGTERM, stops at a safe point, and a
// later reencryption resumes.
const DefaultReencryptTimeout = 6 * time.Hour

// VolumeRequest names the volume to work on (and, for a resize, its new
// size, as --opt size takes it; for a restore, Name is the trash id or
// volume name and As the name to restore it under, "" for its own).
type VolumeRequest struct {
	Name string
	Size string `json:",omitempty"`
	As   string `json:",omitempty"`
}

// Response is the result of an admin request, or Err.
type Response[T any] struct {
	Result T      `json:",omitempty"`
	Err    string `json:",omitempty"`
}

// The responses of the admin paths.
type (
	RotateResponse    = Response[volume.Rotation]
	ReencryptResponse = Response[volume.Reencryption]
	ResizeResponse    = Response[volume.Resized]
	TrashResponse     = Response[[]volume.Trashed]
	RestoreResponse   = Response[volume.Restored]
)

// Admin is what the admin requests need of the manager.
type Admin interface {
	Rotate(ctx context.Context, name string) (volume.Rotation, error)
	Reencrypt(ctx context.Context, name string) (volume.Reencryption, error)
	Resize(ctx context.Context, name, size string) (volume.Resized, error)
	Trash(ctx context.Context) ([]volume.Trashed, error)
	Restore(ctx context.Context, what, as string) (volume.Restored, error)
}

var _ Admin = (*volume.Manager)(nil)

type muxer interface {
	HandleFunc(string, func(http.ResponseWriter, *http.Request))
}

// serveAdmin registers the admin paths on h.
func (d *Driver) serveAdmin(h muxer) {
	handle(d, h, RotatePath, "rotate", d.long, func(a Admin, ctx context.Context, r VolumeRequest) (volume.Rotation, error) {
		return a.Rotate(ctx, r.Name)
	})
	handle(d, h, ReencryptPath, "reencrypt", d.reencrypt, func(a Admin, ctx context.Context, r VolumeRequest) (volume.Reencryption, error) {
		return a.Reencrypt(ctx, r.Name)
	})
	handle(d, h, ResizePath, "resize", d.long, func(a Admin, ctx context.Context, r VolumeRequest) (volume.Resized, error) {
		return a.Resize(ctx, r.Name, r.Size)
	})
	handle(d, h, TrashPath, "trash", d.long, func(a Admin, ctx context.Context, r VolumeRequest) ([]volume.Trashed, error) {
		return a.Trash(ctx)
	})
	handle(d, h, RestorePath, "restore", d.long, func(a Admin, ctx context.Context, r VolumeRequest) (volume.Restored, error) {
		return a.Restore(ctx, r.Name, r.As)
	})
}

// handle serves one admin path: decode the volume's name, run do through
// the driver's call (deadline, start-up wait, panics, logging), answer.
func handle[T any](d *Driver, h muxer, path, op string, timeout time.Duration, do func(Admin, context.Context, VolumeRequest) (T, error)) {
	h.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		var req VolumeRequest
		if err := sdk.DecodeRequest(w, r, &req); err != nil {
			return
		}
		var res Response[T]
		err := d.call(op, req.Name, timeout, func(ctx context.Context, m Manager) error {
			a, ok := m.(Admin)
			if !ok {
				return errors.New("this plugin's manager takes no administrators' requests")
			}
			var err error
			res.Result, err = do(a, ctx, req)
			return err
		})
		if err != nil {
			res.Err = err.Error()
		}
		sdk.EncodeResponse(w, res, err != nil)
	})
}
