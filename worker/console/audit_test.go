package console

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/store"
)

var auditUser = regexp.MustCompile(`<td><a href="/audit\?user=[^"]*">([^<]*)</a>`)

// /audit lists the audit log newest first, filters it by user and by
// action, pages it by keyset, links the events and folds long lists.
func TestConsoleAuditPage(t *testing.T) {
	t.Parallel()
	b, ui := startConsole(t)
	ctx := context.Background()
	many := make([]string, 8)
	for i := range many {
		many[i] = fmt.Sprintf("evt_many_%d", i)
	}
	failed := "nothing retried"
	for i, e := range []store.AuditEntry{
		{Username: "ana@example.com", Role: "operator", Action: "replay", Method: "POST", Path: "/events/evt_a/replay", StripeEventIDs: []string{"evt_a"}, Detail: "applied", Status: 303},
		{Username: "bo@example.com", Role: "operator", Action: "retry_dead_job", Method: "POST", Path: "/retry_dead_job/1/j1", JobIDs: []string{"j1"}, Status: 500, Error: &failed},
		{Username: "ana@example.com", Role: "operator", Action: "replay_bulk", Method: "POST", Path: "/events/replay", StripeEventIDs: many, Detail: "dead events: replayed 8", Status: 200},
	} {
		e.At = time.Now().Add(time.Duration(i-3) * time.Minute)
		if _, err := b.Store.InsertAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	users := func(path string) string {
		t.Helper()
		resp, body := consoleGet(t, ui, path, false)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, body)
		}
		var out []string
		for _, m := range auditUser.FindAllStringSubmatch(body, -1) {
			out = append(out, html.UnescapeString(m[1]))
		}
		return strings.Join(out, ",")
	}
	for path, want := range map[string]string{
		"/audit":                                     "ana@example.com,bo@example.com,ana@example.com",
		"/audit?user=ana%40example.com":              "ana@example.com,ana@example.com",
		"/audit?action=retry_dead_job":               "bo@example.com",
		"/audit?user=bo%40example.com&action=replay": "",
	} {
		if got := users(path); got != want {
			t.Errorf("GET %s lists %q, want %q", path, got, want)
		}
	}
	_, body := consoleGet(t, ui, "/audit", false)
	for _, want := range []string{`<a href="/events/evt_a">evt_a</a>`, `<a href="/events/evt_many_4">`, `<details><summary>3 more</summary>`,
		`<a href="/events/evt_many_7">`, `job j1`, `<pre class="error">nothing retried</pre>`, `<a href="/audit">Audit</a>`, `ops (operator)`} {
		if !strings.Contains(body, want) {
			t.Errorf("/audit lacks %s:\n%s", want, body)
		}
	}
	// Pages of one: newest, then older by the cursor.
	_, body = consoleGet(t, ui, "/audit?limit=1", false)
	older := olderLink.FindStringSubmatch(body)
	if older == nil {
		t.Fatalf("no older link on a full page:\n%s", body)
	}
	if got := users(html.UnescapeString(older[1])); got != "bo@example.com" {
		t.Errorf("second page lists %q", got)
	}
	if resp, _ := consoleGet(t, ui, "/audit?before=abc", false); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad cursor: %d, want 400", resp.StatusCode)
	}
}
