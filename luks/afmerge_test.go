package luks

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// afMerge gives what LUKS's anti-forensic merge gives (cryptsetup
// lib/luks1/af.c@v2.6.1, AF_merge and diffuse): the digests below were
// taken from the merge as first written, which
// TestHostUnlockFindsCryptsetupsVolumeKey checks against cryptsetup's
// volume keys, for a 64-byte key (two whole hash blocks per diffuse) and a
// 50-byte one (the last block cut short).
func TestAFMergeKeepsItsResult(t *testing.T) {
	material := make([]byte, 64*4000)
	for i := range material {
		material[i] = byte(i*7 + i/251)
	}
	for _, c := range []struct {
		n    int
		want string
	}{
		{64, "d93b1acae617302360fb7f24fcefe9da0039149d18d580dfe065a24c2e3c56ad"},
		{50, "706fcb0cc6ba08b55eca4a4decd2558427b06aeac6b2c1b95e60081e24d094ec"},
	} {
		got := sha256.Sum256(afMerge(material[:c.n*4000], c.n, 4000))
		if h := hex.EncodeToString(got[:]); h != c.want {
			t.Errorf("afMerge of %d-byte stripes: digest %s, want %s", c.n, h, c.want)
		}
	}
}
