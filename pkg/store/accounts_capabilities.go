package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tidwall/gjson"
)

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
