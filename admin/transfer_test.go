package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cryptvol/cryptvol/export"
	"github.com/cryptvol/cryptvol/volume"
)

// transferVolumes exports "db" as a valid stream, "cut" as one the plugin
// stops half-way, and refuses anything else; Import reads the whole
// stream and checks it.
type transferVolumes struct {
	fakeVolumes
	imported []string
}

func testExport(w io.Writer, cut bool) (export.Manifest, error) {
	m := export.Manifest{Format: export.Format, Volume: "db", SizeBytes: 1 << 20, BlockSize: 65536, FS: "ext4", Cipher: "aes-xts-plain64",
		KeyID: "7", KeyName: "cryptvol/u/db/0123456789abcdef", VGUUID: "u", Created: time.Unix(0, 0).UTC(), Writer: "test"}
	ew, err := export.NewWriter(w, m)
	if err != nil {
		return m, err
	}
	for off := uint64(0); off < m.SizeBytes; off += 65536 {
		if cut && off == 8*65536 {
			return m, errors.New("reading its LV: input/output error")
		}
		if err := ew.Block(off, bytes.Repeat([]byte{byte(off >> 16)}, 65536)); err != nil {
			return m, err
		}
	}
	return m, ew.Close()
}

func (f *transferVolumes) Export(_ context.Context, name string, w io.Writer) (export.Manifest, error) {
	switch name {
	case "db", "cut":
		return testExport(w, name == "cut")
	}
	return export.Manifest{}, errors.New(`volume "` + name + `": no such volume`)
}

func (f *transferVolumes) Import(_ context.Context, name string, r io.Reader, reencrypt bool) (volume.Imported, error) {
	rd, err := export.NewReader(r)
	for err == nil {
		_, _, err = rd.Next()
	}
	if !errors.Is(err, io.EOF) {
		return volume.Imported{}, err
	}
	f.imported = append(f.imported, name)
	m := rd.Manifest()
	return volume.Imported{Volume: name, From: m.Volume, OldKeyID: m.KeyID, NewKeyID: "9", SizeBytes: m.SizeBytes, Reencrypted: reencrypt}, nil
}

// export writes a checked stream to a new file, and leaves no file when the
// plugin refuses or cuts the stream; import sends a file and reports the
// new volume, and a damaged file is refused.
func TestExportAndImportThroughThePluginSocket(t *testing.T) {
	f := &transferVolumes{fakeVolumes: fakeVolumes{keys: map[string]string{}}}
	dir := t.TempDir()
	env := map[string]string{"CRYPTVOL_SOCKET": servePlugin(t, f, dir)}

	out := filepath.Join(dir, "db.export")
	code, _, errOut := runCmd(env, "export", "-o", out, "db")
	if code != ExitOK || !strings.Contains(errOut, "db: exported, ") || !strings.Contains(errOut, "KMIP key 7") {
		t.Fatalf("export db: exit %d, %s", code, errOut)
	}
	var want bytes.Buffer
	testExport(&want, false)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the file holds %d bytes, not the plugin's %d-byte export", len(got), want.Len())
	}
	if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
		t.Errorf("the export file has mode %v, want 0600", st.Mode().Perm())
	}
	if code, _, errOut := runCmd(env, "export", "-o", out, "db"); code != ExitFailed || !strings.Contains(errOut, "exists") {
		t.Errorf("export onto an existing file: exit %d, %s", code, errOut)
	}
	for _, v := range []string{"cut", "zz"} {
		p := filepath.Join(dir, v+".export")
		code, _, errOut := runCmd(env, "export", "-o", p, v)
		if _, err := os.Stat(p); code != ExitFailed || err == nil {
			t.Errorf("export %s: exit %d, file left %v: %s", v, code, err == nil, errOut)
		}
	}

	code, stdout, errOut := runCmd(env, "import", "--reencrypt", out, "db2")
	if code != ExitOK || !strings.Contains(stdout, "db2: imported from db's export (1 MiB), re-encrypted under a new volume key; KMIP key 9 of its own (db's key 7 untouched)") {
		t.Fatalf("import: exit %d, %s%s", code, stdout, errOut)
	}
	b, _ := os.ReadFile(out)
	b[len(b)/2] ^= 1
	bad := filepath.Join(dir, "bad.export")
	os.WriteFile(bad, b, 0o600)
	if code, _, errOut := runCmd(env, "import", bad, "db3"); code != ExitFailed || !strings.Contains(errOut, "checksum") {
		t.Errorf("import of a damaged file: exit %d, %s", code, errOut)
	}
	if strings.Join(f.imported, ",") != "db2" {
		t.Errorf("imported %v", f.imported)
	}
}
