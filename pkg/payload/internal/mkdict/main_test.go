package main

import (
	"bytes"
	"os"
	"testing"

	"stripe-webhooks/pkg/payload"
)

func TestCommittedDictionaryIsWhatMkdictBuilds(t *testing.T) {
	t.Parallel()
	committed, err := os.ReadFile("../../stripe-1.dict")
	if err != nil {
		t.Fatal(err)
	}
	built, err := build()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, committed) {
		t.Fatalf("stripe-1.dict (%d bytes) is not what mkdict builds (%d bytes): run go generate ./pkg/payload/ if the samples changed on purpose, else restore it", len(committed), len(built))
	}
}

func TestDictionaryIsTailoredToPayloadLevel(t *testing.T) {
	t.Parallel()
	if level != payload.Level {
		t.Fatalf("mkdict builds for level %v, payload encodes at %v", level, payload.Level)
	}
	if dictID != payload.DictionaryID() {
		t.Fatalf("mkdict builds dictionary %d, payload encodes with %d", dictID, payload.DictionaryID())
	}
}
