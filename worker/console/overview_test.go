package console

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/worker/internal/testkit"
)

var svgElement = regexp.MustCompile(`(?s)<svg .*</svg>`)

func TestConsoleOverview(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	now := time.Now().UTC()
	insertConsoleRows(t, b,
		consoleRow{"evt_ov1", "account.updated", "acct_ov", now.Add(-3 * time.Hour), "waiting"},
		consoleRow{"evt_ov2", "account.updated", "acct_ov", now.Add(-2 * time.Hour), "waiting"},
		consoleRow{"evt_ov3", "account.updated", "acct_ov", now.Add(-time.Hour), "failing"},
		consoleRow{"evt_ov4", "payout.paid", "acct_ov", now.Add(-5 * time.Hour), "dead"},
		consoleRow{"evt_ov5", "payout.paid", "acct_ov", now.Add(-10 * time.Minute), "processed"},
		consoleRow{"evt_ov6", "payout.paid", "acct_ov", now.Add(-9 * time.Minute), "processed"},
		consoleRow{"evt_ov7", "payout.paid", "acct_ov", now.Add(-8 * time.Minute), "processed"},
	)
	db := b.Store.DB()
	if err := db.Exec(`UPDATE webhook_events SET processed_at = created_at + interval '1 second' WHERE processed`).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`INSERT INTO periodic_runs (name, last_run_at) VALUES ('sweeper', '2026-01-02 03:04:05'), ('retention', '2026-01-01 00:00:00')`).Error; err != nil {
		t.Fatal(err)
	}
	conn := b.Pool(t).Get()
	for i, id := range []string{"job_a", "job_b"} {
		if _, err := conn.Do("ZADD", queue.DeadKey(b.Namespace), i+1, id); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()

	if resp, body := consoleGet(t, ui, "/overview", true); resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "Waiting") {
		t.Errorf("GET /overview without a login: %d %q, want 401", resp.StatusCode, body)
	}
	resp, body := consoleGet(t, ui, "/overview", false)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /overview: %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != csp {
		t.Errorf("Content-Security-Policy %q", got)
	}
	for _, want := range []string{
		`<dt>Waiting</dt><dd><a href="/events?status=waiting">2</a></dd>`,
		`<dt>Failing</dt><dd><a href="/events?status=failing">1</a></dd>`,
		`<dt>Dead</dt><dd><a href="/events?status=dead">1</a></dd>`,
		`<dt>Processed</dt><dd><a href="/events?status=processed">3</a></dd>`,
		`<dt>Dead set (jobs)</dt><dd><a href="/dead_jobs">2</a></dd>`,
		`<dt>Last sweeper run</dt><dd>2026-01-02 03:04:05.000 UTC</dd>`,
		`<dt>Last retention run</dt><dd>2026-01-01 00:00:00.000 UTC</dd>`,
		`<dt>Oldest unprocessed (not dead)</dt><dd>3h0m`,
		`<a href="/overview">Overview</a>`,
		"highest minute: 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script") {
		t.Error("overview holds a script")
	}
	svg := svgElement.FindString(body)
	if svg == "" {
		t.Fatalf("overview has no SVG:\n%s", body)
	}
	// The chart is well-formed XML: a bar per minute with deliveries (all seven
	// stored in the last 24 hours) and the applications' line.
	dec := xml.NewDecoder(strings.NewReader(svg))
	elements := map[string]int{}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			elements[se.Name.Local]++
			if se.Name.Local == "svg" && se.Name.Space != "http://www.w3.org/2000/svg" {
				t.Errorf("svg namespace %q", se.Name.Space)
			}
		}
	}
	if elements["svg"] != 1 || elements["rect"] != 7 || elements["polyline"] != 1 {
		t.Errorf("SVG elements %v, want one svg, seven rects (one a minute with deliveries), one polyline", elements)
	}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func consolePost(t *testing.T, ui *testUI, path string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ui.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("ops", "s3cret")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{CheckRedirect: noRedirects}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestConsoleReplay(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	for _, acct := range []string{"acct_cr1", "acct_cr2"} {
		b.StoreOnly(t, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: acct,
			Mutate: testkit.Set("charges_enabled", true, "business_profile", map[string]any{"name": "PAYLOAD-MARKER"})}))
	}
	db := b.Store.DB()
	if err := db.Exec(`UPDATE webhook_events SET error = 'handler failed', retry_count = 2`).Error; err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	idOf := func(acct string) string {
		var id string
		db.Raw("SELECT stripe_event_id FROM webhook_events WHERE stripe_account_id = ?", acct).Scan(&id)
		return id
	}
	id1, id2 := idOf("acct_cr1"), idOf("acct_cr2")
	if id1 == "" || id2 == "" {
		t.Fatal("events not stored")
	}

	// The event page offers the replay as a form posting to this origin.
	if _, body := consoleGet(t, ui, "/events/"+id1, false); !strings.Contains(body, `<form method="post" action="/events/`+id1+`/replay">`) {
		t.Errorf("event page has no replay form:\n%s", body)
	}
	// A GET never replays.
	if resp, _ := consoleGet(t, ui, "/events/"+id1+"/replay", false); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET replay: %d, want 405", resp.StatusCode)
	}
	// Without a login, nothing happens.
	req, _ := http.NewRequest(http.MethodPost, ui.base+"/events/"+id1+"/replay", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST replay without a login: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	resp := consolePost(t, ui, "/events/"+id1+"/replay", map[string]string{"Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/events/"+id1+"?replay=applied" {
		t.Fatalf("POST replay: %d Location %q, want 303 to the event page", resp.StatusCode, resp.Header.Get("Location"))
	}
	a, err := b.Store.Account(context.Background(), "acct_cr1")
	if err != nil || !a.ChargesEnabled {
		t.Errorf("replay did not apply the event: %+v %v", a, err)
	}
	if n := b.Count(t, "stripe_event_id = '"+id1+"' AND processed AND error IS NULL"); n != 1 {
		t.Errorf("replayed event is not processed without error (%d rows)", n)
	}
	if _, body := consoleGet(t, ui, "/events/"+id1+"?replay=applied", false); !strings.Contains(body, "Replayed: the event was applied.") || !strings.Contains(body, "<dt>Status</dt><dd>processed</dd>") {
		t.Errorf("event page after replay:\n%s", body)
	}
	logs := ui.logs.String()
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "console action") && strings.Contains(l, id1) {
			line = l
		}
	}
	if line == "" || !strings.Contains(line, "ops") || !strings.Contains(line, "replay") {
		t.Errorf("no log line of the replay with user, action and event id:\n%s", logs)
	}
	if strings.Contains(logs, "PAYLOAD-MARKER") {
		t.Error("the log holds the payload")
	}

	// A cross-site POST is refused and changes nothing.
	resp = consolePost(t, ui, "/events/"+id2+"/replay", map[string]string{"Sec-Fetch-Site": "cross-site"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST replay: %d, want 403", resp.StatusCode)
	}
	if n := b.Count(t, "stripe_event_id = '"+id2+"' AND NOT processed AND error = 'handler failed' AND retry_count = 2"); n != 1 {
		t.Error("a refused cross-site replay changed the event")
	}
	if _, err := b.Store.Account(context.Background(), "acct_cr2"); err == nil {
		t.Error("a refused cross-site replay applied the event")
	}
	if strings.Contains(ui.logs.String(), id2) {
		t.Error("a refused cross-site replay was logged as an action")
	}

	// An unknown event is reported, not replayed.
	resp = consolePost(t, ui, "/events/evt_nope/replay", nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "?replay=notfound") {
		t.Errorf("replay of an unknown event: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// On a live deployment the console never replays a test-mode event: one
// replay says so (not "applied") and changes nothing, and a bulk replay
// counts it skipped.
func TestConsoleReplaySkipsTheExcludedMode(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	ui := startConsoleIn(t, b, config.Livemode{Mode: "live"})
	payload := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_cm_test", Account: "acct_cm_test",
		Mutate: testkit.Set("charges_enabled", true)}) // test mode, as Stripe's example events are
	if _, err := b.Store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: "evt_cm_test", EventType: "account.updated",
		Payload: payload, ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := b.Store.DB().Exec(`UPDATE webhook_events SET error = 'handler failed', retry_count = 1`).Error; err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	unchanged := func(when string) {
		t.Helper()
		if n := b.Count(t, "stripe_event_id = 'evt_cm_test' AND NOT processed AND error = 'handler failed'"); n != 1 {
			t.Errorf("%s: the test-mode event changed", when)
		}
		if _, err := b.Store.Account(context.Background(), "acct_cm_test"); err == nil {
			t.Errorf("%s: the test-mode event was applied", when)
		}
	}
	resp := consolePost(t, ui, "/events/evt_cm_test/replay", map[string]string{"Sec-Fetch-Site": "same-origin"})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/events/evt_cm_test?replay=mode" {
		t.Errorf("replay of a test-mode event on a live deployment: %d %q, want 303 to ?replay=mode", resp.StatusCode, loc)
	}
	unchanged("after one replay")
	form := url.Values{"status": {"failing"}}
	if resp, body := consolePostForm(t, ui, "/events/replay", form, "same-origin"); resp.StatusCode != http.StatusOK ||
		!strings.Contains(body, "Replayed 0, failed 0, not replayed 1 ") {
		t.Errorf("bulk replay of a test-mode event: %d\n%s", resp.StatusCode, body)
	}
	unchanged("after a bulk replay")
}
