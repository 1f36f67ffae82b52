package console

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stripe-webhooks/pkg/payload"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/internal/testkit"
)

var (
	eventLink = regexp.MustCompile(`href="/events/(evt_[^"?]+)"`)
	olderLink = regexp.MustCompile(`href="([^"]+)" rel="next"`)
)

// consoleRow is an event stored directly, in the state a test needs.
type consoleRow struct {
	id, typ, account string
	created          time.Time
	status           string // waiting, failing, dead, processed
}

func insertConsoleRows(t *testing.T, b *testkit.Backend, rows ...consoleRow) {
	t.Helper()
	for _, r := range rows {
		raw := fmt.Sprintf(`{"id":%q,"type":%q,"account":%q,"created":%d,"data":{"object":{}}}`, r.id, r.typ, r.account, r.created.Unix())
		var processed bool
		var errMsg, deadAt any
		switch r.status {
		case "processed":
			processed = true
		case "failing":
			errMsg = "handler failed"
		case "dead":
			errMsg, deadAt = "handler failed", r.created
		}
		// As the insert path stores them: keyed by Stripe id and `created`,
		// the payload compressed, the account in its own column too.
		err := b.Store.DB().Exec(`INSERT INTO webhook_events
			(id, stripe_event_id, event_type, payload, stripe_account_id, created_at, received_at, processed, error, dead_at)
			VALUES (?, ?, ?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?)`,
			store.EventKey(r.created, r.id), r.id, r.typ, payload.Encode([]byte(raw)), r.account, r.created.UTC(), r.created.UTC(),
			processed, errMsg, deadAt).Error
		if err != nil {
			t.Fatal(err)
		}
	}
	b.SyncPending(t)
}

// consoleGet fetches path from the console, with the test login unless
// noLogin, and returns the response (body read) and its body.
func consoleGet(t *testing.T, ui *testUI, path string, noLogin bool) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ui.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !noLogin {
		req.SetBasicAuth("ops", "s3cret")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func eventIDs(body string) []string {
	var ids []string
	for _, m := range eventLink.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func TestConsoleNeedsLoginAndSetsHeaders(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	base := time.Now().UTC().Add(-time.Hour)
	insertConsoleRows(t, b, consoleRow{"evt_login", "account.updated", "acct_login", base, "processed"})
	paths := map[string]int{
		"/events":                   http.StatusOK,
		"/events?status=dead":       http.StatusOK,
		"/events/evt_login":         http.StatusOK,
		"/events/evt_unknown":       http.StatusNotFound,
		"/accounts/acct_login":      http.StatusOK,
		"/accounts/acct_unknown":    http.StatusNotFound,
		"/console/console.css":      http.StatusOK,
		"/events?status=nonsense":   http.StatusBadRequest,
		"/events?before=not-cursor": http.StatusBadRequest,
	}
	for path, want := range paths {
		resp, body := consoleGet(t, ui, path, true)
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "evt_login") {
			t.Errorf("GET %s without a login: %d %q, want 401 and no content", path, resp.StatusCode, body)
		}
		resp, _ = consoleGet(t, ui, path, false)
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != csp {
			t.Errorf("GET %s: Content-Security-Policy %q, want %q", path, got, csp)
		}
		if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("GET %s: X-Frame-Options %q, want DENY", path, got)
		}
	}
	resp, body := consoleGet(t, ui, "/console/console.css", false)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/css") || !strings.Contains(body, "table") {
		t.Errorf("style sheet: Content-Type %q, body %.40q", ct, body)
	}
	// The job UI is still served behind the console's routes, and the
	// console links to it.
	if resp, body := consoleGet(t, ui, "/queues", false); resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "[") {
		t.Errorf("GET /queues: %d %.60q", resp.StatusCode, body)
	}
	if _, body := consoleGet(t, ui, "/events", false); !strings.Contains(body, `<a href="/">Jobs</a>`) {
		t.Error("events page has no link to the job UI")
	}
}

func TestConsoleEventFilters(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	insertConsoleRows(t, b,
		consoleRow{"evt_f1", "account.updated", "acct_a", base.Add(1 * time.Minute), "waiting"},
		consoleRow{"evt_f2", "account.updated", "acct_b", base.Add(2 * time.Minute), "failing"},
		consoleRow{"evt_f3", "payout.paid", "acct_a", base.Add(3 * time.Minute), "dead"},
		consoleRow{"evt_f4", "payout.paid", "acct_b", base.Add(4 * time.Minute), "processed"},
		consoleRow{"evt_f5", "capability.updated", "acct_a", base.Add(5 * time.Minute), "processed"},
	)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"evt_f5", "evt_f4", "evt_f3", "evt_f2", "evt_f1"}},
		{"status=waiting", []string{"evt_f1"}},
		{"status=failing", []string{"evt_f2"}},
		{"status=dead", []string{"evt_f3"}},
		{"status=processed", []string{"evt_f5", "evt_f4"}},
		{"type=payout.paid", []string{"evt_f4", "evt_f3"}},
		{"account=acct_a", []string{"evt_f5", "evt_f3", "evt_f1"}},
		{"id=evt_f2", []string{"evt_f2"}},
		{"id=evt_f", nil},
		{"from=2025-03-01T12:02", []string{"evt_f5", "evt_f4", "evt_f3", "evt_f2"}},
		{"to=2025-03-01T12:03:00Z", []string{"evt_f2", "evt_f1"}},
		{"from=2025-03-01T12:02&to=2025-03-01T12:04", []string{"evt_f3", "evt_f2"}},
		{"status=processed&account=acct_b&type=payout.paid", []string{"evt_f4"}},
	} {
		resp, body := consoleGet(t, ui, "/events?"+tc.query, false)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%q: status %d: %s", tc.query, resp.StatusCode, body)
			continue
		}
		if diff := cmp.Diff(tc.want, eventIDs(body)); diff != "" {
			t.Errorf("/events?%s (-want +got):\n%s", tc.query, diff)
		}
	}
}

// Following the Older links visits every event once, newest first, also
// when events share a created_at and new events arrive between pages.
func TestConsoleKeysetPaging(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var rows []consoleRow
	for i := range 23 {
		// Pairs of events share a second (Stripe's `created`): the id breaks the tie.
		rows = append(rows, consoleRow{fmt.Sprintf("evt_page_%02d", i), "account.updated", "acct_page", base.Add(time.Duration(i/2) * time.Second), "processed"})
	}
	insertConsoleRows(t, b, rows...)
	for _, start := range []string{"/events?limit=5", "/accounts/acct_page?limit=5"} {
		var ordered []struct{ StripeEventID string }
		// Newest first: ids order events by their Stripe `created`.
		if err := b.Store.DB().Raw("SELECT stripe_event_id FROM webhook_events ORDER BY id DESC").Scan(&ordered).Error; err != nil {
			t.Fatal(err)
		}
		want := make([]string, 0, len(ordered))
		for _, r := range ordered {
			want = append(want, r.StripeEventID)
		}
		var got []string
		path, pages := start, 0
		for path != "" {
			resp, body := consoleGet(t, ui, path, false)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
			}
			got = append(got, eventIDs(body)...)
			pages++
			// A newer event arrives between pages: it is not on a later page.
			insertConsoleRows(t, b, consoleRow{fmt.Sprintf("evt_new_%s_%d", strings.Split(start, "?")[0][1:2], pages), "account.updated", "acct_page", time.Now().UTC(), "waiting"})
			path = ""
			if m := olderLink.FindStringSubmatch(body); m != nil {
				path = html.UnescapeString(m[1])
				if u, err := url.Parse(path); err != nil || u.Query().Get("before") == "" {
					t.Fatalf("older link %q has no cursor", path)
				}
			}
		}
		if wantPages := len(want)/5 + 1; pages != wantPages {
			t.Errorf("%s: %d pages, want %d", start, pages, wantPages)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: events across pages (-want +got):\n%s", start, diff)
		}
	}
}

func TestConsoleEventPage(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	payload := []byte(`{"id":"evt_xss","type":"account.updated","account":"acct_xss","created":1700000000,"data":{"object":{"id":"acct_xss","business_profile":{"name":"<script>alert(1)</script>"}}}}`)
	b.StoreOnly(t, payload)
	if err := b.Store.DB().Exec(`UPDATE webhook_events SET error = 'boom <b>', retry_count = 3,
		next_attempt_at = '2030-01-02 03:04:05' WHERE stripe_event_id = 'evt_xss'`).Error; err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	resp, body := consoleGet(t, ui, "/events/evt_xss", false)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "<b>") {
		t.Errorf("page holds unescaped markup from the event:\n%s", body)
	}
	for _, want := range []string{
		"&lt;script&gt;alert(1)&lt;/script&gt;",          // the payload, escaped
		"\n  &#34;type&#34;: &#34;account.updated&#34;,", // and pretty-printed
		"boom &lt;b&gt;",
		"<dt>Retry count</dt><dd>3</dd>",
		"<dt>Next attempt</dt><dd>2030-01-02 03:04:05.000 UTC</dd>",
		"<dt>Status</dt><dd>failing</dd>",
		`<a href="/accounts/acct_xss">acct_xss</a>`,
		`<dt>Processed</dt><dd>—</dd>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("event page lacks %q:\n%s", want, body)
		}
	}
	if resp, _ := consoleGet(t, ui, "/events/evt_missing", false); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown event: %d, want 404", resp.StatusCode)
	}
}

func TestConsoleAccountPage(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	db := b.Store.DB()
	for _, q := range []string{
		`INSERT INTO stripe_connected_accounts (stripe_account_id, charges_enabled, payouts_enabled, details_submitted,
			requirements, capabilities, capabilities_event_created, deauthorized_at, created_at, updated_at)
		 VALUES ('acct_page', true, false, true, '{"currently_due":["external_account"]}',
			'{"card_payments":"active","transfers":"pending"}', '{"card_payments":1700000000,"transfers":1700000300}',
			'2025-01-02 03:04:05', now(), now())`,
		`INSERT INTO stripe_external_accounts (stripe_external_account_id, stripe_account_id, object, last4, bank_name,
			currency, status, default_for_currency, created_at, updated_at)
		 VALUES ('ba_page', 'acct_page', 'bank_account', '6789', 'STRIPE TEST BANK', 'usd', 'new', true, now(), now())`,
	} {
		if err := db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().UTC().Add(-time.Hour)
	insertConsoleRows(t, b,
		consoleRow{"evt_acct_1", "account.updated", "acct_page", base, "processed"},
		consoleRow{"evt_acct_2", "capability.updated", "acct_page", base.Add(time.Minute), "processed"},
		consoleRow{"evt_other", "account.updated", "acct_other", base.Add(2 * time.Minute), "processed"},
	)
	resp, body := consoleGet(t, ui, "/accounts/acct_page", false)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		"<dt>Charges enabled</dt><dd>true</dd>",
		"<dt>Payouts enabled</dt><dd>false</dd>",
		"<dt>Details submitted</dt><dd>true</dd>",
		"<dt>Deauthorized</dt><dd>2025-01-02 03:04:05.000 UTC</dd>",
		"&#34;currently_due&#34;",
		"<td>card_payments</td><td>active</td><td>2023-11-14 22:13:20.000 UTC</td>",
		"<td>transfers</td><td>pending</td><td>2023-11-14 22:18:20.000 UTC</td>",
		"•••• 6789", "STRIPE TEST BANK",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("account page lacks %q:\n%s", want, body)
		}
	}
	if diff := cmp.Diff([]string{"evt_acct_2", "evt_acct_1"}, eventIDs(body)); diff != "" {
		t.Errorf("account's events (-want +got):\n%s", diff)
	}
	// An account known only from its events still has a page.
	resp, body = consoleGet(t, ui, "/accounts/acct_other", false)
	if resp.StatusCode != http.StatusOK || !slices.Equal(eventIDs(body), []string{"evt_other"}) {
		t.Errorf("account with events only: %d %v", resp.StatusCode, eventIDs(body))
	}
}
