package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/console"
	"stripe-webhooks/worker/internal/access"
	"stripe-webhooks/worker/internal/testkit"
	"stripe-webhooks/worker/webui"
)

// proxyRoles is the environment of a web UI behind a proxy at trusted:
// group sre operates, group support views.
func proxyRoles(trusted string) map[string]string {
	return map[string]string{"WEBUI_AUTH": "proxy", "WEBUI_TRUSTED_PROXIES": trusted,
		"WEBUI_OPERATOR_GROUPS": "sre", "WEBUI_VIEWER_GROUPS": "support"}
}

// person is who a request claims to be, in the proxy's headers.
type person struct{ email, groups string }

var (
	viewer   = person{"vi@example.com", "everyone,support"}
	operator = person{"op@example.com", "sre"}
)

// uiDo sends method path (form as its body, if any) to ui as p, without
// following redirects, and returns the status and the body.
func uiDo(t *testing.T, ui *service, p person, method, path string, form url.Values) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, ui.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("X-Forwarded-Email", p.email)
	req.Header.Set("X-Forwarded-Groups", p.groups)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// changeRoute is one changing route of the web UI, how to call it on the
// table's state, and what an operator's call answers.
type changeRoute struct {
	pattern, action string
	path            func(dead map[string]int64) string
	form            url.Values
	okStatus        int
}

// changeRoutes are every changing route of the web UI: the console's and
// the job UI's. TestWebUIChangingRoutesAreAllInTheTable holds them to
// what the routers serve.
var changeRoutes = []changeRoute{
	{"POST /events/{id}/replay", access.ActionReplay, fixed("/events/evt_tbl_1/replay"), nil, http.StatusSeeOther},
	{"POST /events/replay", access.ActionReplayBulk, fixed("/events/replay"), url.Values{"status": {"dead"}}, http.StatusOK},
	{"POST /retry_dead_job/{died_at}/{job_id}", access.ActionRetryDeadJob, oneJob("retry_dead_job"), nil, http.StatusOK},
	{"POST /delete_dead_job/{died_at}/{job_id}", access.ActionDeleteDeadJob, oneJob("delete_dead_job"), nil, http.StatusOK},
	{"POST /retry_all_dead_jobs", access.ActionRetryAllDeadJobs, fixed("/retry_all_dead_jobs"), nil, http.StatusOK},
	{"POST /delete_all_dead_jobs", access.ActionDeleteAllDeadJobs, fixed("/delete_all_dead_jobs"), nil, http.StatusOK},
}

func fixed(path string) func(map[string]int64) string {
	return func(map[string]int64) string { return path }
}

// oneJob is the path of action on dead job job_tbl_1.
func oneJob(action string) func(map[string]int64) string {
	return func(dead map[string]int64) string { return fmt.Sprintf("/%s/%d/job_tbl_1", action, dead["job_tbl_1"]) }
}

// readPaths are a path for each of the console's GET routes, and the job
// UI's GET routes.
var (
	consoleReads = map[string]string{
		"GET /overview":            "/overview",
		"GET /events":              "/events?status=dead",
		"GET /events/{id}":         "/events/evt_tbl_1",
		"GET /events/replay":       "/events/replay?status=dead",
		"GET /events/{id}/replay":  "/events/evt_tbl_1/replay",
		"GET /accounts/{id}":       "/accounts/acct_tbl",
		"GET /audit":               "/audit",
		"GET /console/console.css": "/console/console.css",
		"GET /favicon.ico":         "/favicon.ico",
	}
	jobReads = []string{"/", "/work.js", "/queues", "/worker_pools", "/busy_workers", "/retry_jobs", "/scheduled_jobs", "/dead_jobs"}
)

// Every route the console registers is in consoleReads (GET) or
// changeRoutes, and so is every changing route of the job UI (whose own
// test holds them to gocraft/work's source): a new changing route fails
// here until the table calls it.
func TestWebUIChangingRoutesAreAllInTheTable(t *testing.T) {
	t.Parallel()
	c, err := console.New(console.Options{Logger: testkit.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	var inTable []string
	for _, r := range changeRoutes {
		inTable = append(inTable, r.pattern)
	}
	for _, p := range append(c.Patterns(), webui.ChangeRoutes()...) {
		method, _, _ := strings.Cut(p, " ")
		if _, read := consoleReads[p]; method == http.MethodGet && !read {
			t.Errorf("console route %s is not in consoleReads", p)
		}
		if method != http.MethodGet && !slices.Contains(inTable, p) {
			t.Errorf("changing route %s is not in changeRoutes", p)
		}
	}
	if len(c.Patterns()) != len(consoleReads)+2 {
		t.Errorf("console routes %v, want those of consoleReads and the two replays", c.Patterns())
	}
}

// tableBackend is a backend with two dead events (a type without a
// handler, so that a replay marks them processed) and two dead jobs.
func tableBackend(t *testing.T) *testkit.Backend {
	t.Helper()
	b := testkit.NewBackend(t)
	for _, id := range []string{"evt_tbl_1", "evt_tbl_2"} {
		p := fmt.Appendf(nil, `{"id":%q,"type":"table.test","account":"acct_tbl","created":%d,"data":{"object":{}}}`, id, time.Now().Unix())
		if _, err := b.Store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: id, EventType: "table.test", Payload: p, ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	resetTable(t, b)
	return b
}

// resetTable makes both events dead again and the dead set hold exactly
// job_tbl_1 and job_tbl_2, with nothing queued.
func resetTable(t *testing.T, b *testkit.Backend) {
	t.Helper()
	if err := b.Store.DB().Exec(`UPDATE webhook_events SET processed = false, processed_at = NULL, error = 'handler failed',
		dead_at = now(), retry_count = 5 WHERE stripe_event_id LIKE 'evt_tbl_%'`).Error; err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	conn := b.Pool(t).Get()
	defer conn.Close()
	if _, err := conn.Do("DEL", queue.DeadKey(b.Namespace), queue.ListKey(b.Namespace)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Do("SADD", b.Namespace+":known_jobs", queue.JobName); err != nil {
		t.Fatal(err)
	}
	for i, ev := range []string{"evt_tbl_1", "evt_tbl_2"} {
		job := &work.Job{Name: queue.JobName, ID: fmt.Sprintf("job_tbl_%d", i+1), EnqueuedAt: 1, Args: map[string]any{"event_id": ev}}
		if err := b.Enqueuer.Kill(context.Background(), job, "handler failed"); err != nil {
			t.Fatal(err)
		}
	}
}

// tableState is everything a change could touch: the events' states, the
// dead set, the queue and the audit log.
func tableState(t *testing.T, b *testkit.Backend) string {
	t.Helper()
	var events []string
	if err := b.Store.DB().Raw(`SELECT stripe_event_id || ' processed=' || processed || ' dead=' || (dead_at IS NOT NULL)
		|| ' failed=' || (error IS NOT NULL) FROM webhook_events ORDER BY stripe_event_id`).Scan(&events).Error; err != nil {
		t.Fatal(err)
	}
	conn := b.Pool(t).Get()
	defer conn.Close()
	dead, err := redis.Strings(conn.Do("ZRANGE", queue.DeadKey(b.Namespace), 0, -1, "WITHSCORES"))
	if err != nil {
		t.Fatal(err)
	}
	queued, err := redis.Strings(conn.Do("LRANGE", queue.ListKey(b.Namespace), 0, -1))
	if err != nil {
		t.Fatal(err)
	}
	var audited int64
	if err := b.Store.DB().Raw("SELECT count(*) FROM audit_log").Scan(&audited).Error; err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("events %v, dead %v, queued %v, audit rows %d", events, dead, queued, audited)
}

// Every changing route of the console and the job UI, called by a viewer,
// is 403 and changes nothing (events, dead set, queue, audit log), and so
// is any other method than GET and HEAD; every GET route serves a viewer,
// and the pages show a viewer no button that would change anything.
func TestWebUIViewerChangesNothing(t *testing.T) {
	t.Parallel()
	b := tableBackend(t)
	ui := startWebUI(t, b, proxyRoles("127.0.0.1/32"))
	before := tableState(t, b)
	dead := b.DeadJobs(t)
	for _, r := range changeRoutes {
		if code, body := uiDo(t, ui, viewer, http.MethodPost, r.path(dead), r.form); code != http.StatusForbidden {
			t.Errorf("viewer %s: %d, want 403\n%s", r.pattern, code, body)
		}
	}
	for _, m := range []string{"PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"} {
		for _, path := range []string{"/events/evt_tbl_1/replay", "/dead_jobs", "/retry_all_dead_jobs", "/audit"} {
			if code, _ := uiDo(t, ui, viewer, m, path, nil); code != http.StatusForbidden {
				t.Errorf("viewer %s %s: %d, want 403", m, path, code)
			}
		}
	}
	if after := tableState(t, b); after != before {
		t.Errorf("a viewer changed the state:\nbefore %s\nafter %s", before, after)
	}
	for pattern, path := range consoleReads {
		checkViewerReads(t, ui, pattern, path)
	}
	for _, path := range jobReads {
		checkViewerReads(t, ui, "GET "+path, path)
	}
	checkNoChangeControls(t, ui)
}

// checkViewerReads: a viewer's GET and HEAD of path are served.
func checkViewerReads(t *testing.T, ui *service, pattern, path string) {
	t.Helper()
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		if code, _ := uiDo(t, ui, viewer, m, path, nil); code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500 {
			t.Errorf("viewer %s (%s %s): %d", pattern, m, path, code)
		}
	}
}

// checkNoChangeControls: the pages that offer a change to an operator
// offer none to a viewer.
func checkNoChangeControls(t *testing.T, ui *service) {
	t.Helper()
	for path, control := range map[string]string{
		"/events/evt_tbl_1":          `action="/events/evt_tbl_1/replay"`,
		"/events?status=dead":        "Replay these",
		"/events/replay?status=dead": `<form method="post"`,
	} {
		if _, body := uiDo(t, ui, operator, http.MethodGet, path, nil); !strings.Contains(body, control) {
			t.Errorf("operator's %s lacks %s", path, control)
		}
		if _, body := uiDo(t, ui, viewer, http.MethodGet, path, nil); strings.Contains(body, control) || !strings.Contains(body, viewer.email+" (viewer)") {
			t.Errorf("viewer's %s offers %s, or does not name the viewer", path, control)
		}
	}
	if _, body := uiDo(t, ui, viewer, http.MethodGet, "/", nil); !strings.Contains(body, "#app button") {
		t.Error("the job UI's page does not hide its buttons from a viewer")
	}
}

// Every changing route, called by an operator, makes its change and is
// recorded once in the audit log, with the operator, the action and the
// events or jobs it names, and is listed at /audit; an unknown changing
// request is recorded as "other".
func TestWebUIOperatorChangesAreAudited(t *testing.T) {
	t.Parallel()
	b := tableBackend(t)
	ui := startWebUI(t, b, proxyRoles("127.0.0.0/8"))
	for _, r := range changeRoutes {
		resetTable(t, b)
		before := tableState(t, b)
		code, body := uiDo(t, ui, operator, http.MethodPost, r.path(b.DeadJobs(t)), r.form)
		if code != r.okStatus {
			t.Errorf("operator %s: %d, want %d\n%s", r.pattern, code, r.okStatus, body)
		}
		if tableState(t, b) == before {
			t.Errorf("operator %s changed nothing", r.pattern)
		}
		checkAudited(t, b, r)
	}
	if code, _ := uiDo(t, ui, operator, http.MethodDelete, "/dead_jobs", nil); code < 400 {
		t.Errorf("DELETE /dead_jobs: %d, want an error", code)
	}
	rows, err := b.Store.ListAudit(context.Background(), store.AuditFilter{Action: access.ActionOther}, 0, 10)
	if err != nil || len(rows) != 1 || rows[0].Method != "DELETE" || rows[0].Path != "/dead_jobs" || rows[0].Username != operator.email {
		t.Errorf("unknown change's audit rows: %+v, %v", rows, err)
	}
	_, page := uiDo(t, ui, viewer, http.MethodGet, "/audit?user="+url.QueryEscape(operator.email), nil)
	for _, r := range changeRoutes {
		if !strings.Contains(page, ">"+r.action+"</a>") {
			t.Errorf("/audit does not list %s:\n%s", r.action, page)
		}
	}
}

// checkAudited: the newest audit row is r's, by the operator, naming
// what r touched.
func checkAudited(t *testing.T, b *testkit.Backend, r changeRoute) {
	t.Helper()
	rows, err := b.Store.ListAudit(context.Background(), store.AuditFilter{Action: r.action}, 0, 10)
	if err != nil || len(rows) != 1 {
		t.Fatalf("%s: audit rows %+v, %v; want one", r.pattern, rows, err)
	}
	e := rows[0]
	if e.Username != operator.email || e.Role != "operator" || e.Method != "POST" || e.Status != r.okStatus || e.Error != nil {
		t.Errorf("%s: audit row %+v", r.pattern, e)
	}
	switch r.action {
	case access.ActionReplay:
		if !slices.Equal(e.StripeEventIDs, []string{"evt_tbl_1"}) || e.Detail != "applied" {
			t.Errorf("replay row: %+v", e)
		}
	case access.ActionReplayBulk:
		if ids := slices.Sorted(slices.Values(e.StripeEventIDs)); !slices.Equal(ids, []string{"evt_tbl_1", "evt_tbl_2"}) {
			t.Errorf("bulk replay row: %+v", e)
		}
	case access.ActionRetryDeadJob, access.ActionDeleteDeadJob:
		if !slices.Equal(e.JobIDs, []string{"job_tbl_1"}) || !slices.Equal(e.StripeEventIDs, []string{"evt_tbl_1"}) {
			t.Errorf("%s row: %+v", r.action, e)
		}
	default:
		if e.Detail != "dead jobs: 2" {
			t.Errorf("%s row: %+v", r.action, e)
		}
	}
}

// Identity headers sent to the web UI from an address that is not a
// trusted proxy are 401, reads and changes alike; from the trusted proxy,
// a request without the user header is 401.
func TestWebUIProxyHeadersAreNotSpoofable(t *testing.T) {
	t.Parallel()
	b := tableBackend(t)
	untrusted := startWebUI(t, b, proxyRoles("10.0.0.0/8"))
	trusted := startWebUI(t, b, proxyRoles("127.0.0.1"))
	before := tableState(t, b)
	for _, path := range []string{"/overview", "/queues", "/audit"} {
		if code, _ := uiDo(t, untrusted, operator, http.MethodGet, path, nil); code != http.StatusUnauthorized {
			t.Errorf("operator headers from 127.0.0.1, trusted 10.0.0.0/8, GET %s: %d, want 401", path, code)
		}
		if code, _ := uiDo(t, trusted, person{"", "sre"}, http.MethodGet, path, nil); code != http.StatusUnauthorized {
			t.Errorf("no user header from the trusted proxy, GET %s: %d, want 401", path, code)
		}
	}
	for _, r := range changeRoutes {
		if code, _ := uiDo(t, untrusted, operator, http.MethodPost, r.path(b.DeadJobs(t)), r.form); code != http.StatusUnauthorized {
			t.Errorf("operator headers from 127.0.0.1, trusted 10.0.0.0/8, %s: %d, want 401", r.pattern, code)
		}
	}
	if after := tableState(t, b); after != before {
		t.Errorf("spoofed requests changed the state:\nbefore %s\nafter %s", before, after)
	}
	if code, _ := uiDo(t, trusted, person{"cy@example.com", "everyone"}, http.MethodGet, "/overview", nil); code != http.StatusForbidden {
		t.Errorf("a user in no group: %d, want 403", code)
	}
}

// With basic auth the audit log names the login user; without login
// (loopback, as make run serves it) it names "local".
func TestWebUIAuditNamesBasicAndLocalUsers(t *testing.T) {
	t.Parallel()
	b := tableBackend(t)
	basic := startWebUI(t, b, map[string]string{"WEBUI_USERNAME": "ops", "WEBUI_PASSWORD": "s3cret"})
	local := startWebUI(t, b, nil)
	auth := http.Header{"Authorization": {"Basic b3BzOnMzY3JldA=="}} // ops:s3cret
	if code, body := do(t, http.MethodPost, basic.base+"/retry_all_dead_jobs", auth); code != http.StatusOK {
		t.Fatalf("basic: %d %s", code, body)
	}
	if code, body := do(t, http.MethodPost, local.base+"/delete_all_dead_jobs", nil); code != http.StatusOK {
		t.Fatalf("no login: %d %s", code, body)
	}
	if code, _ := do(t, http.MethodGet, local.base+"/overview", nil); code != http.StatusOK {
		t.Errorf("no login, GET /overview: %d", code)
	}
	rows, err := b.Store.ListAudit(context.Background(), store.AuditFilter{}, 0, 10)
	if err != nil || len(rows) != 2 || rows[1].Username != "ops" || rows[1].Action != access.ActionRetryAllDeadJobs ||
		rows[0].Username != access.LocalUser || rows[0].Action != access.ActionDeleteAllDeadJobs {
		t.Errorf("audit rows %+v, %v; want ops's retry, then local's delete", rows, err)
	}
}
