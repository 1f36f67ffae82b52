package webui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

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
	h := Handler(Options{User: "ops", Password: "s3cret",
		Pages: func(mux *http.ServeMux) { mux.Handle("/events", record("page")) }, Jobs: record("jobs")})
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
}

// Without a user (a loopback address, which the configuration checks)
// there is no login; cross-site changes are still refused.
func TestHandlerWithoutLogin(t *testing.T) {
	t.Parallel()
	h := Handler(Options{Jobs: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/queues", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /queues without a user configured: %d, want 200", rec.Code)
	}
	req := httptest.NewRequest("POST", "/retry_all_dead_jobs", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("a cross-site POST without a user configured: %d, want 403", rec.Code)
	}
}
