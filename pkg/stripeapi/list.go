package stripeapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/stripe/stripe-go/v76"
)

const (
	// pageSize is Stripe's largest page.
	pageSize = 100
	// MaxTypes is the most event types one listing can filter on.
	MaxTypes = 20
)

// Event is one event as listed by Stripe.
type Event struct {
	ID   string
	Type string
	// Account is the connected account the event belongs to: the event's
	// own "account" field, else the account it was listed on; empty for a
	// platform event.
	Account  string
	Created  time.Time // UTC
	Livemode bool
	// Raw is the event object's JSON exactly as Stripe sent it in the list.
	Raw []byte
}

// Events calls fn for each event created at or after since (none when
// since is zero), of one of types (any type when types is empty; at most
// MaxTypes), newest first, as Stripe lists them: GET /v1/events by pages of
// 100, with the Stripe-Account header when account is not empty, on the
// platform otherwise. Stripe keeps events for 30 days. An error from fn
// stops the listing and is returned as it is.
func (c *Client) Events(ctx context.Context, account string, since time.Time, types []string, fn func(e Event) error) error {
	r := request{account: account, onBehalf: true, path: "/v1/events"}
	if len(types) > MaxTypes {
		return fmt.Errorf("stripe api: %s: %d event types, Stripe filters on at most %d", r.endpoint(), len(types), MaxTypes)
	}
	if !since.IsZero() {
		r.query = append(r.query, param{"created[gte]", strconv.FormatInt(since.Unix(), 10)})
	}
	for _, t := range types {
		r.query = append(r.query, param{"types[]", t})
	}
	return c.list(ctx, r, func(raw json.RawMessage) error {
		var e struct {
			ID       string `json:"id"`
			Object   string `json:"object"`
			Type     string `json:"type"`
			Account  string `json:"account"`
			Created  int64  `json:"created"`
			Livemode bool   `json:"livemode"`
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.ID == "" || e.Type == "" || (e.Object != "" && e.Object != "event") {
			return c.malformed(r, "a listed item is not an event")
		}
		return fn(Event{
			ID:       e.ID,
			Type:     e.Type,
			Account:  cmp.Or(e.Account, account),
			Created:  time.Unix(e.Created, 0).UTC(),
			Livemode: e.Livemode,
			Raw:      raw,
		})
	})
}

// Accounts calls fn with the id of each connected account of the platform
// (GET /v1/accounts by pages of 100), newest first. An error from fn stops
// the listing and is returned as it is.
func (c *Client) Accounts(ctx context.Context, fn func(id string) error) error {
	r := request{path: "/v1/accounts"}
	return c.list(ctx, r, func(raw json.RawMessage) error {
		var a struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(raw, &a); err != nil || a.ID == "" {
			return c.malformed(r, "a listed item is not an account")
		}
		return fn(a.ID)
	})
}

// Account fetches the connected account id (GET /v1/accounts/{id}), its
// capabilities and requirements included. The answer's JSON, as Stripe sent
// it, is in the result's LastResponse.RawJSON. A deleted or unknown account
// is an *Error whose NotFound is true.
func (c *Client) Account(ctx context.Context, id string) (*stripe.Account, error) {
	r := request{account: id, path: stripe.FormatURLPath("/v1/accounts/%s", id)}
	if id == "" {
		return nil, errors.New("stripe api: GET /v1/accounts/{id}: empty account id")
	}
	a := &stripe.Account{}
	if err := c.get(ctx, r, a); err != nil {
		return nil, err
	}
	if a.ID == "" {
		return nil, c.malformed(r, "the answer is not an account")
	}
	return a, nil
}

// ExternalAccounts calls fn for each bank account and card of the connected
// account (GET /v1/accounts/{id}/external_accounts by pages of 100) with its
// "object" ("bank_account" or "card") and its JSON as Stripe sent it. An
// error from fn stops the listing and is returned as it is.
func (c *Client) ExternalAccounts(ctx context.Context, account string, fn func(object string, raw []byte) error) error {
	r := request{account: account, path: stripe.FormatURLPath("/v1/accounts/%s/external_accounts", account)}
	if account == "" {
		return errors.New("stripe api: GET /v1/accounts/{id}/external_accounts: empty account id")
	}
	return c.list(ctx, r, func(raw json.RawMessage) error {
		var x struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		}
		if err := json.Unmarshal(raw, &x); err != nil || x.ID == "" || x.Object == "" {
			return c.malformed(r, "a listed item is not an external account")
		}
		return fn(x.Object, raw)
	})
}

// page is one page of a Stripe list, its items kept as they came.
type page struct {
	stripe.APIResource
	Object  string            `json:"object"`
	Data    []json.RawMessage `json:"data"`
	HasMore bool              `json:"has_more"`
}

// list pages through the list r with starting_after (newest first, as
// Stripe lists), calling fn for each item.
func (c *Client) list(ctx context.Context, r request, fn func(raw json.RawMessage) error) error {
	base := append(r.query[:len(r.query):len(r.query)], param{"limit", strconv.Itoa(pageSize)})
	after := ""
	for {
		r.query = base
		if after != "" {
			r.query = append(base[:len(base):len(base)], param{"starting_after", after})
		}
		var p page
		if err := c.get(ctx, r, &p); err != nil {
			return err
		}
		if p.Object != "list" {
			return c.malformed(r, "the answer is not a list")
		}
		for _, raw := range p.Data {
			if err := fn(raw); err != nil {
				return err
			}
		}
		if !p.HasMore || len(p.Data) == 0 {
			return nil
		}
		var last struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(p.Data[len(p.Data)-1], &last); err != nil || last.ID == "" {
			return c.malformed(r, "the last item of a page has no id")
		}
		after = last.ID
		if err := ctx.Err(); err != nil {
			return c.newError(r, &tally{}, err)
		}
	}
}
