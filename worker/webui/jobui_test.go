package webui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gocraft/work"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/internal/access"
	"stripe-webhooks/worker/internal/testkit"
)

// jobReads are the job UI's routes that change nothing.
var jobReads = []string{"GET /", "GET /work.js", "GET /queues", "GET /worker_pools", "GET /busy_workers",
	"GET /retry_jobs", "GET /scheduled_jobs", "GET /dead_jobs"}

// gocraftRoute matches a route of gocraft/work's web UI in its source:
// router.Post("/delete_dead_job/:died_at:\\d.*/:job_id", …).
var gocraftRoute = regexp.MustCompile(`(?i)Router\.(Get|Post|Put|Patch|Delete|Options|Head)\("([^"]*)"`)

// gocraftParam is a path parameter, with its optional pattern.
var gocraftParam = regexp.MustCompile(`:([a-z_]+)(:[^/]*)?`)

// The routes gocraft/work's web UI serves, read from the source of the
// version this module builds with, are jobReads (GET) and jobChanges: a
// new route in a new version fails this test until it is classified.
func TestJobUIRoutesAreKnown(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gocraft/work").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/gocraft/work: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "webui", "webui.go"))
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, m := range gocraftRoute.FindAllStringSubmatch(string(src), -1) {
		path := gocraftParam.ReplaceAllString(strings.ReplaceAll(m[2], `\\`, `\`), "{$1}")
		served = append(served, strings.ToUpper(m[1])+" "+cmpOr(path, "/"))
	}
	var known []string
	known = append(known, jobReads...)
	for _, c := range jobChanges {
		known = append(known, c.pattern)
	}
	slices.Sort(served)
	slices.Sort(known)
	if !slices.Equal(served, known) {
		t.Errorf("gocraft/work's web UI serves\n  %v\nthe known routes are\n  %v", served, known)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// startJobUI serves the real job UI on b behind Handler, identities from
// a proxy at 127.0.0.1: group "sre" operates, "support" views.
func startJobUI(t *testing.T, b *testkit.Backend) string {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	jobs, stop, err := JobUI(b.Namespace, b.Pool(t), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	auth, err := access.New(config.WebUI{WebUIAccess: config.WebUIAccess{Auth: config.WebUIAuthProxy,
		TrustedProxies: []string{"127.0.0.1"}, ProxyUserHeader: "X-Forwarded-Email", ProxyGroupsHeader: "X-Forwarded-Groups",
		OperatorGroups: []string{"sre"}, ViewerGroups: []string{"support"}}}, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(Options{Access: auth, Trail: access.NewTrail(b.Store, logger), Logger: logger, Jobs: jobs}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// as sends method path to base as user of group, and returns the status,
// the Cache-Control header and the body.
func as(t *testing.T, base, user, group, method, path string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-Email", user)
	req.Header.Set("X-Forwarded-Groups", group)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Cache-Control"), string(body)
}

// killJob files a process-webhook job of event in the dead set, its name
// known to gocraft/work as a worker pool makes it (a retry requeues only
// jobs of a known name).
func killJob(t *testing.T, b *testkit.Backend, id, event string) {
	t.Helper()
	conn := b.Pool(t).Get()
	defer conn.Close()
	if _, err := conn.Do("SADD", b.Namespace+":known_jobs", queue.JobName); err != nil {
		t.Fatal(err)
	}
	job := &work.Job{Name: "process-webhook", ID: id, EnqueuedAt: 1, Args: map[string]any{"event_id": event}}
	if err := b.Enqueuer.Kill(context.Background(), job, "handler failed"); err != nil {
		t.Fatal(err)
	}
}

// The job UI's page hides its buttons from a viewer, not from an
// operator, and is never cached (it differs by role).
func TestJobUIPageIsReadOnlyForViewers(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	base := startJobUI(t, b)
	code, cache, body := as(t, base, "bo@example.com", "support", "GET", "/")
	if code != 200 || cache != "no-store" || !strings.Contains(body, viewerStyle+"</head>") || !strings.Contains(body, `<script src="/work.js">`) {
		t.Errorf("viewer's page: %d, Cache-Control %q:\n%s", code, cache, body)
	}
	code, cache, body = as(t, base, "ana@example.com", "sre", "GET", "/")
	if code != 200 || cache != "no-store" || strings.Contains(body, "<style>") || !strings.Contains(body, `<script src="/work.js">`) {
		t.Errorf("operator's page: %d, Cache-Control %q:\n%s", code, cache, body)
	}
	if code, _, body := as(t, base, "bo@example.com", "support", "GET", "/work.js"); code != 200 || strings.Contains(body, viewerStyle) {
		t.Errorf("viewer's script: %d", code)
	}
}

// An operator's retry of one dead job is recorded with the job, its
// event and when it died; a delete of all with how many there were.
func TestJobUIChangesAreRecordedWithTheirJobs(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	base := startJobUI(t, b)
	killJob(t, b, "job_one", "evt_one")
	killJob(t, b, "job_two", "evt_two")
	died := b.DeadJobs(t)["job_one"]
	if code, _, body := as(t, base, "ana@example.com", "sre", "POST", fmt.Sprintf("/retry_dead_job/%d/job_one", died)); code != 200 {
		t.Fatalf("retry: %d %s", code, body)
	}
	if code, _, body := as(t, base, "ana@example.com", "sre", "POST", "/delete_all_dead_jobs"); code != 200 {
		t.Fatalf("delete all: %d %s", code, body)
	}
	rows, err := b.Store.ListAudit(context.Background(), store.AuditFilter{Username: "ana@example.com"}, 0, 10)
	if err != nil || len(rows) != 2 {
		t.Fatalf("audit rows: %+v, %v", rows, err)
	}
	all, one := rows[0], rows[1]
	if one.Action != access.ActionRetryDeadJob || !slices.Equal(one.JobIDs, []string{"job_one"}) ||
		!slices.Equal(one.StripeEventIDs, []string{"evt_one"}) || one.Detail != fmt.Sprintf("died_at %d", died) || one.Status != 200 {
		t.Errorf("retry row: %+v", one)
	}
	if all.Action != access.ActionDeleteAllDeadJobs || all.Detail != "dead jobs: 1" || all.Status != 200 || all.Role != "operator" {
		t.Errorf("delete-all row: %+v", all)
	}
}
