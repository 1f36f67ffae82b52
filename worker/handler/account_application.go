package handler

import (
	"context"
	"fmt"

	"stripe-webhooks/pkg/store"
)

// accountApplication handles account.application.deauthorized, which marks
// the connected account disconnected from the platform (deauthorized_at),
// and account.application.authorized, which clears that mark. The account
// is the event's top-level `account`; data.object is the platform's
// application (`ca_…`), of which nothing is needed, so its shape is not
// checked.
func accountApplication(ctx context.Context, tx *store.Tx, e Event) error {
	if e.Account == "" {
		return fmt.Errorf("%s: event names no connected account", e.Type)
	}
	return tx.ApplyAuthorization(ctx, e.Account, e.Type == "account.application.deauthorized", e.Created)
}
