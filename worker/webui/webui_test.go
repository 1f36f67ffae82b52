package webui

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/access"
)

// front is Handler with cfg's login, a trail on a new database, and
// pages and jobs that record what reached them.
func front(t *testing.T, cfg config.WebUI, pages func(*http.ServeMux), jobs http.Handler) (http.Handler, *store.Store) {
	t.Helper()
	st, err := store.Open(testenv.Database(t, ""), store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	logger := slog.New(slog.DiscardHandler)
	auth, err := access.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return Handler(Options{Access: auth, Trail: access.NewTrail(st, logger), Logger: logger, Pages: pages, Jobs: jobs}), st
}

var basicOps = config.WebUI{LoginUser: "ops", LoginPassword: "s3cret", WebUIAccess: config.WebUIAccess{Auth: config.WebUIAuthBasic}}

// The login guards every path but /healthz, the pages come before the job
// UI, and a cross-site change is refused before it reaches either.
func TestHandlerLoginPagesAndCrossSiteChanges(t *testing.T) {
	t.Parallel()
	var reached []string
	record := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			reached = append(reached, name+" "+r.Method+" "+r.URL.Path)
		}
	}
	h, st := front(t, basicOps, func(mux *http.ServeMux) { mux.Handle("/events", record("page")) }, record("jobs"))
	serve := func(method, path, password string, header map[string]string) int {
		req := httptest.NewRequest(method, path, nil)
		if password != "" {
			req.SetBasicAuth("ops", password)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := serve("GET", "/healthz", "", nil); code != http.StatusOK {
		t.Errorf("/healthz without a login: %d, want 200", code)
	}
	for _, path := range []string{"/events", "/queues"} {
		if code := serve("GET", path, "", nil); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a login: %d, want 401", path, code)
		}
	}
	if code := serve("GET", "/events", "wrong", nil); code != http.StatusUnauthorized {
		t.Errorf("a wrong password: %d, want 401", code)
	}
	serve("GET", "/events", "s3cret", nil)
	serve("GET", "/queues", "s3cret", nil)
	if code := serve("POST", "/retry_all_dead_jobs", "s3cret", map[string]string{"Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Errorf("a cross-site POST: %d, want 403", code)
	}
	serve("POST", "/retry_all_dead_jobs", "s3cret", map[string]string{"Sec-Fetch-Site": "same-origin"})
	want := "page GET /events|jobs GET /queues|jobs POST /retry_all_dead_jobs"
	if got := strings.Join(reached, "|"); got != want {
		t.Errorf("reached %q, want %q (nothing without a login or from another site)", got, want)
	}
	rows, err := st.ListAudit(t.Context(), store.AuditFilter{}, 0, 10)
	if err != nil || len(rows) != 1 || rows[0].Username != "ops" || rows[0].Path != "/retry_all_dead_jobs" {
		t.Errorf("audit rows %+v, %v; want the one POST that got through, by ops", rows, err)
	}
}

// Without login (a loopback address, which the configuration checks)
// requests from this machine are the operator "local"; cross-site changes
// are still refused.
func TestHandlerWithoutLogin(t *testing.T) {
	t.Parallel()
	h, st := front(t, config.WebUI{WebUIAccess: config.WebUIAccess{Auth: config.WebUIAuthNone}}, nil,
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	serve := func(method, path, site string) int {
		req := httptest.NewRequest(method, path, nil)
		req.RemoteAddr = "127.0.0.1:50000"
		if site != "" {
			req.Header.Set("Sec-Fetch-Site", site)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := serve("GET", "/queues", ""); code != http.StatusOK {
		t.Errorf("GET /queues without a login configured: %d, want 200", code)
	}
	if code := serve("POST", "/retry_all_dead_jobs", "cross-site"); code != http.StatusForbidden {
		t.Errorf("a cross-site POST without a login configured: %d, want 403", code)
	}
	if code := serve("POST", "/retry_all_dead_jobs", "same-origin"); code != http.StatusOK {
		t.Errorf("a same-origin POST without a login configured: %d, want 200", code)
	}
	rows, err := st.ListAudit(t.Context(), store.AuditFilter{}, 0, 10)
	if err != nil || len(rows) != 1 || rows[0].Username != access.LocalUser || rows[0].Role != "operator" {
		t.Errorf("audit rows %+v, %v; want one by %q", rows, err, access.LocalUser)
	}
}
