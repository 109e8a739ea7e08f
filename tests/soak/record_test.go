package main

import (
	"archive/tar"
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func logOf(file string, n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(Record(i, file, "MARK"))
	}
	return b.String()
}

func TestVerifyLogAcceptsIntactLog(t *testing.T) {
	res, err := VerifyLog([]byte(logOf("w1-ab", 5)), "w1-ab", 5)
	if err != nil || res.Valid != 5 || res.Torn {
		t.Fatalf("intact log: %+v, %v", res, err)
	}
}

func TestVerifyLogAcceptsTornTailPastAcks(t *testing.T) {
	full := logOf("w1-ab", 5)
	torn := full[:len(full)-20] // record 5 cut short
	res, err := VerifyLog([]byte(torn), "w1-ab", 4)
	if err != nil || res.Valid != 4 || !res.Torn {
		t.Fatalf("torn tail past the acks: %+v, %v", res, err)
	}
}

func TestVerifyLogCatchesTornAckedRecord(t *testing.T) {
	full := logOf("w1-ab", 5)
	if _, err := VerifyLog([]byte(full[:len(full)-20]), "w1-ab", 5); err == nil {
		t.Fatal("record 5 was acknowledged and is torn: want an error")
	}
}

func TestVerifyLogCatchesCorruptedRecord(t *testing.T) {
	full := []byte(logOf("w1-ab", 5))
	// One byte of record 2's pad flipped: its checksum no longer matches.
	i := len(Record(1, "w1-ab", "MARK")) + 15
	full[i] ^= 0x20
	if _, err := VerifyLog(full, "w1-ab", 0); err == nil || !strings.Contains(err.Error(), "record 2") {
		t.Fatalf("corrupted record 2: got %v", err)
	}
}

func TestVerifyLogCatchesMissingAndReorderedRecords(t *testing.T) {
	gap := Record(1, "f", "M") + Record(3, "f", "M")
	if _, err := VerifyLog([]byte(gap), "f", 0); err == nil {
		t.Fatal("record 2 missing in the middle: want an error")
	}
	other := Record(1, "f", "M") + Record(2, "g", "M") + Record(3, "f", "M")
	if _, err := VerifyLog([]byte(other), "f", 0); err == nil {
		t.Fatal("another file's record in the middle: want an error")
	}
	zeros := Record(1, "f", "M") + strings.Repeat("\x00", 50) + "\n" + Record(2, "f", "M")
	if _, err := VerifyLog([]byte(zeros), "f", 0); err == nil {
		t.Fatal("a block of zeros in the middle: want an error")
	}
}

func TestVerifyLogCatchesLostAcknowledgedRecords(t *testing.T) {
	if _, err := VerifyLog([]byte(logOf("f", 3)), "f", 4); err == nil {
		t.Fatal("4 acknowledged, 3 there: want an error")
	}
	if _, err := VerifyLog(nil, "f", 1); err == nil {
		t.Fatal("empty log, 1 acknowledged: want an error")
	}
}

func TestRecordMatchesBusyboxMd5sum(t *testing.T) {
	// echo "1 f M abc...789" | md5sum, with this pad (computed with coreutils md5sum).
	got := Record(1, "f", "M")
	want := "1 f M " + pad + " 44aedfa96c15a8606da284b9b7a91590\n"
	if got != want {
		t.Fatalf("Record = %q, want %q", got, want)
	}
}

func TestAcksTakesHighestAndFailures(t *testing.T) {
	acked, failed := Acks("ack w1-a 1\nack w1-a 2\nnoise\nack w1-b 7\nack w1-a 3\nwritefail w1-b 8\n")
	if acked["w1-a"] != 3 || acked["w1-b"] != 7 || len(failed) != 1 {
		t.Fatalf("acks %v, failed %v", acked, failed)
	}
}

// A batch read's tar stream splits by the directory each volume was
// mounted at.
func TestUntarDirsSplitsByVolume(t *testing.T) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, data := range map[string]string{"./0/w1-0000000a": "a", "./1/cp3": "c", "./1/sub/w2-0000000b": "b"} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
		tw.Write([]byte(data))
	}
	tw.WriteHeader(&tar.Header{Name: "./1/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.Close()
	got, err := untarDirs(b.Bytes())
	want := map[string]map[string]string{"0": {"w1-0000000a": "a"}, "1": {"cp3": "c", "w2-0000000b": "b"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("untarDirs: %v, %v; want %v", got, err, want)
	}
}
