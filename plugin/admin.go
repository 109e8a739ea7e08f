package plugin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/docker/go-plugins-helpers/sdk"

	"github.com/cryptvol/cryptvol/volume"
)

// The administrators' requests (issue 13): `cryptvol rotate` reaches the
// plugin on its own socket, beside Docker's VolumeDriver paths, for work
// that touches a volume's device and must be serialized with Docker's
// requests by the same volume locks. Same framing as Docker's: POST a JSON
// body, get JSON back with "Err" set on failure.

// Paths of the administrators' requests; each takes a VolumeRequest.
const (
	RotatePath    = "/Cryptvol.Rotate"
	ReencryptPath = "/Cryptvol.Reencrypt"
)

// DefaultReencryptTimeout bounds a reencryption, which rewrites the whole
// volume: at its end cryptsetup gets SIGTERM, stops at a safe point, and a
// later reencryption resumes.
const DefaultReencryptTimeout = 6 * time.Hour

// VolumeRequest names the volume to work on.
type VolumeRequest struct {
	Name string
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
)

// Admin is what the admin requests need of the manager.
type Admin interface {
	Rotate(ctx context.Context, name string) (volume.Rotation, error)
	Reencrypt(ctx context.Context, name string) (volume.Reencryption, error)
}

var _ Admin = (*volume.Manager)(nil)

type muxer interface {
	HandleFunc(string, func(http.ResponseWriter, *http.Request))
}

// serveAdmin registers the admin paths on h.
func (d *Driver) serveAdmin(h muxer) {
	handle(d, h, RotatePath, "rotate", d.long, Admin.Rotate)
	handle(d, h, ReencryptPath, "reencrypt", d.reencrypt, Admin.Reencrypt)
}

// handle serves one admin path: decode the volume's name, run do through
// the driver's call (deadline, start-up wait, panics, logging), answer.
func handle[T any](d *Driver, h muxer, path, op string, timeout time.Duration, do func(Admin, context.Context, string) (T, error)) {
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
			res.Result, err = do(a, ctx, req.Name)
			return err
		})
		if err != nil {
			res.Err = err.Error()
		}
		sdk.EncodeResponse(w, res, err != nil)
	})
}
