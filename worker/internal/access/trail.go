package access

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"stripe-webhooks/pkg/store"
)

// The actions of the audit trail.
const (
	ActionReplay            = "replay"               // the console's replay of one event
	ActionReplayBulk        = "replay_bulk"          // the console's replay of a failing or dead list
	ActionRetryDeadJob      = "retry_dead_job"       // the job UI's retry of one dead job
	ActionDeleteDeadJob     = "delete_dead_job"      // the job UI's delete of one dead job
	ActionRetryAllDeadJobs  = "retry_all_dead_jobs"  // the job UI's retry of every dead job
	ActionDeleteAllDeadJobs = "delete_all_dead_jobs" // the job UI's delete of every dead job
	ActionOther             = "other"                // a change no handler described (an unknown route)
)

// Actions lists the actions, for the console's filter.
var Actions = []string{ActionReplay, ActionReplayBulk, ActionRetryDeadJob, ActionDeleteDeadJob,
	ActionRetryAllDeadJobs, ActionDeleteAllDeadJobs, ActionOther}

// logEventIDs is the most event ids the log line of a recorded change
// holds; the audit log holds them all.
const logEventIDs = 100

// Change is what a handler says about the change it makes, for the
// audit trail: the action, what it touched, and how it went.
type Change struct {
	Action         string // one of the Action constants; ActionOther when empty
	StripeEventIDs []string
	JobIDs         []string
	Detail         string // a short result, such as a replay's outcome or a count
	Err            string // why it failed, when it did; else the error answer's first line
}

type changeKey struct{}

// ChangeOf is the Change that Trail.Audited records for r, for r's
// handler to fill in; a request Audited does not record gets one that
// nothing reads.
func ChangeOf(r *http.Request) *Change {
	if c, ok := r.Context().Value(changeKey{}).(*Change); ok {
		return c
	}
	return &Change{}
}

// Trail is the audit trail: each change made through the web UI, written
// to Postgres (audit_log) and logged.
type Trail struct {
	store  *store.Store
	logger *slog.Logger
}

// NewTrail returns the trail that writes to st and logs to logger.
func NewTrail(st *store.Store, logger *slog.Logger) *Trail {
	return &Trail{store: st, logger: logger}
}

// Audited serves next, and records each change (a request Reads is false
// for) once next has answered it, whatever the outcome: who (the request's
// Identity), the method and path, what next's handler said in ChangeOf,
// and the answer's status. The answer is held until the record is
// written; when it cannot be, the change is logged whole at ERROR and the
// answer becomes a 500 saying that the change was made but not recorded.
func (t *Trail) Audited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Reads(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		change := &Change{}
		held := &heldResponse{header: http.Header{}}
		next.ServeHTTP(held, r.WithContext(context.WithValue(r.Context(), changeKey{}, change)))
		e := entry(r, change, held)
		if err := t.record(r.Context(), e); err != nil {
			http.Error(w, fmt.Sprintf("%s was carried out (answer %d), but the audit log could not record it: "+
				"the web UI's log holds the record. Tell whoever audits changes to this system.", e.Action, e.Status),
				http.StatusInternalServerError)
			return
		}
		held.sendTo(w)
	})
}

// entry is the audit record of r, whose handler described change and
// answered held.
func entry(r *http.Request, change *Change, held *heldResponse) store.AuditEntry {
	id, _ := FromContext(r.Context())
	e := store.AuditEntry{At: time.Now().UTC(), Username: id.User, Role: string(id.Role),
		Action: cmp.Or(change.Action, ActionOther), Method: r.Method, Path: r.URL.Path,
		StripeEventIDs: change.StripeEventIDs, JobIDs: change.JobIDs, Detail: change.Detail, Status: held.status()}
	msg := change.Err
	if msg == "" && e.Status >= 400 {
		msg = firstLine(held.body.String())
	}
	if msg != "" {
		e.Error = &msg
	}
	return e
}

// record writes e to the audit log, even when the request was cancelled,
// and logs it on one line.
func (t *Trail) record(ctx context.Context, e store.AuditEntry) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := t.store.InsertAudit(ctx, e)
	if err != nil {
		attrs := append(logAttrs(e, len(e.StripeEventIDs)), slog.String("audit_error", err.Error()))
		t.logger.LogAttrs(ctx, slog.LevelError, "web UI change not recorded in the audit log", attrs...)
		return err
	}
	level := slog.LevelInfo
	if e.Error != nil {
		level = slog.LevelWarn
	}
	t.logger.LogAttrs(ctx, level, "web UI change", logAttrs(e, logEventIDs)...)
	return nil
}

// logAttrs are e's log fields, with at most maxIDs of its event ids.
func logAttrs(e store.AuditEntry, maxIDs int) []slog.Attr {
	ids := e.StripeEventIDs[:min(len(e.StripeEventIDs), maxIDs)]
	attrs := []slog.Attr{slog.String("user", e.Username), slog.String("role", e.Role), slog.String("action", e.Action),
		slog.String("method", e.Method), slog.String("path", e.Path), slog.Int("status", e.Status),
		slog.Int("stripe_event_count", len(e.StripeEventIDs)), slog.String("stripe_event_ids", strings.Join(ids, ",")),
		slog.String("job_ids", strings.Join(e.JobIDs, ","))}
	if e.Detail != "" {
		attrs = append(attrs, slog.String("detail", e.Detail))
	}
	if e.Error != nil {
		attrs = append(attrs, slog.String("error", *e.Error))
	}
	return attrs
}

// firstLine is the first line of s, at most 300 bytes.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if len(line) > 300 {
		line = line[:300] + "…"
	}
	return line
}

// heldResponse holds an answer until the change is recorded.
type heldResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}

func (h *heldResponse) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(b)
}

func (h *heldResponse) status() int { return cmp.Or(h.code, http.StatusOK) }

// sendTo writes the held answer to w.
func (h *heldResponse) sendTo(w http.ResponseWriter) {
	for k, v := range h.header {
		w.Header()[k] = v
	}
	w.WriteHeader(h.status())
	_, _ = w.Write(h.body.Bytes())
}
