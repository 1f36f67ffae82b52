// Command mkdict builds pkg/payload's zstd dictionary from Stripe's example
// objects (corpus.Samples) and writes it, the same bytes on every run:
//
//	go generate ./pkg/payload/   (runs: go run ./internal/mkdict -o stripe-1.dict)
//
// The dictionary's history is each sample twice, as stripefixture builds it
// (compact JSON) and then indented with two spaces, as Stripe's API and
// webhooks send JSON: deliveries in either layout find their keys in it,
// the indented ones nearest. Its entropy tables are fitted to variants of
// the samples (other ids, accounts and times, from a fixed seed).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/klauspost/compress/zstd"

	"stripe-webhooks/pkg/payload/corpus"
)

// dictID is the id the built dictionary carries; a new dictionary takes a
// new id (see pkg/payload's doc).
const dictID = 1

// level is the encoder level the dictionary is tailored to: payload.Level
// (a test checks they agree).
const level = zstd.SpeedFastest

// variants is how many events the entropy tables are fitted to.
const variants = 220

func main() {
	out := flag.String("o", "stripe-1.dict", "file to write")
	flag.Parse()
	d, err := build()
	if err == nil {
		err = os.WriteFile(*out, d, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdict:", err)
		os.Exit(1)
	}
}

// build returns the dictionary.
func build() ([]byte, error) {
	samples, err := corpus.Samples()
	if err != nil {
		return nil, err
	}
	var compact, indented []byte
	for _, s := range samples {
		compact = append(compact, s...)
		if indented, err = appendIndented(indented, s); err != nil {
			return nil, err
		}
	}
	contents, err := corpus.Variants(variants, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		return nil, err
	}
	for _, c := range contents[:variants] {
		ind, err := appendIndented(nil, c)
		if err != nil {
			return nil, err
		}
		contents = append(contents, ind)
	}
	return zstd.BuildDict(zstd.BuildDictOptions{
		ID:       dictID,
		History:  append(compact, indented...),
		Contents: contents,
		Offsets:  [3]int{1, 4, 8}, // zstd's initial repeat offsets
		Level:    level,
	})
}

// appendIndented appends doc indented with two spaces, as Stripe sends it.
func appendIndented(dst, doc []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Indent(&b, doc, "", "  "); err != nil {
		return nil, err
	}
	return append(dst, b.Bytes()...), nil
}
