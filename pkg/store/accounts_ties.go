package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/tidwall/gjson"
)

// Stripe's `created` has one-second resolution, and Stripe sends several
// updates of one object within a second, delivered concurrently and out of
// order. When an event meets, on one object, the state an event of the same
// second wrote (a tie), data.previous_attributes order the two: an event
// whose previous values are the stored state came after the stored one; an
// event whose new values are the stored event's previous values came before
// it. Each object keeps, for that, the previous_attributes of the event that
// wrote it (of the fields kept).

// Tie is an event meeting, on one object, the state an event of the same
// `created` second wrote, and how that was settled.
type Tie struct {
	// Object is TieAccount, TieCapability or TieExternalAccount.
	Object string
	// Settled is TieChained, TieSameState, TieSameEvent, TieEarlier,
	// TieDeletion, TieKept or TieResync.
	Settled string
}

// The objects a tie is on.
const (
	TieAccount         = "account" // the account's own fields
	TieCapability      = "capability"
	TieExternalAccount = "external_account"
)

// How a tie was settled.
const (
	// TieChained: the event's previous values are the stored state: it is
	// the later one, and is applied.
	TieChained = "chained"
	// TieSameState: the stored state already is the event's.
	TieSameState = "same_state"
	// TieSameEvent: the event's previous values are those of the event
	// that wrote the stored state: it is that event again (a replay, after
	// the stored state was changed otherwise), and is applied.
	TieSameEvent = "same_event"
	// TieEarlier: the event's new values are what the stored event's
	// previous values say came before it: it is the earlier one, and the
	// stored state is kept.
	TieEarlier = "earlier"
	// TieDeletion: one side is an external account's deletion, which wins:
	// a deletion is applied, an update or creation is not.
	TieDeletion = "deletion"
	// TieKept: the events do not show which is later (their states do not
	// chain, or chain both ways: a change undone within the second): the
	// stored state is kept.
	TieKept = "kept"
	// TieResync: as TieKept, and the account's resync from Stripe's API is
	// requested (Tx.SettleTies).
	TieResync = "resync"
)

// SettleTies sets what this transaction's operations do with a tie the
// events cannot settle: the stored state is kept, and with resync the
// account's resync is requested as well (resync_requests, see
// DueResyncRequests). report, if set, is called with each tie once the
// transaction has committed, never for one rolled back, so that an event
// retried is counted once.
func (tx *Tx) SettleTies(resync bool, report func(Tie)) {
	tx.resyncTies, tx.reportTie = resync, report
}

// tie notes a tie on object, of accountID, in the `created` second at,
// settled so; it returns how it was settled in the end.
func (tx *Tx) tie(object, accountID string, at time.Time, settled string) string {
	if settled == TieKept && tx.resyncTies {
		tx.requestResync(accountID, at)
		settled = TieResync
	}
	if report := tx.reportTie; report != nil {
		t := Tie{Object: object, Settled: settled}
		tx.afterCommit = append(tx.afterCommit, func() { report(t) })
	}
	return settled
}

// applies reports whether an event whose tie was settled so is applied.
func applies(settled string) bool {
	return settled == TieChained || settled == TieSameEvent
}

// committed runs what waited for the transaction's commit.
func (tx *Tx) committed() {
	for _, fn := range tx.afterCommit {
		fn()
	}
	tx.afterCommit = nil
}

// settleTie settles a tie on one object: stored is its state and
// storedPrev the state before the event that wrote it; next and prev are
// the same for the event now applied. States are decoded JSON. sameEvent:
// the two events changed the object from the same previous values.
func settleTie(stored, storedPrev, next, prev any, sameEvent bool) string {
	later := reflect.DeepEqual(prev, stored)
	earlier := reflect.DeepEqual(next, storedPrev)
	switch {
	case reflect.DeepEqual(next, stored):
		return TieSameState
	case sameEvent:
		return TieSameEvent
	case later && !earlier:
		return TieChained
	case earlier && !later:
		return TieEarlier
	}
	return TieKept
}

// pickPrevious returns the fields of previous (an event's
// data.previous_attributes) named in keys, nil if it names none: what an
// object keeps of the event that wrote it.
func pickPrevious(previous JSON, keys ...string) JSON {
	if len(previous) == 0 {
		return nil
	}
	var buf bytes.Buffer
	sep := byte('{')
	gjson.ParseBytes(previous).ForEach(func(k, v gjson.Result) bool {
		if slices.Contains(keys, k.Str) {
			buf.WriteByte(sep)
			sep = ','
			buf.WriteString(strconv.Quote(k.Str))
			buf.WriteByte(':')
			buf.WriteString(v.Raw)
		}
		return true
	})
	if buf.Len() == 0 {
		return nil
	}
	buf.WriteByte('}')
	return JSON(buf.Bytes())
}

// before returns state as it was before an event whose previous_attributes
// (as pickPrevious keeps them) are previous: previous laid over state, a
// nested object merged key by key (Stripe lists only the changed keys of a
// nested object), anything else replaced.
func before(state map[string]any, previous JSON) (map[string]any, error) {
	if len(previous) == 0 {
		return state, nil
	}
	var prev map[string]any
	if err := json.Unmarshal(previous, &prev); err != nil {
		return nil, fmt.Errorf("store: previous_attributes: %w", err)
	}
	return overlay(state, prev), nil
}

func overlay(state, prev map[string]any) map[string]any {
	out := maps.Clone(state)
	for k, p := range prev {
		cur, curIsObject := state[k].(map[string]any)
		if prevObject, ok := p.(map[string]any); ok && curIsObject {
			p = overlay(cur, prevObject)
		}
		out[k] = p
	}
	return out
}

// samePrevious reports whether two events' previous_attributes, as
// pickPrevious keeps them, name the same changes.
func samePrevious(a, b JSON) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	x, errX := decoded(a)
	y, errY := decoded(b)
	return errX == nil && errY == nil && reflect.DeepEqual(x, y)
}

// decoded returns j decoded, nil for no document.
func decoded(j JSON) (any, error) {
	if len(j) == 0 {
		return nil, nil
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return v, nil
}

// accountKeys are the account's own fields, as Stripe names them.
var accountKeys = []string{"charges_enabled", "payouts_enabled", "details_submitted", "requirements"}

// accountTie settles a tie of u with the account's own fields as stored.
// An update that does not carry requirements is compared on the booleans.
func accountTie(acct ConnectedAccount, u AccountUpdate) (string, error) {
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

// previousStatuses returns, from an account.updated's
// data.previous_attributes, each changed capability's status before it
// ("": it had none).
func previousStatuses(previous JSON) map[string]string {
	caps := gjson.GetBytes(previous, "capabilities")
	if !caps.IsObject() {
		return nil
	}
	statuses := map[string]string{}
	caps.ForEach(func(k, v gjson.Result) bool {
		statuses[k.Str] = v.Str // null: the capability did not exist
		return true
	})
	return statuses
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
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	storedState := externalAccountState(str(stored.Last4), str(stored.BankName), str(stored.Brand), str(stored.Currency),
		str(stored.Status), stored.DefaultForCurrency)
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

// requestResync queues the request of a resync of accountID for a tie in
// the `created` second tiedAt. The first request's time stays: the
// debounce counts from it, so that ties every few seconds do not put the
// resync off for ever.
func (tx *Tx) requestResync(accountID string, tiedAt time.Time) {
	tx.pending.Queue(`INSERT INTO resync_requests (stripe_account_id, requested_at, tied_at) VALUES ($1, $2, $3)
		ON CONFLICT (stripe_account_id) DO UPDATE SET tied_at = greatest(resync_requests.tied_at, excluded.tied_at)`,
		accountID, time.Now().UTC(), tiedAt)
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
