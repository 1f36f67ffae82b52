package handler

import (
	"context"
	"encoding/json"
	"fmt"

	"stripe-webhooks/pkg/store"
)

// accountObject is what is kept of a Stripe account object, in an
// account.updated event or from the API (resync).
type accountObject struct {
	ID               string            `json:"id"`
	ChargesEnabled   bool              `json:"charges_enabled"`
	PayoutsEnabled   bool              `json:"payouts_enabled"`
	DetailsSubmitted bool              `json:"details_submitted"`
	Requirements     json.RawMessage   `json:"requirements"`
	Capabilities     map[string]string `json:"capabilities"`
}

// accountUpdated upserts the account's row from the event's account object,
// its capabilities map included.
func accountUpdated(ctx context.Context, tx *store.Tx, e Event) error {
	var a accountObject
	if err := decodeObject(e, &a); err != nil {
		return err
	}
	if a.ID == "" {
		return fmt.Errorf("%s: account object has no id", e.Type)
	}
	var requirements store.JSON
	if len(a.Requirements) > 0 && string(a.Requirements) != "null" {
		requirements = store.JSON(a.Requirements)
	}
	return tx.ApplyAccount(ctx, store.AccountUpdate{
		AccountID:        a.ID,
		ChargesEnabled:   a.ChargesEnabled,
		PayoutsEnabled:   a.PayoutsEnabled,
		DetailsSubmitted: a.DetailsSubmitted,
		Requirements:     requirements,
		Capabilities:     a.Capabilities,
		Previous:         store.JSON(e.Previous),
		EventCreated:     e.Created,
	})
}
