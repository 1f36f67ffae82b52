package store

import (
	"context"
	"fmt"
)

// AccountIDs returns the ids of every connected account with a row, in
// order.
func (s *Store) AccountIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Model(&ConnectedAccount{}).Order("stripe_account_id").Pluck("stripe_account_id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("store: account ids: %w", err)
	}
	return ids, nil
}

// StoredEventIDs returns which of the Stripe event ids have a row.
func (s *Store) StoredEventIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	stored := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return stored, nil
	}
	var found []string
	err := s.db.WithContext(ctx).Model(&WebhookEvent{}).Where("stripe_event_id IN ?", ids).
		Pluck("stripe_event_id", &found).Error
	if err != nil {
		return nil, fmt.Errorf("store: stored event ids: %w", err)
	}
	for _, id := range found {
		stored[id] = true
	}
	return stored, nil
}
