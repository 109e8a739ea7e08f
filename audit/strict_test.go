package audit

import (
	"os"
	"strings"
	"testing"
)

// A line must be exactly what the plugin writes: a field added (the
// review's `"actor":"mallory",`), written twice or in another letter case
// decodes to the same record with the same hash, and is still reported,
// naming the line.
func TestVerifyRefusesLinesNotInCanonicalForm(t *testing.T) {
	for _, tc := range []struct{ name, from, to string }{
		{"added field", `"op":`, `"actor":"mallory","op":`},
		{"duplicate field", `"op":"volume.create",`, `"op":"volume.create","op":"volume.create",`},
		{"case variant", `"op":`, `"Op":`},
		{"reordered fields", `"seq":2,"time":`, `"time":`},
		{"space", `"op":`, `"op": `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := trail(t, 3, Options{})
			ls := lines(t, p)
			edited := strings.Replace(ls[1], tc.from, tc.to, 1)
			if tc.name == "reordered fields" {
				// seq moved to the end of the object.
				edited = strings.Replace(edited, `}`+"\n", `,"seq":2}`+"\n", 1)
			}
			if edited == ls[1] {
				t.Fatalf("the edit %q -> %q changed nothing in %s", tc.from, tc.to, ls[1])
			}
			ls[1] = edited
			if err := os.WriteFile(p, []byte(strings.Join(ls, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			rep := verify(t, p)
			if len(rep.Problems) != 1 || rep.Problems[0].Line != 2 || rep.Problems[0].File != p ||
				!strings.Contains(rep.Problems[0].What, "record 2 is not written as the plugin writes it") {
				t.Fatalf("problems %+v; want one at %s:2 saying record 2 is not written as the plugin writes it", rep.Problems, p)
			}
		})
	}
}
