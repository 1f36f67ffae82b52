package handler

import (
	"context"

	"stripe-webhooks/pkg/store"
)

// externalAccountDeleted marks a bank account or card deleted
// (account.external_account.deleted), keeping its row.
func externalAccountDeleted(ctx context.Context, tx *store.Tx, e Event) error {
	u, err := externalAccount(e)
	if err != nil {
		return err
	}
	u.Deleted = true
	return tx.ApplyExternalAccount(ctx, u)
}
