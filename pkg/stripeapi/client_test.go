package stripeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stripe/stripe-go/v76"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/testenv"
)

// testKey is the key every scripted test sends; no output may contain it.
const testKey = "sk_test_51NotARealKeyButLongEnough0123456789"

// setup returns a client of the scripted server at base, with fast retries,
// and the buffer its logs (debug level) go to.
func setup(t *testing.T, base string, perSecond float64) (*Client, *testenv.Buffer) {
	t.Helper()
	logs := &testenv.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := New(config.StripeAPI{Key: testKey, Base: base, Rate: perSecond}, logger)
	c.backoffMin, c.backoffMax = time.Millisecond, 10*time.Millisecond
	c.backend.(*stripe.BackendImplementation).SetNetworkRetriesSleep(false)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client logs:\n%s", logs.String())
		}
	})
	return c, logs
}

// server is a scripted Stripe: handle answers each request, in order.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
}

func newServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testKey {
			t.Errorf("%s %s: Authorization header is not the key's", r.Method, r.URL.Path)
		}
		s.mu.Lock()
		s.requests = append(s.requests, r.Clone(context.Background()))
		s.mu.Unlock()
		handle(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) seen() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// listPage writes items[i:i+limit] after the item starting_after names,
// newest first as Stripe does.
func listPage(t *testing.T, w http.ResponseWriter, r *http.Request, url string, items []string) {
	t.Helper()
	q := r.URL.Query()
	if q.Get("limit") != "100" {
		t.Errorf("%s: limit=%q, want 100", r.URL.Path, q.Get("limit"))
	}
	start := 0
	if after := q.Get("starting_after"); after != "" {
		start = -1
		for i, raw := range items {
			var x struct{ ID string }
			_ = json.Unmarshal([]byte(raw), &x)
			if x.ID == after {
				start = i + 1
			}
		}
		if start < 0 {
			t.Errorf("%s: starting_after=%s is no listed id", r.URL.Path, after)
			http.Error(w, `{"error":{"type":"invalid_request_error","message":"no such object"}}`, http.StatusBadRequest)
			return
		}
	}
	end := min(start+100, len(items))
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"object":"list","url":%q,"has_more":%t,"data":[%s]}`, url, end < len(items), strings.Join(items[start:end], ","))
}

// eventJSON is an event as Stripe might send it, with spacing a
// re-encoding would not keep.
func eventJSON(i int, account string) string {
	acct := ""
	if account != "" {
		acct = fmt.Sprintf(`"account":  %q,`, account)
	}
	return fmt.Sprintf(`{"id": "evt_%04d", "object":"event", %s "type":"account.updated","created": %d,  "livemode":false,"data":{"object":{"id":"acct_x","metadata":{"n":"%d"}}}}`,
		i, acct, 1700000000+i, i)
}

func TestEventsPagesNewestFirst(t *testing.T) {
	t.Parallel()
	var events []string // newest first
	for i := 250; i >= 1; i-- {
		events = append(events, eventJSON(i, ""))
	}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		listPage(t, w, r, "/v1/events", events)
	})
	c, _ := setup(t, srv.URL, 1000)
	since := time.Unix(1700000000, 0)
	types := []string{"account.updated", "capability.updated"}

	for _, account := range []string{"acct_1Connected", ""} {
		var got []Event
		err := c.Events(context.Background(), account, since, types, func(e Event) error {
			got = append(got, e)
			return nil
		})
		if err != nil {
			t.Fatalf("Events(%q): %v", account, err)
		}
		if len(got) != len(events) {
			t.Fatalf("Events(%q): %d events, want %d", account, len(got), len(events))
		}
		for i, e := range got {
			if !bytes.Equal(e.Raw, []byte(events[i])) {
				t.Fatalf("event %d: Raw is not the listed bytes:\n got %s\nwant %s", i, e.Raw, events[i])
			}
		}
		want := Event{ID: "evt_0250", Type: "account.updated", Account: account, Created: time.Unix(1700000250, 0).UTC(), Raw: []byte(events[0])}
		if diff := cmp.Diff(want, got[0]); diff != "" {
			t.Errorf("Events(%q) first event (-want +got):\n%s", account, diff)
		}
	}

	reqs := srv.seen()
	if len(reqs) != 6 || c.Calls() != 6 {
		t.Fatalf("%d requests, Calls() = %d, want 3 pages per listing, 6 in all", len(reqs), c.Calls())
	}
	for i, r := range reqs {
		q := r.URL.Query()
		wantAccount := "acct_1Connected"
		if i >= 3 {
			wantAccount = ""
		}
		wantAfter := []string{"", "evt_0151", "evt_0051"}[i%3]
		if r.Method != http.MethodGet || r.URL.Path != "/v1/events" ||
			r.Header.Get("Stripe-Account") != wantAccount ||
			q.Get("created[gte]") != "1700000000" ||
			!slices.Equal(q["types[]"], types) ||
			q.Get("starting_after") != wantAfter || q.Has("ending_before") {
			t.Errorf("request %d: %s %s Stripe-Account=%q, want GET /v1/events Stripe-Account=%q created[gte]=1700000000 types[]=%v starting_after=%q",
				i, r.Method, r.URL, r.Header.Get("Stripe-Account"), wantAccount, types, wantAfter)
		}
	}
}

func TestEventsAccountFromTheEvent(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		listPage(t, w, r, "/v1/events", []string{eventJSON(1, "acct_FromEvent")})
	})
	c, _ := setup(t, srv.URL, 1000)
	var got []string
	err := c.Events(context.Background(), "", time.Time{}, nil, func(e Event) error {
		got = append(got, e.Account)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"acct_FromEvent"}) {
		t.Errorf("accounts %v, want the event's own", got)
	}
	q := srv.seen()[0].URL.Query()
	if q.Has("created[gte]") || q.Has("types[]") {
		t.Errorf("query %v: no since and no types must send no filter", q)
	}
}

func TestEventsRejectsMoreThan20Types(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { t.Error("no request expected") })
	c, _ := setup(t, srv.URL, 1000)
	types := make([]string, MaxTypes+1)
	for i := range types {
		types[i] = "type." + strconv.Itoa(i)
	}
	err := c.Events(context.Background(), "", time.Time{}, types, func(Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "at most 20") {
		t.Errorf("Events with 21 types: %v, want an error", err)
	}
}

func TestEventsStopsOnCallbackError(t *testing.T) {
	t.Parallel()
	var events []string
	for i := 300; i >= 1; i-- {
		events = append(events, eventJSON(i, ""))
	}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		listPage(t, w, r, "/v1/events", events)
	})
	c, _ := setup(t, srv.URL, 1000)
	stop := errors.New("stop")
	n := 0
	err := c.Events(context.Background(), "acct_1", time.Time{}, nil, func(Event) error {
		if n++; n == 150 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Errorf("Events: %v, want the callback's error as it is", err)
	}
	if got := len(srv.seen()); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}
}

func TestAccountsAndExternalAccounts(t *testing.T) {
	t.Parallel()
	var accounts []string
	for i := 130; i >= 1; i-- {
		accounts = append(accounts, fmt.Sprintf(`{"id":"acct_%04d","object":"account"}`, i))
	}
	var external []string
	for i := 120; i >= 1; i-- {
		if i%2 == 0 {
			external = append(external, fmt.Sprintf(`{"id":"ba_%04d","object":"bank_account","account":"acct_0007","last4":"6789","bank_name":"STRIPE TEST BANK","currency":"usd","status":"new","default_for_currency":true}`, i))
		} else {
			external = append(external, fmt.Sprintf(`{"id":"card_%04d","object":"card","account":"acct_0007","last4":"4242","brand":"Visa","currency":"usd"}`, i))
		}
	}
	account := `{"id":"acct_0007","object":"account","charges_enabled":true,"payouts_enabled":false,"details_submitted":true,"capabilities":{"card_payments":"active","transfers":"pending"},"requirements":{"currently_due":["external_account"],"disabled_reason":null}}`
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/accounts":
			listPage(t, w, r, r.URL.Path, accounts)
		case "/v1/accounts/acct_0007":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, account)
		case "/v1/accounts/acct_0007/external_accounts":
			listPage(t, w, r, r.URL.Path, external)
		default:
			t.Errorf("unexpected %s", r.URL.Path)
			http.NotFound(w, r)
		}
	})
	c, _ := setup(t, srv.URL, 1000)
	ctx := context.Background()

	var ids []string
	if err := c.Accounts(ctx, func(id string) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 130 || ids[0] != "acct_0130" || ids[129] != "acct_0001" {
		t.Errorf("Accounts: %d ids from %v to %v, want 130 from acct_0130 to acct_0001", len(ids), ids[0], ids[len(ids)-1])
	}

	a, err := c.Account(ctx, "acct_0007")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "acct_0007" || !a.ChargesEnabled || a.PayoutsEnabled || !a.DetailsSubmitted ||
		a.Capabilities == nil || a.Capabilities.CardPayments != stripe.AccountCapabilityStatusActive ||
		a.Capabilities.Transfers != stripe.AccountCapabilityStatusPending ||
		a.Requirements == nil || !slices.Equal(a.Requirements.CurrentlyDue, []string{"external_account"}) {
		t.Errorf("Account decoded as %+v", a)
	}
	if string(a.LastResponse.RawJSON) != account {
		t.Errorf("Account raw JSON %s, want %s", a.LastResponse.RawJSON, account)
	}

	var objects []string
	var raws [][]byte
	err = c.ExternalAccounts(ctx, "acct_0007", func(object string, raw []byte) error {
		objects = append(objects, object)
		raws = append(raws, raw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(objects) != 120 || objects[0] != "bank_account" || objects[1] != "card" {
		t.Errorf("ExternalAccounts: %d items starting %v, want 120 alternating bank_account, card", len(objects), objects[:2])
	}
	for i := range raws {
		if string(raws[i]) != external[i] {
			t.Fatalf("external account %d: raw %s, want %s", i, raws[i], external[i])
		}
	}

	// 2 pages of accounts, 1 account, 2 pages of external accounts; all on
	// the platform.
	reqs := srv.seen()
	if len(reqs) != 5 || c.Calls() != 5 {
		t.Errorf("%d requests, Calls() = %d, want 5", len(reqs), c.Calls())
	}
	for _, r := range reqs {
		if h := r.Header.Get("Stripe-Account"); h != "" {
			t.Errorf("%s sent Stripe-Account %q, want none", r.URL.Path, h)
		}
	}
	if after := reqs[1].URL.Query().Get("starting_after"); after != "acct_0031" {
		t.Errorf("second accounts page starting_after=%q, want acct_0031", after)
	}
}

// script answers the first len(answers) requests with them, then 200 with
// an empty list or account.
type answer struct {
	status int
	header map[string]string
	body   string
}

func scripted(t *testing.T, answers ...answer) *server {
	t.Helper()
	var n atomic.Int64
	return newServer(t, func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Request-Id", fmt.Sprintf("req_%d", i+1))
		if i < len(answers) {
			for k, v := range answers[i].header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(answers[i].status)
			fmt.Fprint(w, answers[i].body)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/accounts/") {
			fmt.Fprint(w, `{"id":"acct_1","object":"account"}`)
			return
		}
		fmt.Fprint(w, `{"object":"list","data":[],"has_more":false}`)
	})
}

const (
	rateLimited = `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many requests hit the API too quickly."}}`
	apiError    = `{"error":{"type":"api_error","message":"Something went wrong on Stripe's end."}}`
)

func TestRetries(t *testing.T) {
	t.Parallel()
	repeat := func(a answer, n int) []answer { return slices.Repeat([]answer{a}, n) }
	tests := []struct {
		name     string
		answers  []answer
		requests int
		// wantErr, when not 0, is the status the call fails with.
		wantErr  int
		wantCode string
		minTime  time.Duration
	}{
		{name: "429 then success", answers: []answer{{status: 429, body: rateLimited}}, requests: 2},
		{name: "429 with Retry-After then success", answers: []answer{{status: 429, header: map[string]string{"Retry-After": "1"}, body: rateLimited}}, requests: 2, minTime: 900 * time.Millisecond},
		{name: "429 lock timeout then success", answers: []answer{{status: 429, body: `{"error":{"type":"invalid_request_error","code":"lock_timeout","message":"locked"}}`}}, requests: 2},
		{name: "500 then success", answers: []answer{{status: 500, body: apiError}}, requests: 2},
		{name: "five 502 from a proxy then success", answers: repeat(answer{status: 502, body: "<html>bad gateway</html>"}, 5), requests: 6},
		{name: "persistent 500", answers: repeat(answer{status: 500, body: apiError}, 20), requests: 6, wantErr: 500},
		{name: "persistent 429", answers: repeat(answer{status: 429, body: rateLimited}, 20), requests: 6, wantErr: 429, wantCode: "rate_limit"},
		{name: "503 Stripe-Should-Retry false", answers: []answer{{status: 503, header: map[string]string{"Stripe-Should-Retry": "false"}, body: apiError}}, requests: 1, wantErr: 503},
		{name: "400 is not retried", answers: []answer{{status: 400, body: `{"error":{"type":"invalid_request_error","code":"parameter_invalid_integer","message":"Invalid integer"}}`}}, requests: 1, wantErr: 400, wantCode: "parameter_invalid_integer"},
		{name: "404 is not retried", answers: []answer{{status: 404, body: `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such account"}}`}}, requests: 1, wantErr: 404, wantCode: "resource_missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := scripted(t, tt.answers...)
			c, _ := setup(t, srv.URL, 1000)
			start := time.Now()
			err := c.Events(context.Background(), "acct_1Retry", time.Time{}, nil, func(Event) error { return nil })
			elapsed := time.Since(start)
			if got := len(srv.seen()); got != tt.requests || c.Calls() != int64(tt.requests) {
				t.Errorf("%d requests, Calls() = %d, want %d", got, c.Calls(), tt.requests)
			}
			if elapsed < tt.minTime {
				t.Errorf("took %v, want at least %v", elapsed, tt.minTime)
			}
			if tt.wantErr == 0 {
				if err != nil {
					t.Errorf("Events: %v, want success", err)
				}
				return
			}
			var apiErr *Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("Events: %v (%T), want an *Error", err, err)
			}
			want := &Error{Account: "acct_1Retry", Endpoint: "GET /v1/events", Status: tt.wantErr, Code: tt.wantCode,
				RequestID: fmt.Sprintf("req_%d", tt.requests), Requests: tt.requests}
			if diff := cmp.Diff(want, apiErr, cmpIgnore("Type", "Message")); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			for _, s := range []string{"acct_1Retry", "GET /v1/events", strconv.Itoa(tt.wantErr)} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
			if tt.wantErr == 404 && !apiErr.NotFound() {
				t.Errorf("NotFound() false on a 404")
			}
		})
	}
}

// A call refused because the platform's access to the connected account
// is revoked is told apart from a refused key, a missing permission and
// other failures; the platform's own calls are never "revoked".
func TestAccessRevoked(t *testing.T) {
	t.Parallel()
	const revokedMsg = "The provided key 'sk_test_51NotARealKeyButLongEnough0123456789' does not have access to account 'acct_1Gone' (or that account does not exist). Application access may have been revoked."
	body := func(typ, code, msg string) string {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"type": typ, "code": code, "message": msg}})
		return string(b)
	}
	tests := []struct {
		name    string
		account string
		answer  answer
		want    bool
	}{
		{"403 account_invalid", "acct_1Gone", answer{status: 403, body: body("invalid_request_error", "account_invalid", "No such account")}, true},
		{"401 with Stripe's revoked message", "acct_1Gone", answer{status: 401, body: body("invalid_request_error", "", revokedMsg)}, true},
		{"403 with Stripe's revoked message", "acct_1Gone", answer{status: 403, body: body("permission_error", "", revokedMsg)}, true},
		{"401 invalid key", "acct_1Gone", answer{status: 401, body: body("invalid_request_error", "", "Invalid API Key provided: sk_test_***6789")}, false},
		{"403 missing permission", "acct_1Gone", answer{status: 403, body: body("permission_error", "",
			"The provided key 'rk_test_***' does not have the required permissions for this endpoint on account 'acct_1Gone'.")}, false},
		{"400 account_invalid", "acct_1Gone", answer{status: 400, body: body("invalid_request_error", "account_invalid", "Invalid account")}, false},
		{"404 resource_missing", "acct_1Gone", answer{status: 404, body: body("invalid_request_error", "resource_missing", "No such account")}, false},
		{"platform refused", "", answer{status: 403, body: body("invalid_request_error", "account_invalid", revokedMsg)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := setup(t, scripted(t, tt.answer).URL, 1000)
			err := c.Events(context.Background(), tt.account, time.Time{}, nil, func(Event) error { return nil })
			var apiErr *Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("Events: %v (%T), want an *Error", err, err)
			}
			if got := apiErr.AccessRevoked(); got != tt.want {
				t.Errorf("AccessRevoked() = %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
}

// cmpIgnore compares Errors but for the named fields.
func cmpIgnore(fields ...string) cmp.Option {
	return cmp.FilterPath(func(p cmp.Path) bool {
		sf, ok := p.Last().(cmp.StructField)
		return ok && (slices.Contains(fields, sf.Name()) || sf.Name() == "cause")
	}, cmp.Ignore())
}

func TestKeyNeverInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	// Servers and proxies that echo the Authorization header.
	tests := []answer{
		{status: 401, body: `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: ` + testKey + `. Authorization was 'Bearer ` + testKey + `'."}}`},
		{status: 401, header: map[string]string{"Content-Type": "text/html"}, body: "<html>Unauthorized: Authorization: Bearer " + testKey + "</html>"},
		{status: 403, body: `{"message":"forbidden for Bearer ` + testKey + `"}`},
		{status: 500, body: `{"error":{"type":"api_error","message":"boom for ` + testKey + `"}}`},
	}
	for i, a := range tests {
		t.Run(strconv.Itoa(a.status)+"_"+strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			srv := scripted(t, slices.Repeat([]answer{a}, 10)...)
			c, logs := setup(t, srv.URL, 1000)
			_, err := c.Account(context.Background(), "acct_1Key")
			if err == nil {
				t.Fatal("Account succeeded, want an error")
			}
			var apiErr *Error
			if !errors.As(err, &apiErr) || apiErr.Status != a.status || apiErr.Account != "acct_1Key" || apiErr.Endpoint != "GET /v1/accounts/acct_1Key" {
				t.Errorf("error %#v, want status %d for acct_1Key on GET /v1/accounts/acct_1Key", err, a.status)
			}
			outputs := map[string]string{
				"Error()": err.Error(),
				"%+v":     fmt.Sprintf("%+v", err),
				"%#v":     fmt.Sprintf("%#v", err),
				"logs":    logs.String(),
				"client":  fmt.Sprintf("%v %+v %s", c, c, slog.Any("client", c)),
			}
			if u := errors.Unwrap(err); u != nil {
				outputs["Unwrap"] = u.Error()
			}
			for name, out := range outputs {
				for _, secret := range []string{testKey, "Bearer", "sk_test_"} {
					if strings.Contains(out, secret) {
						t.Errorf("%s contains %q: %s", name, secret, out)
					}
				}
			}
			if !strings.Contains(logs.String(), "stripe-go") {
				t.Errorf("logs hold no stripe-go line at debug level:\n%s", logs)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Invalid API Key provided: sk_live_51Habc123":  "Invalid API Key provided: [redacted]",
		"Authorization was 'Bearer rk_test_abc'.":      "Authorization was '[redacted]'.",
		"key rk_51H8BHpCiKTq3FSi6wAmeQQUXhb9 leaked":   "key [redacted] leaked",
		"Invalid API Key provided: sk_test_****1234":   "Invalid API Key provided: sk_test_****1234",
		"the configured key " + testKey[3:] + " is ok": "the configured key " + testKey[3:] + " is ok",
		"no such account: acct_1Nv0FGQ9RKHgCVdK":       "no such account: acct_1Nv0FGQ9RKHgCVdK",
	} {
		if got := redact(in, testKey); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
	if got := redact("odd key: s3cr3t-value-no-prefix", "s3cr3t-value-no-prefix"); got != "odd key: [redacted]" {
		t.Errorf("the configured key itself is kept: %q", got)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	srv := scripted(t)
	c, _ := setup(t, srv.URL, 50)
	// 25 calls from 5 goroutines share one limiter with a burst of 1: the
	// last starts 24/50 s after the first.
	start := time.Now()
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			for range 5 {
				if _, err := c.Account(context.Background(), "acct_1"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if elapsed < 450*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("25 calls at 50/s took %v, want about 480ms", elapsed)
	}
	if c.Calls() != 25 {
		t.Errorf("Calls() = %d, want 25", c.Calls())
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	endless := func(w http.ResponseWriter, r *http.Request) {
		// Every page is full and says there is more.
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Query().Get("starting_after"), "evt_"))
		items := make([]string, 100)
		for i := range items {
			items[i] = eventJSON(n+i+1, "")
		}
		fmt.Fprintf(w, `{"object":"list","has_more":true,"data":[%s]}`, strings.Join(items, ","))
	}

	t.Run("callback cancels paging", func(t *testing.T) {
		t.Parallel()
		srv := newServer(t, endless)
		c, _ := setup(t, srv.URL, 1000)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		n := 0
		err := c.Events(ctx, "acct_1", time.Time{}, nil, func(Event) error {
			if n++; n == 150 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Events: %v, want context.Canceled", err)
		}
		if got := len(srv.seen()); got != 2 {
			t.Errorf("%d pages requested, want 2", got)
		}
	})

	// Each case cancels 100ms into the call; the call must end well before
	// what it was waiting for.
	cases := []struct {
		name      string
		perSecond float64
		handle    func(w http.ResponseWriter, r *http.Request)
	}{
		{name: "waiting on the rate limiter", perSecond: 0.2, handle: endless},
		{name: "waiting out a Retry-After", perSecond: 1000, handle: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, rateLimited)
		}},
		{name: "waiting on a hung server", perSecond: 1000, handle: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tt.handle)
			c, _ := setup(t, srv.URL, tt.perSecond)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			err := c.Events(ctx, "acct_1", time.Time{}, nil, func(Event) error { return nil })
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("returned %v after the start, want soon after the cancellation at 100ms", elapsed)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Events: %v, want context.Canceled", err)
			}
			var apiErr *Error
			if !errors.As(err, &apiErr) || apiErr.Account != "acct_1" || apiErr.Endpoint != "GET /v1/events" {
				t.Errorf("error %v does not name the account and endpoint", err)
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	c, _ := setup(t, srv.URL, 1000)
	c.timeout = 100 * time.Millisecond
	start := time.Now()
	_, err := c.Account(context.Background(), "acct_1Slow")
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != 0 || apiErr.Account != "acct_1Slow" {
		t.Fatalf("Account: %v, want an *Error without status for acct_1Slow", err)
	}
	// stripe-go retries a request that timed out, twice.
	if elapsed := time.Since(start); elapsed > 3*time.Second || apiErr.Requests != 3 {
		t.Errorf("%d requests in %v, want 3 of 100ms each", apiErr.Requests, elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
}

func TestMalformedAnswers(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"object":"list","has_more":false,"data":[{"id":"evt_1","object":"charge","type":"x"}]}`,
		`{"object":"list","has_more":true,"data":[{"object":"event","type":"x"}]}`,
		`{"object":"account","id":"acct_1"}`,
		`not json`,
	} {
		srv := scripted(t, answer{status: 200, body: body})
		c, _ := setup(t, srv.URL, 1000)
		err := c.Events(context.Background(), "acct_1", time.Time{}, nil, func(Event) error { return nil })
		var apiErr *Error
		if !errors.As(err, &apiErr) || apiErr.Endpoint != "GET /v1/events" || apiErr.Account != "acct_1" {
			t.Errorf("answer %s: %v, want an *Error naming the account and endpoint", body, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	c := New(config.StripeAPI{Key: testKey}, nil)
	for retry, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 40: 30 * time.Second} {
		for range 20 {
			if got := c.backoff(retry, -1); got < want/2 || got > want {
				t.Errorf("backoff(%d) = %v, want in [%v, %v]", retry, got, want/2, want)
			}
		}
	}
	if got := c.backoff(1, 3*time.Second); got != 3*time.Second {
		t.Errorf("backoff with Retry-After 3s = %v", got)
	}
	if got := c.backoff(1, time.Hour); got != maxRetryAfter {
		t.Errorf("backoff with Retry-After 1h = %v, want the cap %v", got, maxRetryAfter)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              -1,
		"2":                             2 * time.Second,
		"0.5":                           500 * time.Millisecond,
		"-1":                            -1,
		"soon":                          -1,
		"Fri, 02 Jan 2026 03:04:15 GMT": 10 * time.Second,
		"Fri, 02 Jan 2026 03:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	c := New(config.StripeAPI{Key: testKey}, nil)
	if c.base != DefaultBase || float64(c.limiter.Limit()) != DefaultRate || c.limiter.Burst() != 1 {
		t.Errorf("New with zero Base and Rate: %v", c)
	}
	if got := fmt.Sprint(c); strings.Contains(got, testKey) {
		t.Errorf("the client prints its key: %s", got)
	}
}
