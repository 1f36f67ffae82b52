// Package stripeevent verifies Stripe webhook deliveries.
package stripeevent

import (
	"errors"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

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
// two v1 signatures) drops nothing.
type Verifier struct {
	secrets []string
}

// NewVerifier returns a verifier for the given endpoint secrets.
func NewVerifier(secrets []string) *Verifier {
	return &Verifier{secrets: secrets}
}

// Verify checks the Stripe-Signature header against the exact raw payload
// (Stripe's 300 s tolerance) and parses the event. An event of another
// api_version than stripe-go's pinned one is accepted. Failures are *RejectError.
func (v *Verifier) Verify(payload []byte, header string) (stripe.Event, error) {
	if header == "" {
		return stripe.Event{}, &RejectError{NoSignature, "missing Stripe-Signature header"}
	}
	var firstErr error
	for _, secret := range v.secrets {
		ev, err := webhook.ConstructEventWithOptions(payload, header, secret, webhook.ConstructEventOptions{
			IgnoreAPIVersionMismatch: true,
		})
		if err == nil {
			if ev.ID == "" || ev.Type == "" {
				return stripe.Event{}, &RejectError{NotAnEvent, "signed body is not a Stripe event: it lacks an id or a type"}
			}
			return ev, nil
		}
		if firstErr == nil || errors.Is(firstErr, webhook.ErrNoValidSignature) {
			firstErr = err
		}
	}
	return stripe.Event{}, classify(firstErr)
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
		// The signature matched but the body is not JSON of an event.
		return &RejectError{NotAnEvent, "signed body is not a Stripe event: it is not valid event JSON"}
	}
}
