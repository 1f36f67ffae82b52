package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidwall/gjson"
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

// CapabilityUpdate is one capability of a Connect account as of a
// capability.updated.
type CapabilityUpdate struct {
	AccountID  string
	Capability string // such as card_payments
	Status     string
	// Previous is the event's data.previous_attributes (nil: none), which
	// settles a tie with an event of the same second.
	Previous JSON
	// EventCreated is the event's Stripe `created` time.
	EventCreated time.Time
}

// ApplyCapability writes a capability.updated: that capability's status,
// unless a newer event already wrote it, or one of the same second that
// this one is not shown to follow (or to be). It creates the account's row
// if the account is new.
func (tx *Tx) ApplyCapability(ctx context.Context, u CapabilityUpdate) error {
	acct, err := tx.lockAccount(ctx, u.AccountID)
	if err != nil {
		return err
	}
	caps, err := capabilityMaps(acct)
	if err != nil {
		return err
	}
	at := u.EventCreated.UTC().Truncate(time.Second)
	status := gjson.GetBytes(u.Previous, "status")
	if !tx.writeCapability(u.AccountID, caps, u.Capability, u.Status, status.Str, status.Exists(), at) {
		return nil
	}
	return tx.saveAccount(ctx, acct, caps)
}

// writeCapability sets capability name in caps to status ("": removes it)
// as of an event of the `created` second at, unless a newer event wrote it,
// or an event of the same second that this one is not shown to follow (or
// to be). prev is its status before the event, if changed. It reports
// whether it wrote.
func (tx *Tx) writeCapability(accountID string, caps capabilitySet, name, status, prev string, changed bool, at time.Time) bool {
	if t, seen := caps.created[name]; seen && at.Unix() <= t {
		if at.Unix() < t {
			return false
		}
		stored := caps.status[name]
		storedPrev, storedChanged := caps.previous[name]
		sameEvent := storedChanged && changed && storedPrev == prev
		if !storedChanged {
			storedPrev = stored
		}
		if !changed {
			prev = status
		}
		if !applies(tx.tie(TieCapability, accountID, at, settleTie(stored, storedPrev, status, prev, sameEvent))) {
			return false
		}
	}
	if status == "" {
		delete(caps.status, name)
	} else {
		caps.status[name] = status
	}
	caps.created[name] = at.Unix() // of a removal too: a late, older event must not bring it back
	if changed {
		caps.previous[name] = prev
	} else {
		delete(caps.previous, name)
	}
	return true
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
	if tx.externals == nil {
		tx.externals = map[string]ExternalAccount{}
	}
	if r, ok := tx.externals[id]; ok {
		return r, nil
	}
	b := tx.pending
	tx.pending = &pgx.Batch{}
	if _, ok := tx.accounts[accountID]; !ok {
		tx.queueLockAccounts(b, []string{accountID}, true)
	}
	var r ExternalAccount
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
	if err := tx.conn.SendBatch(ctx, b).Close(); err != nil {
		return ExternalAccount{}, fmt.Errorf("store: lock external account %s: %w", id, err)
	}
	if _, ok := tx.accounts[accountID]; !ok {
		return ExternalAccount{}, fmt.Errorf("store: lock account %s: no row after creating it", accountID)
	}
	tx.externals[id] = r
	return r, nil
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

// lockAccounts locks the rows of accountIDs in one round trip, creating the
// missing ones first if create is set, and keeps them for the handlers'
// reads. The writes earlier handlers of this transaction queued go first,
// so the read sees them.
func (tx *Tx) lockAccounts(ctx context.Context, accountIDs []string, create bool) error {
	b := tx.pending
	tx.pending = &pgx.Batch{}
	tx.queueLockAccounts(b, accountIDs, create)
	if err := tx.conn.SendBatch(ctx, b).Close(); err != nil {
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

// capabilitySet is an account's capabilities: each one's status, the
// `created` second (unix) of the newest event applied to it, and its status
// before that event if the event changed it.
type capabilitySet struct {
	status   map[string]string
	created  map[string]int64
	previous map[string]string
}

func capabilityMaps(acct ConnectedAccount) (capabilitySet, error) {
	caps := capabilitySet{status: map[string]string{}, created: map[string]int64{}, previous: map[string]string{}}
	for _, m := range []struct {
		what string
		raw  JSON
		into any
	}{
		{"capabilities", acct.Capabilities, &caps.status},
		{"capability times", acct.CapabilitiesEventCreated, &caps.created},
		{"capabilities' previous statuses", acct.CapabilitiesEventPrevious, &caps.previous},
	} {
		if len(m.raw) == 0 {
			continue
		}
		if err := json.Unmarshal(m.raw, m.into); err != nil {
			return capabilitySet{}, fmt.Errorf("store: account %s %s: %w", acct.StripeAccountID, m.what, err)
		}
	}
	return caps, nil
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
