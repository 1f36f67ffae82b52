package store

import (
	"bytes"
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
