// Package stripefixture builds realistic Stripe events from Stripe's own
// example objects (see testdata/README.md) and signs them the way Stripe
// does. Tests, `make trigger` and the load generator use it.
package stripefixture

import (
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

//go:embed testdata/*.json
var files embed.FS

// DefaultAccount is the connected account of Stripe's example objects.
const DefaultAccount = "acct_1PgafTB7WZ01zgkW"

// Options shape one event. Zero values take sensible defaults.
type Options struct {
	// Type is the event type, such as account.updated. Required.
	Type string
	// ID is the event id. Default: a fresh evt_… id.
	ID string
	// Account is the connected account the event is about. Default: DefaultAccount.
	Account string
	// Created is the event's creation time. Default: now.
	Created time.Time
	// Card makes external-account events carry a card instead of a bank account.
	Card bool
	// Mutate, when set, edits the data object before it is wrapped.
	Mutate func(object map[string]any)
	// Previous, when set, is the event's data.previous_attributes. Default:
	// for *.updated events, the object's status fields negated.
	Previous map[string]any
	// APIVersion of the envelope. Default: stripe-go's pinned version.
	APIVersion string
	// Live makes a live-mode event (livemode true). Default: test mode.
	Live bool
}

// Types are the event types with a dedicated data object; any other type
// carries the example plan object.
var Types = []string{
	"account.updated",
	"capability.updated",
	"account.external_account.created",
	"account.external_account.updated",
	"account.external_account.deleted",
	"account.application.authorized",
	"account.application.deauthorized",
}

// NewEventID returns a fresh, unique-looking Stripe event id.
func NewEventID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "evt_" + hex.EncodeToString(b)
}

// Event returns the JSON of an event built from Stripe's example objects.
func Event(o Options) ([]byte, error) {
	if o.Type == "" {
		return nil, fmt.Errorf("stripefixture: no event type")
	}
	if o.ID == "" {
		o.ID = NewEventID()
	}
	if o.Account == "" {
		o.Account = DefaultAccount
	}
	if o.Created.IsZero() {
		o.Created = time.Now()
	}
	if o.APIVersion == "" {
		o.APIVersion = stripe.APIVersion
	}
	object, err := dataObject(o)
	if err != nil {
		return nil, err
	}
	if o.Mutate != nil {
		o.Mutate(object)
	}
	data := map[string]any{"object": object}
	switch {
	case o.Previous != nil:
		data["previous_attributes"] = o.Previous
	case strings.HasSuffix(o.Type, ".updated"):
		// What changed, as Stripe reports it on every *.updated event.
		data["previous_attributes"] = previousAttributes(object)
	}
	envelope := map[string]any{
		"id":               o.ID,
		"object":           "event",
		"api_version":      o.APIVersion,
		"created":          o.Created.Unix(),
		"type":             o.Type,
		"livemode":         o.Live,
		"pending_webhooks": 1,
		"request":          map[string]any{"id": nil, "idempotency_key": nil},
		"account":          o.Account,
		"data":             data,
	}
	return json.Marshal(envelope)
}

// previousAttributes is a plausible previous_attributes for an updated
// object: its status fields as they were before.
func previousAttributes(object map[string]any) map[string]any {
	prev := map[string]any{}
	for _, k := range []string{"charges_enabled", "payouts_enabled", "details_submitted", "status"} {
		switch v := object[k].(type) {
		case bool:
			prev[k] = !v
		case string:
			prev[k] = "pending"
		}
	}
	if req, ok := object["requirements"].(map[string]any); ok {
		prev["requirements"] = map[string]any{"currently_due": req["eventually_due"], "disabled_reason": nil}
	}
	return prev
}

// MustEvent is Event for tests and tools whose options are known good.
func MustEvent(o Options) []byte {
	b, err := Event(o)
	if err != nil {
		panic(err)
	}
	return b
}

func dataObject(o Options) (map[string]any, error) {
	switch {
	case o.Type == "account.updated":
		obj, err := load("account.json")
		if err != nil {
			return nil, err
		}
		obj["id"] = o.Account
		// A Connect account as Stripe sends it, with its bank account and card.
		var externals []any
		for _, name := range []string{"bank_account.json", "card.json"} {
			ext, err := load(name)
			if err != nil {
				return nil, err
			}
			ext["account"] = o.Account
			externals = append(externals, ext)
		}
		if list, ok := obj["external_accounts"].(map[string]any); ok {
			list["url"] = "/v1/accounts/" + o.Account + "/external_accounts"
			list["data"] = externals
			list["total_count"] = len(externals)
		}
		return obj, nil
	case strings.HasPrefix(o.Type, "account.application."):
		// The platform's Connect application; the account is the
		// envelope's.
		return load("application.json")
	case strings.HasPrefix(o.Type, "capability."):
		obj, err := load("capability.json")
		if err != nil {
			return nil, err
		}
		obj["account"] = o.Account
		return obj, nil
	case strings.HasPrefix(o.Type, "account.external_account."):
		name := "bank_account.json"
		if o.Card {
			name = "card.json"
		}
		obj, err := load(name)
		if err != nil {
			return nil, err
		}
		obj["account"] = o.Account
		obj["default_for_currency"] = true
		if o.Card {
			obj["currency"] = "usd"
		}
		return obj, nil
	default:
		ev, err := load("event.json")
		if err != nil {
			return nil, err
		}
		data, _ := ev["data"].(map[string]any)
		obj, _ := data["object"].(map[string]any)
		if obj == nil {
			return nil, fmt.Errorf("stripefixture: event.json has no data.object")
		}
		return obj, nil
	}
}

func load(name string) (map[string]any, error) {
	b, err := files.ReadFile("testdata/" + name)
	if err != nil {
		return nil, fmt.Errorf("stripefixture: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("stripefixture: %s: %w", name, err)
	}
	return m, nil
}

// Sign returns the Stripe-Signature header for payload signed with secret at t.
func Sign(payload []byte, secret string, t time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: secret, Timestamp: t,
	}).Header
}

// SignAll returns one header carrying a v1 signature for each secret, as
// Stripe sends during a secret roll.
func SignAll(payload []byte, secrets []string, t time.Time) string {
	parts := []string{fmt.Sprintf("t=%d", t.Unix())}
	for _, s := range secrets {
		parts = append(parts, "v1="+hex.EncodeToString(webhook.ComputeSignature(t, payload, s)))
	}
	return strings.Join(parts, ",")
}
