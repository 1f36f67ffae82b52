package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ExternalAccount is a bank account or card of a connected account: never a
// full number, only its last four digits.
type ExternalAccount struct {
	ID                      int64 `gorm:"primaryKey"`
	StripeExternalAccountID string
	StripeAccountID         string
	Object                  string
	Last4                   *string
	BankName                *string
	Brand                   *string
	Currency                *string
	Status                  *string
	DefaultForCurrency      bool
	DeletedAt               *time.Time
	EventCreated            *time.Time
	// EventPrevious is that event's data.previous_attributes for the
	// fields kept (nil: it changed none, or a resync wrote the row).
	EventPrevious JSON
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// TableName is the table of external accounts.
func (ExternalAccount) TableName() string { return "stripe_external_accounts" }

// ExternalAccountUpdate is a bank account or card as of one event. Only the
// last four digits are kept, never full numbers.
type ExternalAccountUpdate struct {
	ID                 string
	AccountID          string
	Object             string // bank_account or card
	Last4              string
	BankName           string
	Brand              string
	Currency           string
	Status             string
	DefaultForCurrency bool
	Deleted            bool
	// Previous is the event's data.previous_attributes (nil: none), which
	// settles a tie with an event of the same second.
	Previous     JSON
	EventCreated time.Time
}

// ApplyExternalAccount writes an account.external_account.* event unless a
// newer event already wrote that external account, or one of the same
// second that this one is not shown to follow (or to be). A deletion sets
// deleted_at, and wins a tie; an external account once deleted stays
// deleted. It creates the account's row if the account is new.
func (tx *Tx) ApplyExternalAccount(ctx context.Context, u ExternalAccountUpdate) error {
	if u.AccountID == "" {
		return fmt.Errorf("store: event names no connected account")
	}
	if u.Object != "bank_account" && u.Object != "card" {
		return fmt.Errorf("store: external account %s: object %q is neither bank_account nor card", u.ID, u.Object)
	}
	stored, err := tx.lockExternalAccount(ctx, u.AccountID, u.ID)
	if err != nil {
		return err
	}
	at := u.EventCreated.UTC().Truncate(time.Second)
	if stored.EventCreated != nil && !at.After(*stored.EventCreated) {
		if at.Before(*stored.EventCreated) {
			return nil
		}
		settled, write, err := externalAccountTie(stored, u)
		if err != nil {
			return fmt.Errorf("store: external account %s: %w", u.ID, err)
		}
		if tx.tie(TieExternalAccount, u.AccountID, at, settled); !write {
			return nil
		}
	}
	tx.saveExternalAccount(stored, u, at)
	return nil
}

// saveExternalAccount queues the write of u over stored (a zero row: none)
// and keeps the result as the transaction's view of the row.
func (tx *Tx) saveExternalAccount(stored ExternalAccount, u ExternalAccountUpdate, at time.Time) {
	now := time.Now().UTC()
	r := ExternalAccount{ID: stored.ID, StripeExternalAccountID: u.ID, StripeAccountID: u.AccountID, Object: u.Object,
		Last4: nullable(u.Last4), BankName: nullable(u.BankName), Brand: nullable(u.Brand), Currency: nullable(u.Currency),
		Status: nullable(u.Status), DefaultForCurrency: u.DefaultForCurrency, DeletedAt: stored.DeletedAt,
		EventCreated: &at, EventPrevious: pickPrevious(u.Previous, externalAccountKeys...), CreatedAt: stored.CreatedAt, UpdatedAt: now}
	if u.Deleted {
		r.DeletedAt = &at
	}
	tx.externals[u.ID] = r
	var previous *string
	if r.EventPrevious != nil {
		previous = nullable(string(r.EventPrevious))
	}
	tx.pending.Queue(`INSERT INTO stripe_external_accounts (stripe_external_account_id, stripe_account_id, object,
			last4, bank_name, brand, currency, status, default_for_currency, deleted_at, event_created, event_previous,
			created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $13)
		ON CONFLICT (stripe_external_account_id) DO UPDATE SET
			stripe_account_id = excluded.stripe_account_id, object = excluded.object, last4 = excluded.last4,
			bank_name = excluded.bank_name, brand = excluded.brand, currency = excluded.currency,
			status = excluded.status, default_for_currency = excluded.default_for_currency,
			deleted_at = excluded.deleted_at, event_created = excluded.event_created,
			event_previous = excluded.event_previous, updated_at = excluded.updated_at`,
		u.ID, u.AccountID, u.Object, r.Last4, r.BankName, r.Brand, r.Currency, r.Status, u.DefaultForCurrency,
		r.DeletedAt, at, previous, now)
}

// lockExternalAccount returns the row of external account id (a zero row
// if none is stored), locked for this transaction, and the row of its
// account, created if new: one round trip, with the writes earlier
// handlers of this transaction queued. Locking the account first, as
// ApplySnapshot does, makes the writes of its external accounts, new ones
// included, wait for each other.
func (tx *Tx) lockExternalAccount(ctx context.Context, accountID, id string) (ExternalAccount, error) {
	if r, ok := tx.externals[id]; ok {
		return r, nil
	}
	var r ExternalAccount
	err := tx.send(ctx, func(b *pgx.Batch) {
		if _, ok := tx.accounts[accountID]; !ok {
			tx.queueLockAccounts(b, []string{accountID}, true)
		}
		b.Queue(`SELECT id, stripe_external_account_id, stripe_account_id, object, last4, bank_name, brand, currency, status,
				default_for_currency, deleted_at, event_created, event_previous::text, created_at
			FROM stripe_external_accounts WHERE stripe_external_account_id = $1 FOR UPDATE`, id).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var previous *string
				if err := rows.Scan(&r.ID, &r.StripeExternalAccountID, &r.StripeAccountID, &r.Object, &r.Last4, &r.BankName,
					&r.Brand, &r.Currency, &r.Status, &r.DefaultForCurrency, &r.DeletedAt, &r.EventCreated, &previous,
					&r.CreatedAt); err != nil {
					return err
				}
				if previous != nil {
					r.EventPrevious = JSON(*previous)
				}
			}
			return rows.Err()
		})
	})
	if err != nil {
		return ExternalAccount{}, fmt.Errorf("store: lock external account %s: %w", id, err)
	}
	if _, ok := tx.accounts[accountID]; !ok {
		return ExternalAccount{}, fmt.Errorf("store: lock account %s: no row after creating it", accountID)
	}
	tx.externals[id] = r
	return r, nil
}

// externalAccountKeys are the fields kept of an external account, as
// Stripe names them.
var externalAccountKeys = []string{"last4", "bank_name", "brand", "currency", "status", "default_for_currency"}

// externalAccountTie settles a tie of u with the external account as
// stored, and says whether u is to be written. A deletion wins a tie: an
// external account is never restored once deleted.
func externalAccountTie(stored ExternalAccount, u ExternalAccountUpdate) (string, bool, error) {
	switch {
	case u.Deleted:
		return TieDeletion, true, nil
	case stored.DeletedAt != nil:
		return TieDeletion, false, nil
	}
	storedState := externalAccountState(deref(stored.Last4), deref(stored.BankName), deref(stored.Brand),
		deref(stored.Currency), deref(stored.Status), stored.DefaultForCurrency)
	next := externalAccountState(u.Last4, u.BankName, u.Brand, u.Currency, u.Status, u.DefaultForCurrency)
	storedPrev, err := before(storedState, stored.EventPrevious)
	if err != nil {
		return "", false, err
	}
	previous := pickPrevious(u.Previous, externalAccountKeys...)
	prev, err := before(next, previous)
	if err != nil {
		return "", false, err
	}
	settled := settleTie(storedState, normalExternalAccount(storedPrev), next, normalExternalAccount(prev),
		samePrevious(stored.EventPrevious, previous))
	return settled, applies(settled), nil
}

func externalAccountState(last4, bankName, brand, currency, status string, defaultForCurrency bool) map[string]any {
	return map[string]any{"last4": last4, "bank_name": bankName, "brand": brand, "currency": currency,
		"status": status, "default_for_currency": defaultForCurrency}
}

// normalExternalAccount makes a state read from previous_attributes
// comparable with a stored one: null is empty (or false), and only the last
// four digits are kept.
func normalExternalAccount(s map[string]any) map[string]any {
	for k, v := range s {
		switch {
		case v == nil && k == "default_for_currency":
			s[k] = false
		case v == nil:
			s[k] = ""
		}
	}
	if last4, ok := s["last4"].(string); ok && len(last4) > 4 {
		s["last4"] = last4[len(last4)-4:]
	}
	return s
}

// externalAccountDiffers reports whether writing u would change the stored r.
func externalAccountDiffers(r ExternalAccount, u ExternalAccountUpdate) bool {
	return r.StripeAccountID != u.AccountID || r.Object != u.Object || deref(r.Last4) != u.Last4 ||
		deref(r.BankName) != u.BankName || deref(r.Brand) != u.Brand || deref(r.Currency) != u.Currency ||
		deref(r.Status) != u.Status || r.DefaultForCurrency != u.DefaultForCurrency || r.DeletedAt != nil
}

// ExternalAccounts returns the stored external accounts of a Connect account.
func (s *Store) ExternalAccounts(ctx context.Context, accountID string) ([]ExternalAccount, error) {
	var rows []ExternalAccount
	err := s.db.WithContext(ctx).Where("stripe_account_id = ?", accountID).Order("stripe_external_account_id").Find(&rows).Error
	return rows, err
}
