package handler

import (
	"fmt"
	"time"

	"stripe-webhooks/pkg/store"
)

// AccountSnapshotOf reads an account object, as Stripe's API returns it,
// into a snapshot taken at takenAt, with the fields account.updated keeps.
// Its external accounts are added by the caller.
func AccountSnapshotOf(object []byte, takenAt time.Time) (store.AccountSnapshot, error) {
	var a accountObject
	if err := decodeObject(Event{Type: "account", Object: object}, &a); err != nil {
		return store.AccountSnapshot{}, err
	}
	if a.ID == "" || a.Capabilities == nil {
		return store.AccountSnapshot{}, fmt.Errorf("account object lacks id or capabilities")
	}
	snap := store.AccountSnapshot{AccountID: a.ID, TakenAt: takenAt, ChargesEnabled: a.ChargesEnabled,
		PayoutsEnabled: a.PayoutsEnabled, DetailsSubmitted: a.DetailsSubmitted, Capabilities: a.Capabilities}
	if len(a.Requirements) > 0 && string(a.Requirements) != "null" {
		snap.Requirements = store.JSON(a.Requirements)
	}
	return snap, nil
}

// ExternalAccountOf reads a bank account or card object of account, as
// Stripe's API returns it, with the fields the handlers keep (the last four
// digits only).
func ExternalAccountOf(object []byte, account string) (store.ExternalAccountUpdate, error) {
	return externalAccount(Event{Type: "external account", Account: account, Object: object})
}
