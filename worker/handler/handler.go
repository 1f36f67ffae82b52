// Package handler applies Stripe events to the platform's tables. Each event
// type has one file; registry.go maps types to handlers.
package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

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

// Parse reads the envelope of a stored event (valid JSON: Postgres stored
// it as jsonb), without decoding data.object.
func Parse(payload []byte) (Event, error) {
	f := gjson.GetManyBytes(payload, "id", "type", "created", "account", "data.object")
	if f[0].Type != gjson.String || f[1].Type != gjson.String || f[0].Str == "" || f[1].Str == "" {
		return Event{}, errors.New("event envelope: no id or type")
	}
	if f[2].Exists() && f[2].Type != gjson.Number {
		return Event{}, fmt.Errorf("event envelope: created is %s, not a number", f[2].Type)
	}
	return Event{
		ID:      f[0].Str,
		Type:    f[1].Str,
		Created: time.Unix(f[2].Int(), 0).UTC(),
		Account: f[3].Str,
		Object:  json.RawMessage(f[4].Raw),
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

// decodeObject decodes data.object into v, a pointer to a struct, naming
// the event type on failure. Only the top-level fields v's json tags name
// are read out of the (large) object, then decoded by encoding/json, so
// types stay strict: "charges_enabled": "yes" is an error.
func decodeObject(e Event, v any) error {
	if len(e.Object) == 0 || string(e.Object) == "null" {
		return fmt.Errorf("%s: event has no data.object", e.Type)
	}
	if !gjson.ParseBytes(e.Object).IsObject() {
		return fmt.Errorf("%s: data.object is not an object", e.Type)
	}
	names := jsonNames(reflect.TypeOf(v).Elem())
	found := gjson.GetManyBytes(e.Object, names...)
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, name := range names {
		if !found[i].Exists() {
			continue
		}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.WriteString(strconv.Quote(name))
		buf.WriteByte(':')
		buf.WriteString(found[i].Raw)
	}
	buf.WriteByte('}')
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return fmt.Errorf("%s: data.object: %w", e.Type, err)
	}
	return nil
}

var fieldNames sync.Map // reflect.Type -> []string

// jsonNames lists the json names of a struct's fields (gjson path syntax
// escaped).
func jsonNames(t reflect.Type) []string {
	if names, ok := fieldNames.Load(t); ok {
		return names.([]string)
	}
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			name = t.Field(i).Name
		}
		names = append(names, name)
	}
	fieldNames.Store(t, names)
	return names
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
