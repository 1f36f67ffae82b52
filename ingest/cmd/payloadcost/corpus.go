package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"stripe-webhooks/ingest/loadgen"
	"stripe-webhooks/pkg/payload/corpus"
	"stripe-webhooks/pkg/stripefixture"
)

// collection is one corpus: deliveries, each a raw body.
type collection struct {
	name   string
	events [][]byte
}

// buildCorpora returns the three corpora, n deliveries each, from fixed
// seeds: the bench's, the same varied, and the varied ones indented.
func buildCorpora(n, accounts int) ([]collection, error) {
	bench, err := benchDeliveries(n, accounts, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(2, 2))
	varied := make([][]byte, n)
	indented := make([][]byte, n)
	for i, b := range bench {
		if varied[i], err = corpus.Vary(b, rng); err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, varied[i], "", "  "); err != nil {
			return nil, err
		}
		indented[i] = buf.Bytes()
	}
	return []collection{
		{name: "bench", events: bench},
		{name: "varied", events: varied},
		{name: "varied, indented", events: indented},
	}, nil
}

// benchDeliveries returns n account.updated deliveries as ingest/loadgen
// sends them in the bench's storage measure: one event per connected
// account (loadgen.AccountID), created when the run starts, each delivery
// of an account drawn at random and given an id of loadgen's form.
func benchDeliveries(n, accounts int, rng *rand.Rand) ([][]byte, error) {
	const placeholder = "evt_LOADGENxxxxxxxxxxxxxxxxxxxx" // loadgen's id length
	created := time.Now()
	templates := make([][]byte, accounts)
	for i := range templates {
		b, err := stripefixture.Event(stripefixture.Options{Type: "account.updated", ID: placeholder,
			Account: loadgen.AccountID(i), Created: created})
		if err != nil {
			return nil, err
		}
		templates[i] = b
	}
	out := make([][]byte, n)
	for i := range out {
		id := fmt.Sprintf("evt_lg%02d%0*d", i%16, len(placeholder)-8, rng.Uint64()%1e18)
		out[i] = bytes.Replace(templates[rng.IntN(accounts)], []byte(placeholder), []byte(id), 1)
	}
	return out, nil
}
