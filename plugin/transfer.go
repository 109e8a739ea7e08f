package plugin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/docker/go-plugins-helpers/sdk"

	"github.com/cryptvol/cryptvol/export"
	"github.com/cryptvol/cryptvol/volume"
)

// `cryptvol export` and `cryptvol import` move a whole volume through the
// plugin's socket: the export's stream is the response body, the import's
// the request body, so that neither is held in memory or in a file the
// plugin writes. Same deadline as a reencryption (it reads or writes the
// whole volume).
const (
	ExportPath = "/Cryptvol.Export"
	// ImportPath takes the stream as its body and the volume's name and
	// options in its query: name=NAME, reencrypt=true.
	ImportPath = "/Cryptvol.Import"
)

// ImportResponse is the answer to an import.
type ImportResponse = Response[volume.Imported]

// Transfer is what the transfer paths need of the manager.
type Transfer interface {
	Export(ctx context.Context, name string, w io.Writer) (export.Manifest, error)
	Import(ctx context.Context, name string, r io.Reader, reencrypt bool) (volume.Imported, error)
}

var _ Transfer = (*volume.Manager)(nil)

// countingWriter counts what reached the response, so that an error
// after the first byte aborts the stream instead of appending JSON to it.
type countingWriter struct {
	w http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.n == 0 {
		c.w.Header().Set("Content-Type", "application/octet-stream")
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// serveTransfer registers the export and import paths on h.
func (d *Driver) serveTransfer(h muxer) {
	h.HandleFunc(ExportPath, func(w http.ResponseWriter, r *http.Request) {
		var req VolumeRequest
		if err := sdk.DecodeRequest(w, r, &req); err != nil {
			return
		}
		cw := &countingWriter{w: w}
		err := d.call("export", req.Name, d.reencrypt, func(ctx context.Context, m Manager) error {
			t, ok := m.(Transfer)
			if !ok {
				return errors.New("this plugin's manager does not export volumes")
			}
			_, err := t.Export(ctx, req.Name, cw)
			return err
		})
		switch {
		case err == nil:
		case cw.n == 0:
			sdk.EncodeResponse(w, Response[struct{}]{Err: err.Error()}, true)
		default:
			// Part of the stream went out: the client must see it cut,
			// not read an error's JSON as more of it.
			panic(http.ErrAbortHandler)
		}
	})
	h.HandleFunc(ImportPath, func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		reencrypt, _ := strconv.ParseBool(r.URL.Query().Get("reencrypt"))
		var res ImportResponse
		err := d.call("import", name, d.reencrypt, func(ctx context.Context, m Manager) error {
			t, ok := m.(Transfer)
			if !ok {
				return errors.New("this plugin's manager does not import volumes")
			}
			var err error
			res.Result, err = t.Import(ctx, name, r.Body, reencrypt)
			return err
		})
		if err != nil {
			res.Err = err.Error()
		}
		sdk.EncodeResponse(w, res, err != nil)
	})
}
