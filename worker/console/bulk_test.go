package console

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/worker/internal/testkit"
)

// consolePostForm posts form to path with the test login and the given
// Sec-Fetch-Site, and returns the response (body read) and its body.
func consolePostForm(t *testing.T, ui *testUI, path string, form url.Values, site string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ui.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("ops", "s3cret")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if site != "" {
		req.Header.Set("Sec-Fetch-Site", site)
	}
	resp, err := (&http.Client{CheckRedirect: noRedirects}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// bulkLogLines are the log lines of bulk replays.
func bulkLogLines(ui *testUI) []string {
	var out []string
	for _, l := range strings.Split(ui.logs.String(), "\n") {
		if strings.Contains(l, "console action") && strings.Contains(l, "replay_bulk") {
			out = append(out, l)
		}
	}
	return out
}

func TestConsoleBulkReplay(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	now := time.Now().UTC()
	// Types without a handler: a replay marks them processed.
	insertConsoleRows(t, b,
		consoleRow{"evt_bd1", "console.one", "acct_bulk", now.Add(-6 * time.Minute), "dead"},
		consoleRow{"evt_bd2", "console.two", "acct_bulk", now.Add(-5 * time.Minute), "dead"},
		consoleRow{"evt_bf1", "console.one", "acct_bulk", now.Add(-4 * time.Minute), "failing"},
		consoleRow{"evt_bf2", "console.two", "acct_bulk", now.Add(-3 * time.Minute), "failing"},
		consoleRow{"evt_bw1", "console.one", "acct_bulk", now.Add(-2 * time.Minute), "waiting"},
		consoleRow{"evt_bp1", "console.one", "acct_bulk", now.Add(-1 * time.Minute), "processed"},
	)
	checkBulkOffered(t, ui)
	checkBulkConfirmation(t, ui)
	wantStates(t, b, "after the confirmation pages", map[string]string{"evt_bd1": "dead", "evt_bd2": "dead", "evt_bf1": "failing", "evt_bf2": "failing"})
	checkBulkRefused(t, ui)
	wantStates(t, b, "after refused replays", map[string]string{"evt_bd1": "dead", "evt_bd2": "dead", "evt_bf1": "failing", "evt_bf2": "failing", "evt_bw1": "waiting"})
	if lines := bulkLogLines(ui); len(lines) != 0 {
		t.Errorf("refused bulk replays were logged as actions: %q", lines)
	}

	// The POST replays exactly the filter's events.
	resp, body := consolePostForm(t, ui, "/events/replay", url.Values{"status": {"dead"}, "type": {"console.one"}}, "same-origin")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Replayed 1, failed 0, of 1.") {
		t.Errorf("POST bulk replay dead console.one: %d\n%s", resp.StatusCode, body)
	}
	wantStates(t, b, "after replaying dead console.one", map[string]string{"evt_bd1": "processed", "evt_bd2": "dead", "evt_bf1": "failing", "evt_bf2": "failing", "evt_bw1": "waiting", "evt_bp1": "processed"})
	lines := bulkLogLines(ui)
	if len(lines) != 1 || !strings.Contains(lines[0], "ops") || !strings.Contains(lines[0], "evt_bd1") || strings.Contains(lines[0], "evt_bd2") {
		t.Errorf("bulk replay log lines %q, want one with the user, action and only evt_bd1", lines)
	}

	resp, body = consolePostForm(t, ui, "/events/replay", url.Values{"status": {"failing"}}, "same-origin")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Replayed 2, failed 0, of 2.") {
		t.Errorf("POST bulk replay failing: %d\n%s", resp.StatusCode, body)
	}
	wantStates(t, b, "after replaying failing", map[string]string{"evt_bd2": "dead", "evt_bf1": "processed", "evt_bf2": "processed", "evt_bw1": "waiting"})
	lines = bulkLogLines(ui)
	if len(lines) != 2 || !strings.Contains(lines[1], "evt_bf1,evt_bf2") && !strings.Contains(lines[1], "evt_bf2,evt_bf1") {
		t.Errorf("bulk replay log lines %q, want a second with evt_bf1 and evt_bf2", lines)
	}
	if strings.Contains(ui.logs.String(), `"data"`) || strings.Contains(ui.logs.String(), "data:") {
		t.Error("the log holds a payload")
	}
}

// wantStates checks the state of each event of want.
func wantStates(t *testing.T, b *testkit.Backend, step string, want map[string]string) {
	t.Helper()
	for id, w := range want {
		var got string
		b.Store.DB().Raw(`SELECT CASE WHEN processed THEN 'processed' WHEN dead_at IS NOT NULL THEN 'dead'
			WHEN error IS NOT NULL THEN 'failing' ELSE 'waiting' END FROM webhook_events WHERE stripe_event_id = ?`, id).Scan(&got)
		if got != w {
			t.Errorf("%s: %s is %s, want %s", step, id, got, w)
		}
	}
}

// checkBulkOffered: the list offers the bulk replay for failing and dead
// filters only, carrying the filter.
func checkBulkOffered(t *testing.T, ui *testUI) {
	t.Helper()
	if _, body := consoleGet(t, ui, "/events?status=dead&type=console.one", false); !strings.Contains(body, `<form method="get" action="/events/replay"`) ||
		!strings.Contains(body, `<input type="hidden" name="status" value="dead">`) || !strings.Contains(body, `<input type="hidden" name="type" value="console.one">`) ||
		!strings.Contains(body, "Replay these…") {
		t.Errorf("dead list has no bulk replay form with its filter:\n%s", body)
	}
	for _, path := range []string{"/events", "/events?status=waiting", "/events?status=processed"} {
		if _, body := consoleGet(t, ui, path, false); strings.Contains(body, "Replay these") {
			t.Errorf("GET %s offers a bulk replay", path)
		}
	}
}

// checkBulkConfirmation: the confirmation page counts the matching events,
// and replays nothing.
func checkBulkConfirmation(t *testing.T, ui *testUI) {
	t.Helper()
	for path, want := range map[string]string{
		"/events/replay?status=dead":                   "2 events will be replayed.",
		"/events/replay?status=failing":                "2 events will be replayed.",
		"/events/replay?status=dead&type=console.one":  "1 event will be replayed.",
		"/events/replay?status=failing&type=console.x": "No event matches this filter",
	} {
		resp, body := consoleGet(t, ui, path, false)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want %q:\n%s", path, resp.StatusCode, want, body)
		}
	}
	if _, body := consoleGet(t, ui, "/events/replay?status=dead&type=console.one", false); !strings.Contains(body, `<form method="post" action="/events/replay">`) ||
		!strings.Contains(body, `<input type="hidden" name="type" value="console.one">`) {
		t.Errorf("confirmation page has no POST form carrying the filter:\n%s", body)
	}
}

// checkBulkRefused: only failing and dead events are replayed in bulk; without
// a login or from another site, nothing happens.
func checkBulkRefused(t *testing.T, ui *testUI) {
	t.Helper()
	for _, status := range []string{"processed", "waiting", "", "nonsense"} {
		if resp, _ := consoleGet(t, ui, "/events/replay?status="+status, false); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET bulk replay status=%q: %d, want 400", status, resp.StatusCode)
		}
		if resp, _ := consolePostForm(t, ui, "/events/replay", url.Values{"status": {status}}, "same-origin"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST bulk replay status=%q: %d, want 400", status, resp.StatusCode)
		}
	}
	// Without a login or from another site, nothing happens.
	req, _ := http.NewRequest(http.MethodPost, ui.base+"/events/replay", strings.NewReader("status=failing"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST bulk replay without a login: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, _ := consolePostForm(t, ui, "/events/replay", url.Values{"status": {"failing"}}, "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST bulk replay: %d, want 403", resp.StatusCode)
	}
}

func TestConsoleBulkReplayLimit(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	// 1,005 dead events of a type without a handler, one a second, oldest first.
	err := b.Store.DB().Exec(`INSERT INTO webhook_events
		(id, stripe_event_id, event_type, payload, created_at, received_at, processed, error, dead_at)
		SELECT sw_event_id(floor(extract(epoch FROM t))::bigint, 'evt_lim' || lpad(i::text, 4, '0')), 'evt_lim' || lpad(i::text, 4, '0'), 'console.limit',
			convert_to(json_build_object('id', 'evt_lim' || lpad(i::text, 4, '0'), 'type', 'console.limit',
				'created', floor(extract(epoch FROM t))::bigint, 'data', json_build_object('object', '{}'::json))::text, 'UTF8'),
			t, t, false, 'handler failed', t
		FROM generate_series(1, 1005) AS i, LATERAL (SELECT (now() AT TIME ZONE 'UTC') - (1006 - i) * interval '1 second' AS t) AS s`).Error
	if err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	if _, body := consoleGet(t, ui, "/events/replay?status=dead", false); !strings.Contains(body, "More than 1000 events match this filter: only the newest 1000 will be replayed.") ||
		!strings.Contains(body, "Replay 1000 events") {
		t.Errorf("confirmation page does not state the limit:\n%s", body)
	}
	resp, body := consolePostForm(t, ui, "/events/replay", url.Values{"status": {"dead"}}, "same-origin")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Replayed 1000, failed 0, of 1000.") {
		t.Fatalf("POST bulk replay of 1,005: %d\n%s", resp.StatusCode, body)
	}
	if n := b.Count(t, "event_type = 'console.limit' AND processed AND dead_at IS NULL"); n != 1000 {
		t.Errorf("%d events replayed, want 1000", n)
	}
	// The five oldest are left.
	if n := b.Count(t, "event_type = 'console.limit' AND NOT processed AND dead_at IS NOT NULL AND stripe_event_id <= 'evt_lim0005'"); n != 5 {
		t.Errorf("%d of the 5 oldest left dead, want 5", n)
	}
	// Logged in chunks of 100 ids, every id once.
	lines := bulkLogLines(ui)
	if len(lines) != 10 {
		t.Fatalf("%d bulk log lines, want 10", len(lines))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		if !strings.Contains(l, "ops") {
			t.Errorf("log line without the user: %s", l)
		}
		for i := 6; i <= 1005; i++ {
			if id := fmt.Sprintf("evt_lim%04d", i); strings.Contains(l, id) {
				seen[id] = true
			}
		}
	}
	if len(seen) != 1000 {
		t.Errorf("the log lines hold %d of the 1000 ids", len(seen))
	}
	// What is left is now at most 1,000: the page says how many.
	if _, body := consoleGet(t, ui, "/events/replay?status=dead", false); !strings.Contains(body, "5 events will be replayed.") {
		t.Errorf("confirmation page after the replay:\n%s", body)
	}
}
