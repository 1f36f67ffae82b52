package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

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
	// EventCreated is the event's Stripe `created` time.
	EventCreated time.Time
}

// ApplyAccount writes an account.updated. The account's own fields are
// written only if no newer event already wrote them; each capability is
// written only if no newer event already wrote that capability. A
// capability missing from a present map is removed if the update is newer
// than what set it; a nil map touches no capability. Equal `created`
// seconds apply in processing order.
func (tx *Tx) ApplyAccount(ctx context.Context, u AccountUpdate) error {
	acct, err := tx.lockAccount(ctx, u.AccountID)
	if err != nil {
		return err
	}
	at := u.EventCreated.UTC().Truncate(time.Second)
	if acct.AccountEventCreated == nil || !at.Before(*acct.AccountEventCreated) {
		acct.ChargesEnabled = u.ChargesEnabled
		acct.PayoutsEnabled = u.PayoutsEnabled
		acct.DetailsSubmitted = u.DetailsSubmitted
		if u.Requirements != nil {
			acct.Requirements = u.Requirements
		}
		acct.AccountEventCreated = &at
	}
	caps, times, err := capabilityMaps(acct)
	if err != nil {
		return err
	}
	if u.Capabilities == nil {
		return tx.saveAccount(ctx, acct, caps, times)
	}
	for name, status := range u.Capabilities {
		if t, seen := times[name]; !seen || at.Unix() >= t {
			caps[name] = status
			times[name] = at.Unix()
		}
	}
	for name := range caps {
		if _, inUpdate := u.Capabilities[name]; !inUpdate && at.Unix() >= times[name] {
			delete(caps, name)
			times[name] = at.Unix() // a late, older event must not bring it back
		}
	}
	return tx.saveAccount(ctx, acct, caps, times)
}

// ApplyCapability writes a capability.updated: that capability's status,
// unless a newer event already wrote it. It creates the account's row if
// the account is new.
func (tx *Tx) ApplyCapability(ctx context.Context, accountID, capability, status string, eventCreated time.Time) error {
	acct, err := tx.lockAccount(ctx, accountID)
	if err != nil {
		return err
	}
	caps, times, err := capabilityMaps(acct)
	if err != nil {
		return err
	}
	at := eventCreated.Unix()
	if t, seen := times[capability]; seen && at < t {
		return nil
	}
	caps[capability] = status
	times[capability] = at
	return tx.saveAccount(ctx, acct, caps, times)
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
	EventCreated       time.Time
}

// ApplyExternalAccount writes an account.external_account.* event unless a
// newer event already wrote that external account. A deletion sets
// deleted_at. It creates the account's row if the account is new.
func (tx *Tx) ApplyExternalAccount(ctx context.Context, u ExternalAccountUpdate) error {
	if u.AccountID == "" {
		return fmt.Errorf("store: event names no connected account")
	}
	if u.Object != "bank_account" && u.Object != "card" {
		return fmt.Errorf("store: external account %s: object %q is neither bank_account nor card", u.ID, u.Object)
	}
	at := u.EventCreated.UTC().Truncate(time.Second)
	var deletedAt *time.Time
	if u.Deleted {
		deletedAt = &at
	}
	tx.pending.Queue(`INSERT INTO stripe_connected_accounts (stripe_account_id) VALUES ($1)
		ON CONFLICT (stripe_account_id) DO NOTHING`, u.AccountID)
	tx.pending.Queue(`INSERT INTO stripe_external_accounts (stripe_external_account_id, stripe_account_id, object,
			last4, bank_name, brand, currency, status, default_for_currency, deleted_at, event_created, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
		ON CONFLICT (stripe_external_account_id) DO UPDATE SET
			stripe_account_id = excluded.stripe_account_id, object = excluded.object, last4 = excluded.last4,
			bank_name = excluded.bank_name, brand = excluded.brand, currency = excluded.currency,
			status = excluded.status, default_for_currency = excluded.default_for_currency,
			deleted_at = CASE WHEN $13 THEN excluded.deleted_at ELSE stripe_external_accounts.deleted_at END,
			event_created = excluded.event_created, updated_at = excluded.updated_at
		WHERE stripe_external_accounts.event_created IS NULL OR stripe_external_accounts.event_created <= excluded.event_created`,
		u.ID, u.AccountID, u.Object, nullable(u.Last4), nullable(u.BankName), nullable(u.Brand), nullable(u.Currency),
		nullable(u.Status), u.DefaultForCurrency, deletedAt, at, time.Now().UTC(), u.Deleted)
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

const accountColumns = `id, stripe_account_id, charges_enabled, payouts_enabled, details_submitted,
	requirements::text, capabilities::text, capabilities_event_created::text, account_event_created,
	deauthorized_at, authorization_event_created, created_at, updated_at`

const selectAccounts = `SELECT ` + accountColumns + ` FROM stripe_connected_accounts`

func scanAccount(row pgx.Row, a *ConnectedAccount) error {
	var requirements, capabilities, capTimes string
	err := row.Scan(&a.ID, &a.StripeAccountID, &a.ChargesEnabled, &a.PayoutsEnabled, &a.DetailsSubmitted,
		&requirements, &capabilities, &capTimes, &a.AccountEventCreated,
		&a.DeauthorizedAt, &a.AuthorizationEventCreated, &a.CreatedAt, &a.UpdatedAt)
	a.Requirements, a.Capabilities, a.CapabilitiesEventCreated = JSON(requirements), JSON(capabilities), JSON(capTimes)
	return err
}

// lockAccounts locks the rows of accountIDs in one round trip, creating the
// missing ones first if create is set, and keeps them for the handlers'
// reads. The writes earlier handlers of this transaction queued go first,
// so the read sees them. Rows are created, then locked, in the order of
// their ids, so that transactions never wait on each other in a cycle: one
// that finds a row another has just inserted waits for that one's commit.
func (tx *Tx) lockAccounts(ctx context.Context, accountIDs []string, create bool) error {
	b := tx.pending
	tx.pending = &pgx.Batch{}
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
	if err := tx.conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store: lock accounts: %w", err)
	}
	return nil
}

func capabilityMaps(acct ConnectedAccount) (map[string]string, map[string]int64, error) {
	caps := map[string]string{}
	times := map[string]int64{}
	if len(acct.Capabilities) > 0 {
		if err := json.Unmarshal(acct.Capabilities, &caps); err != nil {
			return nil, nil, fmt.Errorf("store: account %s capabilities: %w", acct.StripeAccountID, err)
		}
	}
	if len(acct.CapabilitiesEventCreated) > 0 {
		if err := json.Unmarshal(acct.CapabilitiesEventCreated, &times); err != nil {
			return nil, nil, fmt.Errorf("store: account %s capability times: %w", acct.StripeAccountID, err)
		}
	}
	return caps, times, nil
}

// saveAccount queues the write of the account's fields and capabilities
// from acct, and keeps acct (with its authorization columns, which only
// ApplyAuthorization writes) as the transaction's view of the row.
func (tx *Tx) saveAccount(_ context.Context, acct ConnectedAccount, caps map[string]string, times map[string]int64) error {
	capsJSON, err := json.Marshal(caps)
	if err != nil {
		return err
	}
	timesJSON, err := json.Marshal(times)
	if err != nil {
		return err
	}
	requirements := acct.Requirements
	if len(requirements) == 0 {
		requirements = JSON("{}")
	}
	acct.Requirements, acct.Capabilities, acct.CapabilitiesEventCreated = requirements, JSON(capsJSON), JSON(timesJSON)
	tx.accounts[acct.StripeAccountID] = acct
	tx.pending.Queue(`UPDATE stripe_connected_accounts SET charges_enabled = $2, payouts_enabled = $3,
			details_submitted = $4, requirements = $5::jsonb, capabilities = $6::jsonb,
			capabilities_event_created = $7::jsonb, account_event_created = $8, updated_at = $9
		WHERE id = $1`, acct.ID, acct.ChargesEnabled, acct.PayoutsEnabled, acct.DetailsSubmitted,
		string(requirements), string(capsJSON), string(timesJSON), acct.AccountEventCreated, time.Now().UTC())
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Account returns the stored row of a Connect account.
func (s *Store) Account(ctx context.Context, accountID string) (ConnectedAccount, error) {
	var a ConnectedAccount
	err := s.db.WithContext(ctx).Where("stripe_account_id = ?", accountID).Take(&a).Error
	return a, err
}

// ExternalAccounts returns the stored external accounts of a Connect account.
func (s *Store) ExternalAccounts(ctx context.Context, accountID string) ([]ExternalAccount, error) {
	var rows []ExternalAccount
	err := s.db.WithContext(ctx).Where("stripe_account_id = ?", accountID).Order("stripe_external_account_id").Find(&rows).Error
	return rows, err
}
