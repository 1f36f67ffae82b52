package handler

import (
	"context"
	"fmt"

	"stripe-webhooks/pkg/store"
)

// externalAccountChanged keeps a bank account or card current
// (account.external_account.created and .updated).
func externalAccountChanged(ctx context.Context, tx *store.Tx, e Event) error {
	u, err := externalAccount(e)
	if err != nil {
		return err
	}
	return tx.ApplyExternalAccount(ctx, u)
}

// externalAccount reads the fields kept of a bank account or card: never a
// full number, only the last four digits.
func externalAccount(e Event) (store.ExternalAccountUpdate, error) {
	var o struct {
		ID                 string `json:"id"`
		Object             string `json:"object"`
		Account            string `json:"account"`
		Last4              string `json:"last4"`
		BankName           string `json:"bank_name"`
		Brand              string `json:"brand"`
		Currency           string `json:"currency"`
		Status             string `json:"status"`
		DefaultForCurrency bool   `json:"default_for_currency"`
	}
	if err := decodeObject(e, &o); err != nil {
		return store.ExternalAccountUpdate{}, err
	}
	account := firstNonEmpty(o.Account, e.Account)
	if o.ID == "" || account == "" {
		return store.ExternalAccountUpdate{}, fmt.Errorf("%s: external account lacks id or account", e.Type)
	}
	if o.Object != "bank_account" && o.Object != "card" {
		return store.ExternalAccountUpdate{}, fmt.Errorf("%s: external account object %q is neither bank_account nor card", e.Type, o.Object)
	}
	if len(o.Last4) > 4 {
		o.Last4 = o.Last4[len(o.Last4)-4:]
	}
	return store.ExternalAccountUpdate{
		ID:                 o.ID,
		AccountID:          account,
		Object:             o.Object,
		Last4:              o.Last4,
		BankName:           o.BankName,
		Brand:              o.Brand,
		Currency:           o.Currency,
		Status:             o.Status,
		DefaultForCurrency: o.DefaultForCurrency,
		Previous:           store.JSON(e.Previous),
		EventCreated:       e.Created,
	}, nil
}
