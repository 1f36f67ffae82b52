// Package corpus builds the Stripe events the payload format is trained and
// measured on: the samples its dictionary is built from (Stripe's example
// objects in event envelopes, see pkg/stripefixture) and a varied copy of
// any event, whose values the dictionary cannot know.
package corpus

import (
	"fmt"
	"math/rand/v2"
	"time"

	"stripe-webhooks/pkg/stripefixture"
)

// sampleCreated is the fixed creation time of every sample.
var sampleCreated = time.Date(2024, 7, 26, 0, 0, 0, 0, time.UTC)

// sample is one event of Samples.
type sample struct {
	typ  string
	card bool
}

// samples are the event types of Samples, the most common last: a
// dictionary's last bytes are the cheapest to refer to. Any type without a
// dedicated object carries the plan of Stripe's example event.
var samples = []sample{
	{typ: "plan.created"},
	{typ: "plan.updated"},
	{typ: "account.application.authorized"},
	{typ: "account.application.deauthorized"},
	{typ: "account.external_account.deleted"},
	{typ: "account.external_account.created", card: true},
	{typ: "account.external_account.updated", card: true},
	{typ: "account.external_account.created"},
	{typ: "account.external_account.updated"},
	{typ: "capability.updated"},
	{typ: "account.updated"},
}

// Samples returns one event of each type the worker handles, external
// account events with a bank account and with a card, and two plan events
// standing for the other types: the same bytes on every call (fixed ids,
// account and time). Each is what stripefixture.Event builds, compact JSON.
func Samples() ([][]byte, error) {
	out := make([][]byte, 0, len(samples))
	for i, s := range samples {
		b, err := stripefixture.Event(stripefixture.Options{
			Type:    s.typ,
			Card:    s.card,
			ID:      fmt.Sprintf("evt_1PgcSampleB7WZ01zgkW%04d", i),
			Created: sampleCreated,
		})
		if err != nil {
			return nil, fmt.Errorf("corpus: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// Variants returns n events of the sample types as deliveries would differ
// from the samples: other event ids, accounts and times, drawn from rng.
func Variants(n int, rng *rand.Rand) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for i := range n {
		s := samples[i%len(samples)]
		b, err := stripefixture.Event(stripefixture.Options{
			Type:    s.typ,
			Card:    s.card,
			ID:      "evt_" + randomText(rng, 24),
			Account: "acct_" + randomText(rng, 16),
			Created: sampleCreated.Add(time.Duration(rng.IntN(1e6)) * time.Second),
		})
		if err != nil {
			return nil, fmt.Errorf("corpus: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}
