package main

import (
	"fmt"
	"io"
	"reflect"
	"testing"
)

func TestOpLogKeepsTheLastLinesInOrder(t *testing.T) {
	l := NewOpLog(io.Discard, 3)
	for i := 1; i <= 5; i++ {
		l.Printf("op %d", i)
	}
	if got := l.Last(); !reflect.DeepEqual(got, []string{"    0s op 3", "    0s op 4", "    0s op 5"}) {
		t.Fatalf("last 3 of 5: %v", got)
	}
	l = NewOpLog(io.Discard, 3)
	l.Printf("only")
	if got := l.Last(); !reflect.DeepEqual(got, []string{"    0s only"}) {
		t.Fatalf("fewer than kept: %v", got)
	}
}

func TestOpLogCounts(t *testing.T) {
	l := NewOpLog(io.Discard, 1)
	for i := range 3 {
		l.Count(fmt.Sprintf("k%d", i%2))
	}
	if got := l.Counts(); !reflect.DeepEqual(got, []string{"k0: 2", "k1: 1"}) {
		t.Fatalf("counts %v", got)
	}
}
