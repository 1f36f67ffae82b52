// Package handler applies Stripe events to the platform's tables. Each event
// type has one file; registry.go maps types to handlers.
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"stripe-webhooks/pkg/store"
)

// Event is the part of a stored Stripe event every handler uses.
type Event struct {
	ID      string
	Type    string
	Created time.Time
	// Account is the connected account the event was sent for (Connect
	// events carry it at the top level); empty for platform events.
	Account string
	// Object is the raw data.object.
	Object json.RawMessage
}

// Func applies one event inside the processing transaction. An error rolls
// the transaction back and the event is retried.
type Func func(ctx context.Context, tx *store.Tx, e Event) error

// Parse reads the envelope of a stored event.
func Parse(payload []byte) (Event, error) {
	var raw struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Created int64  `json:"created"`
		Account string `json:"account"`
		Data    struct {
			Object json.RawMessage `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return Event{}, fmt.Errorf("event envelope: %w", err)
	}
	if raw.ID == "" || raw.Type == "" {
		return Event{}, errors.New("event envelope: no id or type")
	}
	return Event{
		ID:      raw.ID,
		Type:    raw.Type,
		Created: time.Unix(raw.Created, 0).UTC(),
		Account: raw.Account,
		Object:  raw.Data.Object,
	}, nil
}

// Apply is the store.ApplyFunc the worker runs for every event: it parses
// the stored payload and runs the handler registered for its type. A type
// with no handler is marked processed without effect.
func Apply(ctx context.Context, tx *store.Tx, row store.WebhookEvent) error {
	fn, ok := registry[row.EventType]
	if !ok {
		return nil
	}
	e, err := Parse(row.Payload)
	if err != nil {
		return err
	}
	return fn(ctx, tx, e)
}

// Handles reports whether eventType has a handler with an effect.
func Handles(eventType string) bool {
	_, ok := registry[eventType]
	return ok
}

// decodeObject decodes data.object into v, naming the event type on failure.
func decodeObject(e Event, v any) error {
	if len(e.Object) == 0 || string(e.Object) == "null" {
		return fmt.Errorf("%s: event has no data.object", e.Type)
	}
	if err := json.Unmarshal(e.Object, v); err != nil {
		return fmt.Errorf("%s: data.object: %w", e.Type, err)
	}
	return nil
}

// firstNonEmpty returns the first of ss that is not empty.
func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
