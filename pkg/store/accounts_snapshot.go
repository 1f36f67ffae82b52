package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// AccountSnapshot is a connected account as Stripe's API returned it: its
// fields, capabilities and external accounts, all read no earlier than
// TakenAt.
type AccountSnapshot struct {
	AccountID string
	// TakenAt is when the fetch began: the snapshot is at least as new as
	// this. It is applied truncated to seconds, like an event's `created`.
	TakenAt          time.Time
	ChargesEnabled   bool
	PayoutsEnabled   bool
	DetailsSubmitted bool
	// Requirements is the account's requirements object; nil leaves the
	// stored one as it is.
	Requirements JSON
	// Capabilities maps capability -> status: the account's whole set. It
	// must not be nil (an empty map says the account has none).
	Capabilities map[string]string
	// ExternalAccounts are every bank account and card Stripe has for the
	// account. Their EventCreated is ignored (TakenAt applies), an empty
	// AccountID means AccountID, and Deleted must be false.
	ExternalAccounts []ExternalAccountUpdate
}

// SnapshotReport is what ApplySnapshot changed. Objects whose stored values
// already matched the snapshot are not listed, even when their
// created-time was advanced to the snapshot's.
type SnapshotReport struct {
	// AccountChanged: the account's own fields were overwritten with
	// different values, or written for the first time.
	AccountChanged bool
	// CapabilitiesWritten are the capabilities set to a new status, by name.
	CapabilitiesWritten []string
	// CapabilitiesRemoved are the stored capabilities the snapshot lacks.
	CapabilitiesRemoved []string
	// ExternalAccountsUpserted are the external accounts inserted, or
	// overwritten with different values, by id.
	ExternalAccountsUpserted []string
	// ExternalAccountsDeleted are the stored external accounts the
	// snapshot lacks, now marked deleted, by id.
	ExternalAccountsDeleted []string
}

// Changed reports whether the snapshot changed anything stored.
func (r SnapshotReport) Changed() bool {
	return r.AccountChanged || len(r.CapabilitiesWritten) > 0 || len(r.CapabilitiesRemoved) > 0 ||
		len(r.ExternalAccountsUpserted) > 0 || len(r.ExternalAccountsDeleted) > 0
}

// ApplySnapshot applies snap in one transaction, as of TakenAt truncated to
// seconds (the snapshot's time), with the handlers' per-object rules except
// that a tie goes to the event: the snapshot writes an object only if what
// last wrote it is strictly older than the snapshot's time, because an
// event created in the same second as the fetch began may be newer than
// what the fetch read. So:
//
//   - the account's own fields are written unless account_event_created is
//     at or after the snapshot's time;
//   - each capability of the snapshot is written unless an event at or
//     after the snapshot's time wrote it; a stored capability the snapshot
//     lacks is removed unless such an event wrote it;
//   - each external account of the snapshot is upserted (deleted_at
//     cleared: Stripe lists it) unless its event_created is at or after the
//     snapshot's time;
//   - each external account stored for the account but absent from the
//     snapshot is marked deleted (deleted_at = the snapshot's time) unless
//     it is already deleted or its event_created is at or after the
//     snapshot's time (an event newer than the fetch, such as its
//     creation, wrote it);
//   - the account's row is created if missing;
//   - deauthorized_at and authorization_event_created are left as they
//     are: that the API answered for the account says nothing reliable
//     about its authorization.
//
// What the snapshot writes has its created-time (account_event_created,
// the capability's entry in capabilities_event_created, event_created) set
// to the snapshot's time, so a late event older than the snapshot does not
// overwrite it, and one in the same second or newer does (one in the same
// second only if it is shown to follow what the snapshot wrote: the
// previous_attributes the object kept are cleared). Applying the same
// snapshot again writes nothing. The account's resync request
// (DueResyncRequests) is deleted if its ties are older than the snapshot's
// time: the snapshot settled them.
//
// The account's row is locked first, as the handlers lock it, then its
// external accounts' rows, so the snapshot serialises with the worker's
// events of the account. It speaks to Postgres through pgx in three round
// trips: BEGIN with the account's locking read; the external accounts'
// locking read; the writes and COMMIT. A deadlock with a worker's group is
// returned as an error, with nothing applied, and the snapshot may simply
// be applied again.
func (s *Store) ApplySnapshot(ctx context.Context, snap AccountSnapshot) (SnapshotReport, error) {
	want, err := snap.externalAccounts()
	if err != nil {
		return SnapshotReport{}, err
	}
	var report SnapshotReport
	err = s.withConn(ctx, func(conn *pgx.Conn) error {
		report = SnapshotReport{}
		tx := newTx(conn)
		tx.pending.Queue("BEGIN") // sent with the account's locking read
		if err := tx.applySnapshot(ctx, snap, want, &report); err != nil {
			return err
		}
		if err := tx.commit(ctx); err != nil {
			return fmt.Errorf("store: snapshot of %s: apply and commit: %w", snap.AccountID, err)
		}
		return nil
	})
	if err != nil {
		return SnapshotReport{}, err
	}
	return report, nil
}

// externalAccounts checks snap and returns its external accounts by id,
// each with the snapshot's account and at most four digits.
func (snap AccountSnapshot) externalAccounts() (map[string]ExternalAccountUpdate, error) {
	if snap.AccountID == "" {
		return nil, fmt.Errorf("store: snapshot names no connected account")
	}
	if snap.TakenAt.IsZero() {
		return nil, fmt.Errorf("store: snapshot of %s has no TakenAt", snap.AccountID)
	}
	if snap.Capabilities == nil {
		return nil, fmt.Errorf("store: snapshot of %s has no capabilities map", snap.AccountID)
	}
	want := make(map[string]ExternalAccountUpdate, len(snap.ExternalAccounts))
	for _, u := range snap.ExternalAccounts {
		switch {
		case u.ID == "":
			return nil, fmt.Errorf("store: snapshot of %s: external account without id", snap.AccountID)
		case u.Object != "bank_account" && u.Object != "card":
			return nil, fmt.Errorf("store: snapshot of %s: external account %s: object %q is neither bank_account nor card",
				snap.AccountID, u.ID, u.Object)
		case u.AccountID != "" && u.AccountID != snap.AccountID:
			return nil, fmt.Errorf("store: snapshot of %s: external account %s belongs to %s", snap.AccountID, u.ID, u.AccountID)
		case u.Deleted:
			return nil, fmt.Errorf("store: snapshot of %s: external account %s is marked deleted", snap.AccountID, u.ID)
		}
		u.AccountID = snap.AccountID
		if len(u.Last4) > 4 {
			u.Last4 = u.Last4[len(u.Last4)-4:]
		}
		want[u.ID] = u
	}
	return want, nil
}

func (tx *Tx) applySnapshot(ctx context.Context, snap AccountSnapshot, want map[string]ExternalAccountUpdate, report *SnapshotReport) error {
	at := snap.TakenAt.UTC().Truncate(time.Second)
	acct, err := tx.lockAccount(ctx, snap.AccountID)
	if err != nil {
		return err
	}
	stored, err := tx.lockExternalAccounts(ctx, snap.AccountID, want)
	if err != nil {
		return err
	}
	fieldsWritten := snapshotFields(&acct, snap, at, report)
	caps, err := capabilityMaps(acct)
	if err != nil {
		return err
	}
	if capsWritten := snapshotCapabilities(caps, snap.Capabilities, at, report); fieldsWritten || capsWritten {
		if err := tx.saveAccount(ctx, acct, caps); err != nil {
			return err
		}
	}
	// Same-second ties of the account's events before the snapshot's second
	// are settled now.
	tx.settleResync(snap.AccountID, at)
	tx.snapshotExternalAccounts(snap.AccountID, at, want, stored, report)
	return nil
}

// snapshotFields writes the snapshot's account fields over acct unless an
// event of the snapshot's second at, or newer, wrote them, and reports
// whether it did.
func snapshotFields(acct *ConnectedAccount, snap AccountSnapshot, at time.Time, report *SnapshotReport) bool {
	if acct.AccountEventCreated != nil && !at.After(*acct.AccountEventCreated) {
		return false
	}
	report.AccountChanged = acct.AccountEventCreated == nil ||
		acct.ChargesEnabled != snap.ChargesEnabled || acct.PayoutsEnabled != snap.PayoutsEnabled ||
		acct.DetailsSubmitted != snap.DetailsSubmitted ||
		(snap.Requirements != nil && !sameJSON(acct.Requirements, snap.Requirements))
	acct.ChargesEnabled = snap.ChargesEnabled
	acct.PayoutsEnabled = snap.PayoutsEnabled
	acct.DetailsSubmitted = snap.DetailsSubmitted
	if snap.Requirements != nil {
		acct.Requirements = snap.Requirements
	}
	acct.AccountEventCreated, acct.AccountEventPrevious = &at, nil
	return true
}

// snapshotCapabilities sets in caps the snapshot's capabilities, and
// removes those it lacks, except where an event of the snapshot's second at,
// or newer, wrote them; it reports whether it changed caps.
func snapshotCapabilities(caps capabilitySet, snapshot map[string]string, at time.Time, report *SnapshotReport) bool {
	written := false
	for name, status := range snapshot {
		if t, seen := caps.created[name]; seen && at.Unix() <= t {
			continue
		}
		if old, ok := caps.status[name]; !ok || old != status {
			report.CapabilitiesWritten = append(report.CapabilitiesWritten, name)
		}
		caps.status[name] = status
		caps.created[name] = at.Unix()
		delete(caps.previous, name)
		written = true
	}
	for name := range caps.status {
		if _, inSnapshot := snapshot[name]; !inSnapshot && at.Unix() > caps.created[name] {
			delete(caps.status, name)
			caps.created[name] = at.Unix() // a late, older event must not bring it back
			delete(caps.previous, name)
			report.CapabilitiesRemoved = append(report.CapabilitiesRemoved, name)
			written = true
		}
	}
	slices.Sort(report.CapabilitiesWritten)
	slices.Sort(report.CapabilitiesRemoved)
	return written
}

// snapshotExternalAccounts queues the upsert of the snapshot's external
// accounts and marks deleted the account's stored ones it lacks, except
// those an event of the snapshot's second at, or newer, wrote; in the order
// of their ids, the order their rows were locked in.
func (tx *Tx) snapshotExternalAccounts(accountID string, at time.Time, want map[string]ExternalAccountUpdate,
	stored map[string]ExternalAccount, report *SnapshotReport) {
	ids := make([]string, 0, len(want)+len(stored))
	for id := range want {
		ids = append(ids, id)
	}
	for id, r := range stored {
		if _, ok := want[id]; !ok && r.StripeAccountID == accountID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	now := time.Now().UTC()
	for _, id := range ids {
		r, have := stored[id]
		if have && r.EventCreated != nil && !at.After(*r.EventCreated) {
			continue // written by an event as new as the snapshot, or newer
		}
		if u, ok := want[id]; ok {
			changed := !have || externalAccountDiffers(r, u)
			tx.pending.Queue(upsertSnapshotExternalAccount, u.ID, u.AccountID, u.Object, nullable(u.Last4),
				nullable(u.BankName), nullable(u.Brand), nullable(u.Currency), nullable(u.Status),
				u.DefaultForCurrency, at, now).Query(func(rows pgx.Rows) error {
				if returned(rows) && changed {
					report.ExternalAccountsUpserted = append(report.ExternalAccountsUpserted, id)
				}
				return rows.Err()
			})
			continue
		}
		if r.DeletedAt != nil {
			continue
		}
		tx.pending.Queue(deleteSnapshotExternalAccount, id, at, now).Query(func(rows pgx.Rows) error {
			if returned(rows) {
				report.ExternalAccountsDeleted = append(report.ExternalAccountsDeleted, id)
			}
			return rows.Err()
		})
	}
}

// upsertSnapshotExternalAccount writes an external account Stripe listed
// unless an event as new as the snapshot, or newer, wrote it.
const upsertSnapshotExternalAccount = `INSERT INTO stripe_external_accounts (stripe_external_account_id,
		stripe_account_id, object, last4, bank_name, brand, currency, status, default_for_currency, deleted_at,
		event_created, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $11)
	ON CONFLICT (stripe_external_account_id) DO UPDATE SET
		stripe_account_id = excluded.stripe_account_id, object = excluded.object, last4 = excluded.last4,
		bank_name = excluded.bank_name, brand = excluded.brand, currency = excluded.currency,
		status = excluded.status, default_for_currency = excluded.default_for_currency, deleted_at = NULL,
		event_created = excluded.event_created, event_previous = NULL, updated_at = excluded.updated_at
	WHERE stripe_external_accounts.event_created IS NULL OR stripe_external_accounts.event_created < excluded.event_created
	RETURNING stripe_external_account_id`

// deleteSnapshotExternalAccount marks deleted an external account Stripe no
// longer lists unless an event as new as the snapshot, or newer, wrote it.
const deleteSnapshotExternalAccount = `UPDATE stripe_external_accounts SET deleted_at = $2, event_created = $2,
		event_previous = NULL, updated_at = $3
	WHERE stripe_external_account_id = $1 AND deleted_at IS NULL AND (event_created IS NULL OR event_created < $2)
	RETURNING stripe_external_account_id`

// lockExternalAccounts reads and locks, in the order of their ids, the
// stored external accounts of the account and those of want wherever they
// are stored.
func (tx *Tx) lockExternalAccounts(ctx context.Context, accountID string, want map[string]ExternalAccountUpdate) (map[string]ExternalAccount, error) {
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	stored := map[string]ExternalAccount{}
	err := tx.send(ctx, func(b *pgx.Batch) {
		b.Queue(`SELECT stripe_external_account_id, stripe_account_id, object, last4, bank_name, brand, currency, status,
				default_for_currency, deleted_at, event_created
			FROM stripe_external_accounts
			WHERE stripe_account_id = $1 OR stripe_external_account_id = ANY($2::text[])
			ORDER BY stripe_external_account_id FOR UPDATE`, accountID, ids).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var r ExternalAccount
				if err := rows.Scan(&r.StripeExternalAccountID, &r.StripeAccountID, &r.Object, &r.Last4, &r.BankName,
					&r.Brand, &r.Currency, &r.Status, &r.DefaultForCurrency, &r.DeletedAt, &r.EventCreated); err != nil {
					return err
				}
				stored[r.StripeExternalAccountID] = r
			}
			return rows.Err()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: lock external accounts of %s: %w", accountID, err)
	}
	return stored, nil
}

// returned drains rows and reports whether there was one.
func returned(rows pgx.Rows) bool {
	found := false
	for rows.Next() {
		found = true
	}
	return found
}
