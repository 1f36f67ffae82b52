package handler

import (
	"context"
	"fmt"

	"stripe-webhooks/pkg/store"
)

// capabilityUpdated sets one capability's status on the account's row,
// creating the row if the account is new.
func capabilityUpdated(ctx context.Context, tx *store.Tx, e Event) error {
	var c struct {
		ID      string `json:"id"` // the capability's name, such as card_payments
		Account string `json:"account"`
		Status  string `json:"status"`
	}
	if err := decodeObject(e, &c); err != nil {
		return err
	}
	account := firstNonEmpty(c.Account, e.Account)
	if c.ID == "" || c.Status == "" || account == "" {
		return fmt.Errorf("%s: capability object lacks id, status or account", e.Type)
	}
	return tx.ApplyCapability(ctx, store.CapabilityUpdate{AccountID: account, Capability: c.ID, Status: c.Status,
		Previous: store.JSON(e.Previous), EventCreated: e.Created})
}
