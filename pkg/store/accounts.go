package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// ConnectedAccount is the platform's view of one Stripe Connect account.
type ConnectedAccount struct {
	ID               int64 `gorm:"primaryKey"`
	StripeAccountID  string
	ChargesEnabled   bool
	PayoutsEnabled   bool
	DetailsSubmitted bool
	Requirements     JSON
	Capabilities     JSON
	// CapabilitiesEventCreated maps a capability to the Stripe `created` time
	// (unix seconds) of the newest event applied to it.
	CapabilitiesEventCreated JSON
	// AccountEventCreated is the Stripe `created` time of the newest
	// account.updated applied to the account's own fields.
	AccountEventCreated *time.Time
	// AccountEventPrevious is that event's data.previous_attributes for the
	// account's own fields (nil: it changed none, or a resync wrote them):
	// what settles a tie with another event of the same second.
	AccountEventPrevious JSON
	// CapabilitiesEventPrevious maps a capability to its status before the
	// newest event applied to it ("": it had none), for the capabilities
	// that event changed.
	CapabilitiesEventPrevious JSON
	// DeauthorizedAt is when the account disconnected from the platform
	// (the `created` time of its account.application.deauthorized); nil
	// while it is connected.
	DeauthorizedAt *time.Time
	// AuthorizationEventCreated is the Stripe `created` time of the newest
	// account.application.authorized or .deauthorized applied.
	AuthorizationEventCreated *time.Time
	CreatedAt                 time.Time
	UpdatedAt                 time.Time
}

// TableName is the table of connected accounts.
func (ConnectedAccount) TableName() string { return "stripe_connected_accounts" }

// AccountUpdate is the state of a Connect account as of one event.
type AccountUpdate struct {
	AccountID        string
	ChargesEnabled   bool
	PayoutsEnabled   bool
	DetailsSubmitted bool
	Requirements     JSON // the account's requirements object
	// Capabilities maps capability -> status. Nil means the event did not
	// carry the map, and leaves the stored capabilities as they are; a
	// non-nil map (even empty) is the account's whole set as of the event.
	Capabilities map[string]string
	// Previous is the event's data.previous_attributes (nil: none), which
	// settles a tie with an event of the same second.
	Previous JSON
	// EventCreated is the event's Stripe `created` time.
	EventCreated time.Time
}

// ApplyAccount writes an account.updated. The account's own fields are
// written only if no newer event already wrote them; each capability is
// written only if no newer event already wrote that capability. A
// capability missing from a present map is removed if the update is newer
// than what set it; a nil map touches no capability. An event of the same
// `created` second as the one that wrote an object is applied to it only
// if it is shown to be the later one, or to be that event again (see Tie).
func (tx *Tx) ApplyAccount(ctx context.Context, u AccountUpdate) error {
	acct, err := tx.lockAccount(ctx, u.AccountID)
	if err != nil {
		return err
	}
	at := u.EventCreated.UTC().Truncate(time.Second)
	write := acct.AccountEventCreated == nil || at.After(*acct.AccountEventCreated)
	if !write && at.Equal(*acct.AccountEventCreated) {
		settled, err := accountTie(acct, u)
		if err != nil {
			return fmt.Errorf("store: account %s: %w", u.AccountID, err)
		}
		write = applies(tx.tie(TieAccount, u.AccountID, at, settled))
	}
	if write {
		acct.ChargesEnabled = u.ChargesEnabled
		acct.PayoutsEnabled = u.PayoutsEnabled
		acct.DetailsSubmitted = u.DetailsSubmitted
		if u.Requirements != nil {
			acct.Requirements = u.Requirements
		}
		acct.AccountEventCreated = &at
		acct.AccountEventPrevious = pickPrevious(u.Previous, accountKeys...)
	}
	caps, err := capabilityMaps(acct)
	if err != nil {
		return err
	}
	if u.Capabilities != nil {
		previous := previousStatuses(u.Previous)
		names := slices.Collect(maps.Keys(u.Capabilities))
		for name := range caps.status {
			if _, inUpdate := u.Capabilities[name]; !inUpdate {
				names = append(names, name) // removed, if the update is newer
			}
		}
		for _, name := range names {
			prev, changed := previous[name]
			tx.writeCapability(u.AccountID, caps, name, u.Capabilities[name], prev, changed, at)
		}
	}
	return tx.saveAccount(ctx, acct, caps)
}

// ApplyAuthorization writes an account.application.deauthorized
// (deauthorized true: deauthorized_at becomes the event's `created` time)
// or an account.application.authorized (deauthorized_at is cleared), unless
// a newer one of the two was already applied to the account. Equal
// `created` seconds apply in processing order. It creates the account's row
// if the account is new. Only the authorization columns are written, so
// the account's fields and capabilities are left as they are.
func (tx *Tx) ApplyAuthorization(ctx context.Context, accountID string, deauthorized bool, eventCreated time.Time) error {
	acct, err := tx.lockAccount(ctx, accountID)
	if err != nil {
		return err
	}
	at := eventCreated.UTC().Truncate(time.Second)
	if acct.AuthorizationEventCreated != nil && at.Before(*acct.AuthorizationEventCreated) {
		return nil
	}
	acct.DeauthorizedAt = nil
	if deauthorized {
		acct.DeauthorizedAt = &at
	}
	acct.AuthorizationEventCreated = &at
	tx.accounts[acct.StripeAccountID] = acct
	tx.pending.Queue(`UPDATE stripe_connected_accounts SET deauthorized_at = $2, authorization_event_created = $3,
			updated_at = $4
		WHERE id = $1`, acct.ID, acct.DeauthorizedAt, acct.AuthorizationEventCreated, time.Now().UTC())
	return nil
}

// lockAccount returns the account's row, locked for this transaction,
// creating it first (booleans false) if the account is new: one round trip,
// with the writes earlier handlers of this transaction queued.
func (tx *Tx) lockAccount(ctx context.Context, accountID string) (ConnectedAccount, error) {
	if accountID == "" {
		return ConnectedAccount{}, fmt.Errorf("store: event names no connected account")
	}
	if a, ok := tx.accounts[accountID]; ok {
		return a, nil
	}
	if err := tx.lockAccounts(ctx, []string{accountID}, true); err != nil {
		return ConnectedAccount{}, err
	}
	a, ok := tx.accounts[accountID]
	if !ok {
		return ConnectedAccount{}, fmt.Errorf("store: lock account %s: no row after creating it", accountID)
	}
	return a, nil
}

// lockAccounts locks the rows of accountIDs in one round trip, creating the
// missing ones first if create is set, and keeps them for the handlers'
// reads. The writes earlier handlers of this transaction queued go first,
// so the read sees them.
func (tx *Tx) lockAccounts(ctx context.Context, accountIDs []string, create bool) error {
	if err := tx.send(ctx, func(b *pgx.Batch) { tx.queueLockAccounts(b, accountIDs, create) }); err != nil {
		return fmt.Errorf("store: lock accounts: %w", err)
	}
	return nil
}

// queueLockAccounts queues on b what lockAccounts does. Rows are created,
// then locked, in the order of their ids, so that transactions never wait
// on each other in a cycle: one that finds a row another has just inserted
// waits for that one's commit.
func (tx *Tx) queueLockAccounts(b *pgx.Batch, accountIDs []string, create bool) {
	if create {
		b.Queue(`INSERT INTO stripe_connected_accounts (stripe_account_id)
			SELECT id FROM unnest($1::text[]) AS id ORDER BY id
			ON CONFLICT (stripe_account_id) DO NOTHING`, accountIDs)
	}
	b.Queue(selectAccounts+` WHERE stripe_account_id = ANY($1::text[])
		ORDER BY stripe_account_id FOR UPDATE`, accountIDs).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var a ConnectedAccount
			if err := scanAccount(rows, &a); err != nil {
				return err
			}
			tx.accounts[a.StripeAccountID] = a
		}
		return rows.Err()
	})
}

const accountColumns = `id, stripe_account_id, charges_enabled, payouts_enabled, details_submitted,
	requirements::text, capabilities::text, capabilities_event_created::text, account_event_created,
	account_event_previous::text, capabilities_event_previous::text,
	deauthorized_at, authorization_event_created, created_at, updated_at`

const selectAccounts = `SELECT ` + accountColumns + ` FROM stripe_connected_accounts`

func scanAccount(row pgx.Row, a *ConnectedAccount) error {
	var requirements, capabilities, capTimes, capPrevious string
	var previous *string
	err := row.Scan(&a.ID, &a.StripeAccountID, &a.ChargesEnabled, &a.PayoutsEnabled, &a.DetailsSubmitted,
		&requirements, &capabilities, &capTimes, &a.AccountEventCreated, &previous, &capPrevious,
		&a.DeauthorizedAt, &a.AuthorizationEventCreated, &a.CreatedAt, &a.UpdatedAt)
	a.Requirements, a.Capabilities, a.CapabilitiesEventCreated = JSON(requirements), JSON(capabilities), JSON(capTimes)
	a.CapabilitiesEventPrevious, a.AccountEventPrevious = JSON(capPrevious), nil
	if previous != nil {
		a.AccountEventPrevious = JSON(*previous)
	}
	return err
}

// saveAccount queues the write of the account's fields and capabilities
// from acct and caps, and keeps acct (with its authorization columns, which
// only ApplyAuthorization writes) as the transaction's view of the row.
func (tx *Tx) saveAccount(_ context.Context, acct ConnectedAccount, caps capabilitySet) error {
	var encoded [3][]byte
	for i, m := range []any{caps.status, caps.created, caps.previous} {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		encoded[i] = b
	}
	requirements := acct.Requirements
	if len(requirements) == 0 {
		requirements = JSON("{}")
	}
	acct.Requirements = requirements
	acct.Capabilities, acct.CapabilitiesEventCreated, acct.CapabilitiesEventPrevious = encoded[0], encoded[1], encoded[2]
	tx.accounts[acct.StripeAccountID] = acct
	var previous *string
	if acct.AccountEventPrevious != nil {
		previous = nullable(string(acct.AccountEventPrevious))
	}
	tx.pending.Queue(`UPDATE stripe_connected_accounts SET charges_enabled = $2, payouts_enabled = $3,
			details_submitted = $4, requirements = $5::jsonb, capabilities = $6::jsonb,
			capabilities_event_created = $7::jsonb, account_event_created = $8, account_event_previous = $9::jsonb,
			capabilities_event_previous = $10::jsonb, updated_at = $11
		WHERE id = $1`, acct.ID, acct.ChargesEnabled, acct.PayoutsEnabled, acct.DetailsSubmitted,
		string(requirements), string(encoded[0]), string(encoded[1]), acct.AccountEventCreated, previous,
		string(encoded[2]), time.Now().UTC())
	return nil
}

// accountKeys are the account's own fields, as Stripe names them.
var accountKeys = []string{"charges_enabled", "payouts_enabled", "details_submitted", "requirements"}

// accountTie settles a tie of u with the account's own fields as stored.
// An update that does not carry requirements is compared on the booleans.
func accountTie(acct ConnectedAccount, u AccountUpdate) (string, error) {
	// The first of settleTie's cases, without decoding: the stored state
	// already is the event's.
	if acct.ChargesEnabled == u.ChargesEnabled && acct.PayoutsEnabled == u.PayoutsEnabled &&
		acct.DetailsSubmitted == u.DetailsSubmitted && (u.Requirements == nil || equalJSON(acct.Requirements, u.Requirements)) {
		return TieSameState, nil
	}
	state := func(charges, payouts, details bool, requirements JSON) (map[string]any, error) {
		s := map[string]any{"charges_enabled": charges, "payouts_enabled": payouts, "details_submitted": details}
		if u.Requirements != nil {
			r, err := decoded(requirements)
			if err != nil {
				return nil, err
			}
			s["requirements"] = r
		}
		return s, nil
	}
	stored, err := state(acct.ChargesEnabled, acct.PayoutsEnabled, acct.DetailsSubmitted, acct.Requirements)
	if err != nil {
		return "", err
	}
	next, err := state(u.ChargesEnabled, u.PayoutsEnabled, u.DetailsSubmitted, u.Requirements)
	if err != nil {
		return "", err
	}
	storedPrev, err := before(stored, acct.AccountEventPrevious)
	if err != nil {
		return "", err
	}
	previous := pickPrevious(u.Previous, accountKeys...)
	prev, err := before(next, previous)
	if err != nil {
		return "", err
	}
	if u.Requirements == nil {
		delete(storedPrev, "requirements")
		delete(prev, "requirements")
	}
	return settleTie(stored, storedPrev, next, prev, samePrevious(acct.AccountEventPrevious, previous)), nil
}

// Account returns the stored row of a Connect account.
func (s *Store) Account(ctx context.Context, accountID string) (ConnectedAccount, error) {
	var a ConnectedAccount
	err := s.db.WithContext(ctx).Where("stripe_account_id = ?", accountID).Take(&a).Error
	return a, err
}

// KnownAccount is a connected account with a row, as reconcile sees it.
type KnownAccount struct {
	StripeAccountID string
	// Deauthorized is true while the account has deauthorized the platform
	// (deauthorized_at is set).
	Deauthorized bool
}

// KnownAccounts returns every connected account with a row, in id order.
func (s *Store) KnownAccounts(ctx context.Context) ([]KnownAccount, error) {
	var accounts []KnownAccount
	err := s.db.WithContext(ctx).Model(&ConnectedAccount{}).
		Select("stripe_account_id", "deauthorized_at IS NOT NULL AS deauthorized").
		Order("stripe_account_id").Scan(&accounts).Error
	if err != nil {
		return nil, fmt.Errorf("store: known accounts: %w", err)
	}
	return accounts, nil
}

// AccountDetail is a connected account's stored state.
type AccountDetail struct {
	Account ConnectedAccount
	// External are its bank accounts and cards (last four digits only),
	// removed ones included, newest first.
	External []ExternalAccount
}

// AccountDetail returns the stored state of stripeAccountID; IsNotFound
// tells an account no event has created.
func (s *Store) AccountDetail(ctx context.Context, stripeAccountID string) (AccountDetail, error) {
	var d AccountDetail
	db := s.db.WithContext(ctx)
	if err := db.Where("stripe_account_id = ?", stripeAccountID).Take(&d.Account).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return d, err
		}
		return d, fmt.Errorf("store: account %s: %w", stripeAccountID, err)
	}
	if err := db.Where("stripe_account_id = ?", stripeAccountID).Order("created_at DESC, id DESC").Find(&d.External).Error; err != nil {
		return d, fmt.Errorf("store: external accounts of %s: %w", stripeAccountID, err)
	}
	return d, nil
}
