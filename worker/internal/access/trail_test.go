package access

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// trailStore is a store on a new migrated database.
func trailStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(testenv.Database(t, ""), store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// audited serves h behind trail.Audited as id, and returns the answer.
func audited(trail *Trail, id Identity, h http.HandlerFunc, method, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req = req.WithContext(WithIdentity(req.Context(), id))
	rec := httptest.NewRecorder()
	trail.Audited(h).ServeHTTP(rec, req)
	return rec
}

// Each change is recorded once, after its answer, with who, what the
// handler described, the status and the error; an undescribed change is
// "other" with its error answer's first line; reads are not recorded.
// Each recorded change is one log line.
func TestAuditedRecordsEveryChange(t *testing.T) {
	t.Parallel()
	st := trailStore(t)
	logs := &testenv.Buffer{}
	trail := NewTrail(st, slog.New(slog.NewJSONHandler(logs, nil)))
	ana := Identity{User: "ana@example.com", Role: Operator}
	rec := audited(trail, ana, func(w http.ResponseWriter, r *http.Request) {
		c := ChangeOf(r)
		c.Action, c.StripeEventIDs, c.Detail = ActionReplay, []string{"evt_1"}, "applied"
		http.Redirect(w, r, "/events/evt_1?replay=applied", http.StatusSeeOther)
	}, "POST", "/events/evt_1/replay")
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/events/evt_1?replay=applied" {
		t.Errorf("the handler's answer was not passed on: %d %v", rec.Code, rec.Header())
	}
	audited(trail, ana, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such route\nsecond line", http.StatusNotFound)
	}, "DELETE", "/nowhere")
	audited(trail, ana, func(w http.ResponseWriter, r *http.Request) { ChangeOf(r).Action = "read" }, "GET", "/events")
	audited(trail, ana, func(w http.ResponseWriter, r *http.Request) { ChangeOf(r).Action = "read" }, "HEAD", "/events")

	rows, err := st.ListAudit(context.Background(), store.AuditFilter{}, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d audit rows, want 2 (the reads not recorded): %+v", len(rows), rows)
	}
	other, replay := rows[0], rows[1]
	if replay.Username != "ana@example.com" || replay.Role != "operator" || replay.Action != "replay" || replay.Method != "POST" ||
		replay.Path != "/events/evt_1/replay" || !slices.Equal(replay.StripeEventIDs, []string{"evt_1"}) || replay.Detail != "applied" ||
		replay.Status != 303 || replay.Error != nil {
		t.Errorf("replay row: %+v", replay)
	}
	if other.Action != "other" || other.Method != "DELETE" || other.Status != 404 || other.Error == nil || *other.Error != "no such route" {
		t.Errorf("undescribed change row: %+v", other)
	}
	if n := strings.Count(logs.String(), `"msg":"web UI change"`); n != 2 {
		t.Errorf("%d log lines of changes, want 2:\n%s", n, logs)
	}
}

// When the audit log cannot be written, the change (already made) is
// logged whole at ERROR, and the answer is a 500 that says so.
func TestAuditedSaysWhenTheRecordFails(t *testing.T) {
	t.Parallel()
	st, err := store.Open("postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", store.Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	logs := &testenv.Buffer{}
	trail := NewTrail(st, slog.New(slog.NewJSONHandler(logs, nil)))
	done := false
	rec := audited(trail, Identity{User: "ana@example.com", Role: Operator}, func(w http.ResponseWriter, r *http.Request) {
		done = true
		c := ChangeOf(r)
		c.Action, c.JobIDs = ActionRetryDeadJob, []string{"job1"}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}, "POST", "/retry_dead_job/1/job1")
	if !done {
		t.Fatal("the change was not made")
	}
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "retry_dead_job was carried out (answer 200), but the audit log could not record it") {
		t.Errorf("answer: %d %q", rec.Code, rec.Body.String())
	}
	l := logs.String()
	if !strings.Contains(l, `"level":"ERROR","msg":"web UI change not recorded in the audit log"`) || !strings.Contains(l, `"job_ids":"job1"`) ||
		!strings.Contains(l, `"user":"ana@example.com"`) {
		t.Errorf("log:\n%s", l)
	}
}
