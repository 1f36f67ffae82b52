package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm/clause"
)

// AccountUpdate is the state of a Connect account as of one event.
type AccountUpdate struct {
	AccountID        string
	ChargesEnabled   bool
	PayoutsEnabled   bool
	DetailsSubmitted bool
	Requirements     JSON              // the account's requirements object
	Capabilities     map[string]string // capability -> status
	// EventCreated is the event's Stripe `created` time.
	EventCreated time.Time
}

// ApplyAccount writes an account.updated. The account's own fields are
// written only if no newer event already wrote them; each capability is
// written only if no newer event already wrote that capability. A
// capability missing from the update is removed if the update is newer
// than what set it. Equal `created` seconds apply in processing order.
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
	if _, err := tx.lockAccount(ctx, u.AccountID); err != nil {
		return err
	}
	at := u.EventCreated.UTC().Truncate(time.Second)
	now := time.Now().UTC()
	row := ExternalAccount{
		StripeExternalAccountID: u.ID,
		StripeAccountID:         u.AccountID,
		Object:                  u.Object,
		Last4:                   nullable(u.Last4),
		BankName:                nullable(u.BankName),
		Brand:                   nullable(u.Brand),
		Currency:                nullable(u.Currency),
		Status:                  nullable(u.Status),
		DefaultForCurrency:      u.DefaultForCurrency,
		EventCreated:            &at,
		CreatedAt:               now,
		UpdatedAt:               now,
	}
	columns := []string{"stripe_account_id", "object", "last4", "bank_name", "brand", "currency", "status",
		"default_for_currency", "event_created", "updated_at"}
	if u.Deleted {
		row.DeletedAt = &at
		columns = append(columns, "deleted_at")
	}
	err := tx.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "stripe_external_account_id"}},
		DoUpdates: clause.AssignmentColumns(columns),
		Where: clause.Where{Exprs: []clause.Expression{clause.Expr{
			SQL: "stripe_external_accounts.event_created IS NULL OR stripe_external_accounts.event_created <= excluded.event_created",
		}}},
	}).Create(&row).Error
	if err != nil {
		return fmt.Errorf("store: upsert external account %s: %w", u.ID, err)
	}
	return nil
}

// lockAccount returns the account's row, locked for this transaction,
// creating it first (booleans false) if the account is new.
func (tx *Tx) lockAccount(ctx context.Context, accountID string) (ConnectedAccount, error) {
	if accountID == "" {
		return ConnectedAccount{}, fmt.Errorf("store: event names no connected account")
	}
	// One statement: insert the row if it is new, else touch it, which
	// locks it either way until the transaction ends; and return it.
	var acct ConnectedAccount
	err := tx.db.WithContext(ctx).Raw(`INSERT INTO stripe_connected_accounts (stripe_account_id) VALUES (?)
		ON CONFLICT (stripe_account_id) DO UPDATE SET stripe_account_id = excluded.stripe_account_id
		RETURNING *`, accountID).Scan(&acct).Error
	if err != nil {
		return ConnectedAccount{}, fmt.Errorf("store: lock account %s: %w", accountID, err)
	}
	if acct.ID == 0 {
		return ConnectedAccount{}, fmt.Errorf("store: lock account %s: no row returned", accountID)
	}
	return acct, nil
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

func (tx *Tx) saveAccount(ctx context.Context, acct ConnectedAccount, caps map[string]string, times map[string]int64) error {
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
	err = tx.db.WithContext(ctx).Model(&ConnectedAccount{}).Where("id = ?", acct.ID).Updates(map[string]any{
		"charges_enabled":            acct.ChargesEnabled,
		"payouts_enabled":            acct.PayoutsEnabled,
		"details_submitted":          acct.DetailsSubmitted,
		"requirements":               requirements,
		"capabilities":               JSON(capsJSON),
		"capabilities_event_created": JSON(timesJSON),
		"account_event_created":      acct.AccountEventCreated,
		"updated_at":                 time.Now().UTC(),
	}).Error
	if err != nil {
		return fmt.Errorf("store: save account %s: %w", acct.StripeAccountID, err)
	}
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
