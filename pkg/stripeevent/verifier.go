// Package stripeevent verifies Stripe webhook deliveries.
package stripeevent

import (
	"bytes"
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
	"github.com/tidwall/gjson"
)

// Event is what the ingest needs of a verified delivery: its identity. The
// body itself is stored as delivered.
type Event struct {
	ID   string
	Type string
	// Livemode is the event's livemode: false for test mode. An event
	// without it counts as live.
	Livemode bool
	// Created is the event's Stripe `created`, the zero time when it has
	// none.
	Created time.Time
}

// Reason says why a delivery was rejected; it is safe to show the sender and
// to use as a metric label.
type Reason string

// The reasons a delivery fails verification.
const (
	NoSignature  Reason = "no_signature"
	BadSignature Reason = "bad_signature"
	TooOld       Reason = "too_old"
	NotAnEvent   Reason = "not_an_event"
)

// RejectError is a delivery that failed verification.
type RejectError struct {
	Reason Reason
	// Message is a short human explanation, without secrets or payload.
	Message string
}

func (e *RejectError) Error() string { return e.Message }

// Verifier checks deliveries against every configured endpoint secret, so
// that a secret roll (old and new secret both configured, or Stripe sending
// two v1 signatures) drops nothing. Its secrets may be replaced while it
// verifies: each Verify sees one whole list, the old or the new.
type Verifier struct {
	// secrets points to a list never modified after it is stored.
	secrets atomic.Pointer[[]string]
}

// NewVerifier returns a verifier for the given endpoint secrets. It keeps
// a copy of the list. With no secrets it refuses every delivery.
func NewVerifier(secrets []string) *Verifier {
	v := &Verifier{}
	list := slices.Clone(secrets)
	v.secrets.Store(&list)
	return v
}

// ErrNoSecrets is SetSecrets' answer to a list without secrets.
var ErrNoSecrets = errors.New("stripeevent: no endpoint secrets")

// ErrEmptySecret is SetSecrets' answer to a list with an empty element.
var ErrEmptySecret = errors.New("stripeevent: an endpoint secret is empty")

// SetSecrets replaces the endpoint secrets for the deliveries verified from
// now on; a Verify already running finishes with the list it started with.
// It keeps a copy of the list. An empty list, or one with an empty element,
// is refused and the current secrets stay.
func (v *Verifier) SetSecrets(secrets []string) error {
	if len(secrets) == 0 {
		return ErrNoSecrets
	}
	if slices.Contains(secrets, "") {
		return ErrEmptySecret
	}
	list := slices.Clone(secrets)
	v.secrets.Store(&list)
	return nil
}

// Verify checks the Stripe-Signature header against the exact raw payload
// with stripe-go (each v1 signature against each secret, Stripe's 300 s
// tolerance), then reads the event's id and type. The api_version does not
// matter: an event of another version than stripe-go's pinned one is
// accepted, and only its envelope is read here (stripe-go's own
// ConstructEvent would refuse it, and would decode the whole object into
// maps, which the ingest never uses). Failures are *RejectError.
func (v *Verifier) Verify(payload []byte, header string) (Event, error) {
	if header == "" {
		return Event{}, &RejectError{NoSignature, "missing Stripe-Signature header"}
	}
	// Without any secret nothing matches: start from that answer.
	firstErr := webhook.ErrNoValidSignature
	for _, secret := range *v.secrets.Load() {
		err := webhook.ValidatePayloadWithTolerance(payload, header, secret, webhook.DefaultTolerance)
		if err == nil {
			firstErr = nil
			break
		}
		if firstErr == nil || errors.Is(firstErr, webhook.ErrNoValidSignature) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return Event{}, classify(firstErr)
	}
	// Validate the whole document, then read four top-level fields without
	// decoding the rest.
	if !gjson.ValidBytes(payload) {
		return Event{}, &RejectError{NotAnEvent, "signed body is not a Stripe event: it is not valid JSON"}
	}
	f := gjson.GetManyBytes(payload, "id", "type", "livemode", "created")
	if !isObject(payload) || f[0].Type != gjson.String || f[1].Type != gjson.String {
		return Event{}, &RejectError{NotAnEvent, "signed body is not a Stripe event: it lacks an id or a type"}
	}
	ev := Event{ID: f[0].String(), Type: f[1].String(), Livemode: f[2].Type != gjson.False}
	if f[3].Type == gjson.Number {
		ev.Created = time.Unix(f[3].Int(), 0)
	}
	if ev.ID == "" || ev.Type == "" {
		return Event{}, &RejectError{NotAnEvent, "signed body is not a Stripe event: it lacks an id or a type"}
	}
	return ev, nil
}

// isObject reports whether a valid JSON document is an object (without
// gjson.ParseBytes, which copies it into a string).
func isObject(doc []byte) bool {
	trimmed := bytes.TrimLeft(doc, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{'
}

func classify(err error) error {
	switch {
	case errors.Is(err, webhook.ErrNotSigned):
		return &RejectError{NoSignature, "Stripe-Signature header has no t= or v1= part"}
	case errors.Is(err, webhook.ErrInvalidHeader):
		return &RejectError{BadSignature, "Stripe-Signature header is malformed"}
	case errors.Is(err, webhook.ErrNoValidSignature):
		return &RejectError{BadSignature, "no signature matches any configured endpoint secret"}
	case errors.Is(err, webhook.ErrTooOld):
		return &RejectError{TooOld, "signature timestamp is outside the 300 s tolerance"}
	default:
		return &RejectError{BadSignature, "signature could not be checked"}
	}
}
