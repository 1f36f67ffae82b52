package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"stripe-webhooks/pkg/config"
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
	// Livemode is false for a test-mode event; an event without it counts
	// as live, as in the ingest.
	Livemode bool
	// Object is the raw data.object.
	Object json.RawMessage
	// Previous is the raw data.previous_attributes (*.updated events: the
	// values the changed fields had before); nil without one.
	Previous json.RawMessage
	// object is Object as Parse found it, so decodeObject need not parse
	// it again.
	object gjson.Result
}

// Func applies one event inside the processing transaction. An error rolls
// the transaction back and the event is retried.
type Func func(ctx context.Context, tx *store.Tx, e Event) error

// Parse reads the envelope of a stored event (valid JSON: the ingest
// checked it before storing it), without decoding data.object.
func Parse(payload []byte) (Event, error) {
	// One pass over the top level; the first of a repeated key counts, as
	// with gjson.Get.
	var id, typ, created, account, livemode, data gjson.Result
	gjson.ParseBytes(payload).ForEach(func(k, v gjson.Result) bool {
		var f *gjson.Result
		switch k.Str {
		case "id":
			f = &id
		case "type":
			f = &typ
		case "created":
			f = &created
		case "account":
			f = &account
		case "livemode":
			f = &livemode
		case "data":
			f = &data
		default:
			return true
		}
		if !f.Exists() {
			*f = v
		}
		return true
	})
	if id.Type != gjson.String || typ.Type != gjson.String || id.Str == "" || typ.Str == "" {
		return Event{}, errors.New("event envelope: no id or type")
	}
	if created.Exists() && created.Type != gjson.Number {
		return Event{}, fmt.Errorf("event envelope: created is %s, not a number", created.Type)
	}
	var object, previous gjson.Result
	if data.IsObject() {
		object, previous = data.Get("object"), data.Get("previous_attributes")
	}
	e := Event{
		ID:       id.Str,
		Type:     typ.Str,
		Created:  time.Unix(created.Int(), 0).UTC(),
		Account:  account.Str,
		Livemode: livemode.Type != gjson.False,
		Object:   rawOf(payload, object),
		object:   object,
	}
	if previous.IsObject() {
		e.Previous = rawOf(payload, previous)
	}
	return e, nil
}

// rawOf returns the JSON of v, a value found in payload: the payload's own
// bytes where gjson says where it is; nil if v does not exist.
func rawOf(payload []byte, v gjson.Result) json.RawMessage {
	if !v.Exists() {
		return nil
	}
	if at := v.Index; at > 0 && at+len(v.Raw) <= len(payload) && string(payload[at:at+len(v.Raw)]) == v.Raw {
		return json.RawMessage(payload[at : at+len(v.Raw) : at+len(v.Raw)])
	}
	return json.RawMessage(v.Raw)
}

// Apply is the store.ApplyFunc of a deployment that applies events of
// both modes (STRIPE_LIVEMODE=any): it parses the stored payload and runs
// the handler registered for its type. A type with no handler is marked
// processed without effect.
func Apply(ctx context.Context, tx *store.Tx, row store.WebhookEvent) error {
	return ApplyWith(Options{})(ctx, tx, row)
}

// ApplyIn is Apply for a deployment that applies only the events of mode:
// an event of the other mode (by the payload's own livemode) is marked
// processed without effect, as a type with no handler is.
func ApplyIn(mode config.Livemode) store.ApplyFunc {
	return ApplyWith(Options{Livemode: mode})
}

// Options are how a deployment applies events.
type Options struct {
	// Livemode: only the events of this mode are applied (the zero value:
	// both).
	Livemode config.Livemode
	// ResyncTies: STRIPE_API_KEY is set, so a same-second tie that the
	// events cannot settle requests the account's resync from Stripe's API
	// (the worker's periodic resync then settles it); without, the stored
	// state is kept. See store.Tie.
	ResyncTies bool
	// Tie, if set, is told of each same-second tie, after the commit of the
	// transaction that applied it.
	Tie func(store.Tie)
}

// ApplyWith is Apply for a deployment that applies events as o says.
func ApplyWith(o Options) store.ApplyFunc {
	return func(ctx context.Context, tx *store.Tx, row store.WebhookEvent) error {
		fn, ok := registry[row.EventType]
		if !ok {
			return nil
		}
		e, err := Parse(row.Payload)
		if err != nil {
			return err
		}
		if !o.Livemode.Applies(e.Livemode) {
			return nil
		}
		tx.SettleTies(o.ResyncTies, o.Tie)
		return fn(ctx, tx, e)
	}
}

// AccountIn is, for a deployment that applies only the events of mode, the
// store's ApplierOptions.AccountOf: the connected account an event was sent
// for (the envelope's `account`) if the event has a handler and is of that
// mode, otherwise none. Its row exists and is locked when the handler runs.
// An id the accounts table cannot hold is not named: the handler's own
// attempt to lock it then fails that event alone, not its whole group.
func AccountIn(mode config.Livemode) func(store.WebhookEvent) string {
	return func(row store.WebhookEvent) string {
		if _, ok := registry[row.EventType]; !ok {
			return ""
		}
		e, err := Parse(row.Payload)
		if err != nil || !mode.Applies(e.Livemode) || !storable(e.Account) {
			return "" // the handler will not run, or will fail on its own
		}
		return e.Account
	}
}

// storable reports whether id fits stripe_connected_accounts.stripe_account_id
// (varchar(255), valid UTF-8 with no NUL).
func storable(id string) bool {
	return utf8.RuneCountInString(id) <= 255 && utf8.ValidString(id) && !strings.ContainsRune(id, 0)
}

// Types lists the event types with a handler, in order: what reconcile
// asks Stripe's API for.
func Types() []string {
	types := slices.Collect(maps.Keys(registry))
	slices.Sort(types)
	return types
}

// Handles reports whether eventType has a handler with an effect.
func Handles(eventType string) bool {
	_, ok := registry[eventType]
	return ok
}

// decodeObject decodes data.object into v, a pointer to a struct, naming
// the event type on failure. Only the top-level fields v's json tags name
// are read out of the (large) object, in one pass, then decoded by
// encoding/json, so types stay strict: "charges_enabled": "yes" is an error.
func decodeObject(e Event, v any) error {
	if len(e.Object) == 0 || string(e.Object) == "null" {
		return fmt.Errorf("%s: event has no data.object", e.Type)
	}
	obj := e.object
	if obj.Raw != string(e.Object) {
		obj = gjson.ParseBytes(e.Object)
	}
	if !obj.IsObject() {
		return fmt.Errorf("%s: data.object is not an object", e.Type)
	}
	names := jsonNames(reflect.TypeOf(v).Elem())
	found := make([]string, len(names))
	obj.ForEach(func(k, v gjson.Result) bool {
		for i, name := range names {
			if k.Str == name && found[i] == "" {
				found[i] = v.Raw
			}
		}
		return true
	})
	buf := bytes.NewBuffer(make([]byte, 0, 1024))
	buf.WriteByte('{')
	for i, name := range names {
		if found[i] == "" {
			continue
		}
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		buf.WriteString(strconv.Quote(name))
		buf.WriteByte(':')
		buf.WriteString(found[i])
	}
	buf.WriteByte('}')
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return fmt.Errorf("%s: data.object: %w", e.Type, err)
	}
	return nil
}

var fieldNames sync.Map // reflect.Type -> []string

// jsonNames lists the json names of a struct's fields.
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
