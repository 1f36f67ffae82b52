package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeStripe is a scripted Stripe API: connected accounts, the events
// listed on each (by the Stripe-Account header), account objects and
// external accounts, with Stripe's list shapes and paging (newest first,
// starting_after, limit), created[gte] and types[] honoured.
type fakeStripe struct {
	t      *testing.T
	srv    *httptest.Server
	key    string
	calls  atomic.Int64
	mu     sync.Mutex
	events map[string][]fakeEvent // by account ("" is the platform)
	// accounts are the ids GET /v1/accounts lists; objects their JSON.
	accounts []string
	objects  map[string]json.RawMessage
	external map[string][]json.RawMessage
	// fail answers status to every request for that account (Stripe-Account
	// header or path), after failFirst requests have been answered so
	// (0: always).
	fail map[string]fakeFailure
	// requests are the accounts ("" for none) and paths of the requests
	// answered, in order.
	requests []fakeRequest
}

type fakeRequest struct {
	account, path string
	gte           int64 // created[gte] of an events listing
}

type fakeEvent struct {
	id      string
	typ     string
	created int64
	raw     json.RawMessage
}

type fakeFailure struct {
	status  int
	times   int // how many requests fail; 0: every one
	seen    int
	revoked bool // answered as Stripe refuses an account that deauthorized the platform
}

func newFakeStripe(t *testing.T, key string) *fakeStripe {
	f := &fakeStripe{t: t, key: key, events: map[string][]fakeEvent{}, objects: map[string]json.RawMessage{},
		external: map[string][]json.RawMessage{}, fail: map[string]fakeFailure{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// addEvent lists payload (a Stripe event's JSON) on account.
func (f *fakeStripe) addEvent(account string, payload []byte) {
	var e struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Created int64  `json:"created"`
	}
	if err := json.Unmarshal(payload, &e); err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events[account] = append(f.events[account], fakeEvent{id: e.ID, typ: e.Type, created: e.Created, raw: payload})
}

func (f *fakeStripe) failAccount(account string, status, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[account] = fakeFailure{status: status, times: times}
}

// revokeAccount answers every request for account as Stripe does once it
// has deauthorized the platform: 403 with code account_invalid, or 401
// with Stripe's message alone.
func (f *fakeStripe) revokeAccount(account string, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[account] = fakeFailure{status: status, revoked: true}
}

// requested returns the requests answered so far.
func (f *fakeStripe) requested() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *fakeStripe) heal(account string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.fail, account)
}

func (f *fakeStripe) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		writeStripeError(w, http.StatusUnauthorized, "invalid_request_error", "", "Invalid API Key provided")
		return
	}
	account := r.Header.Get("Stripe-Account")
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	if strings.HasPrefix(path, "accounts/") {
		account = strings.Split(path, "/")[1]
	}
	f.mu.Lock()
	gte, _ := strconv.ParseInt(r.URL.Query().Get("created[gte]"), 10, 64)
	f.requests = append(f.requests, fakeRequest{account: account, path: path, gte: gte})
	if fl, ok := f.fail[account]; ok && (fl.times == 0 || fl.seen < fl.times) {
		fl.seen++
		f.fail[account] = fl
		f.mu.Unlock()
		switch {
		case fl.revoked && fl.status == http.StatusForbidden:
			writeStripeError(w, fl.status, "invalid_request_error", "account_invalid", "The provided key 'rk_test_***' does not have access to account '"+account+"' (or that account does not exist). Application access may have been revoked.")
		case fl.revoked:
			writeStripeError(w, fl.status, "invalid_request_error", "", "The provided key 'rk_test_***' does not have access to account '"+account+"' (or that account does not exist). Application access may have been revoked.")
		case fl.status == http.StatusTooManyRequests:
			writeStripeError(w, fl.status, "invalid_request_error", "rate_limit", "Too many requests")
		default:
			writeStripeError(w, fl.status, "api_error", "", "Something went wrong")
		}
		return
	}
	defer f.mu.Unlock()
	q := r.URL.Query()
	switch {
	case path == "events":
		var items []fakeEvent
		types := q["types[]"]
		for _, e := range f.events[account] {
			if e.created >= gte && (len(types) == 0 || slices.Contains(types, e.typ)) {
				items = append(items, e)
			}
		}
		slices.SortFunc(items, func(a, b fakeEvent) int { // newest first
			if a.created != b.created {
				return int(b.created - a.created)
			}
			return strings.Compare(b.id, a.id)
		})
		raws := make([]json.RawMessage, len(items))
		ids := make([]string, len(items))
		for i, e := range items {
			raws[i], ids[i] = e.raw, e.id
		}
		writePage(w, q, "/v1/events", ids, raws)
	case path == "accounts":
		raws := make([]json.RawMessage, len(f.accounts))
		for i, id := range f.accounts {
			raws[i] = json.RawMessage(fmt.Sprintf(`{"id":%q,"object":"account"}`, id))
		}
		writePage(w, q, "/v1/accounts", f.accounts, raws)
	case strings.HasSuffix(path, "/external_accounts"):
		raws := f.external[account]
		ids := make([]string, len(raws))
		for i, raw := range raws {
			var x struct{ ID string }
			_ = json.Unmarshal(raw, &x)
			ids[i] = x.ID
		}
		writePage(w, q, "/v1/accounts/"+account+"/external_accounts", ids, raws)
	case strings.HasPrefix(path, "accounts/"):
		obj, ok := f.objects[account]
		if !ok {
			writeStripeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing", "No such account")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(obj)
	default:
		writeStripeError(w, http.StatusNotFound, "invalid_request_error", "", "Unrecognized request URL")
	}
}

// writePage answers one page of a list: limit items after starting_after.
func writePage(w http.ResponseWriter, q map[string][]string, url string, ids []string, raws []json.RawMessage) {
	limit := 10
	if l := q["limit"]; len(l) > 0 {
		limit, _ = strconv.Atoi(l[0])
	}
	start := 0
	if after := q["starting_after"]; len(after) > 0 {
		start = slices.Index(ids, after[0]) + 1
	}
	end := min(start+limit, len(raws))
	page := struct {
		Object  string            `json:"object"`
		URL     string            `json:"url"`
		HasMore bool              `json:"has_more"`
		Data    []json.RawMessage `json:"data"`
	}{"list", url, end < len(raws), raws[start:end]}
	if page.Data == nil {
		page.Data = []json.RawMessage{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}

func writeStripeError(w http.ResponseWriter, status int, typ, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_fake")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"type": typ, "code": code, "message": message}})
}
