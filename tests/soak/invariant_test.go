package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestCompareOpen(t *testing.T) {
	if p := CompareOpen([]string{"a", "b"}, []string{"b", "a"}); len(p) != 0 {
		t.Fatalf("equal sets: %v", p)
	}
	p := CompareOpen([]string{"a", "left"}, []string{"a", "closed"})
	if len(p) != 2 || !strings.Contains(p[0], "left is open") || !strings.Contains(p[1], "closed is used") {
		t.Fatalf("one open unused, one used closed: %v", p)
	}
}

func TestCompleteVolumesAndListed(t *testing.T) {
	lvs := ParseLVs("  cv-a|cryptvol,cryptvol_fs_ext4,cryptvol_key_12,cryptvol_ready|thin\n" +
		"  cv-half|cryptvol,cryptvol_key_13|thin\n  soakpool||thin-pool\n  cv-other|foo,cryptvol_ready|linear\n")
	if len(lvs) != 4 || lvs[0].Segtype != "thin" || lvs[2].Tags != nil {
		t.Fatalf("parsed %+v", lvs)
	}
	got := CompleteVolumes(lvs)
	if !reflect.DeepEqual(got, map[string]string{"a": "12"}) {
		t.Fatalf("complete volumes %v", got)
	}
	if p := CompareListed([]string{"a"}, got); len(p) != 0 {
		t.Fatalf("equal: %v", p)
	}
	p := CompareListed([]string{"half"}, got)
	if len(p) != 2 || !strings.Contains(p[0], "lists half") || !strings.Contains(p[1], "cv-a is complete") {
		t.Fatalf("listed a half-made volume, missed a complete one: %v", p)
	}
}

func TestCompareKeys(t *testing.T) {
	missing, orphans := CompareKeys([]string{"1", "2"}, map[string]string{"a": "1", "b": "2"})
	if len(missing)+len(orphans) != 0 {
		t.Fatalf("equal: %v %v", missing, orphans)
	}
	missing, orphans = CompareKeys([]string{"1", "9"}, map[string]string{"a": "1", "b": "2", "c": ""})
	if len(missing) != 2 || len(orphans) != 1 || !strings.Contains(orphans[0], "9") {
		t.Fatalf("b's key missing, c names none, 9 orphaned: %v %v", missing, orphans)
	}
}

func TestCompareLost(t *testing.T) {
	if p := CompareLost([]string{"a", "b"}, []string{"a"}); len(p) != 1 || !strings.Contains(p[0], "volume b") {
		t.Fatalf("b lost: %v", p)
	}
}

func TestPluginPanics(t *testing.T) {
	log := `time="x" level=info msg="serving" plugin=abc
time="x" level=error msg="panic: runtime error: index out of range" plugin=abc
time="x" level=error msg="panic: not the plugin's"
`
	if p := PluginPanics(log); len(p) != 1 || !strings.Contains(p[0], "index out of range") {
		t.Fatalf("one plugin panic: %v", p)
	}
}
