package store

import (
	"context"
	"fmt"
	"time"
)

// A same-second tie that the events cannot settle may request the
// account's resync from Stripe's API (Tx.SettleTies): one row of
// resync_requests per account, deleted by a snapshot of the account taken
// in a second after its ties.

// requestResync queues the request of a resync of accountID for a tie in
// the `created` second tiedAt. The first request's time stays: the
// debounce counts from it, so that ties every few seconds do not put the
// resync off for ever.
func (tx *Tx) requestResync(accountID string, tiedAt time.Time) {
	tx.pending.Queue(`INSERT INTO resync_requests (stripe_account_id, requested_at, tied_at) VALUES ($1, $2, $3)
		ON CONFLICT (stripe_account_id) DO UPDATE SET tied_at = greatest(resync_requests.tied_at, excluded.tied_at)`,
		accountID, time.Now().UTC(), tiedAt)
}

// settleResync queues the deletion of the account's resync request if its
// ties are all older than at, the second of a snapshot that settled them.
func (tx *Tx) settleResync(accountID string, at time.Time) {
	tx.pending.Queue(`DELETE FROM resync_requests WHERE stripe_account_id = $1 AND tied_at < $2`, accountID, at)
}

// DueResyncRequests returns up to limit accounts whose resync a tie
// requested before requestedBefore, the oldest request first. A snapshot
// of the account taken in a second after its ties (ApplySnapshot) deletes
// its request.
func (s *Store) DueResyncRequests(ctx context.Context, requestedBefore time.Time, limit int) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Raw(`SELECT stripe_account_id FROM resync_requests WHERE requested_at < ?
		ORDER BY requested_at, stripe_account_id LIMIT ?`, requestedBefore.UTC(), limit).Scan(&ids).Error
	if err != nil {
		return nil, fmt.Errorf("store: resync requests: %w", err)
	}
	return ids, nil
}

// PutOffResyncRequest makes the account's resync request, if it is still
// there (the resync failed, or did not settle its ties), due again one
// debounce after now.
func (s *Store) PutOffResyncRequest(ctx context.Context, accountID string, now time.Time) error {
	err := s.db.WithContext(ctx).Exec(`UPDATE resync_requests SET requested_at = ? WHERE stripe_account_id = ?`,
		now.UTC(), accountID).Error
	if err != nil {
		return fmt.Errorf("store: put off the resync of %s: %w", accountID, err)
	}
	return nil
}
