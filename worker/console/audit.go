package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/internal/access"
)

// auditShownEvents is how many event ids an /audit row shows before
// folding the others away.
const auditShownEvents = 5

// auditRow is one row of /audit.
type auditRow struct {
	store.AuditEntry
	Events, MoreEvents []string
}

// audit lists the audit trail, newest first, filtered by user and action,
// a page at a time by keyset (before: the id of the last row shown).
func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.AuditFilter{Username: strings.TrimSpace(q.Get("user")), Action: strings.TrimSpace(q.Get("action"))}
	before, err := parseAuditCursor(q.Get("before"))
	if err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := parseLimit(q)
	if err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	entries, err := c.store.ListAudit(r.Context(), f, before, limit)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	rows := make([]auditRow, len(entries))
	for i, e := range entries {
		n := min(len(e.StripeEventIDs), auditShownEvents)
		rows[i] = auditRow{AuditEntry: e, Events: e.StripeEventIDs[:n], MoreEvents: e.StripeEventIDs[n:]}
	}
	c.render(w, r, "audit", map[string]any{
		"Title":   "Audit log",
		"Filter":  f,
		"Actions": access.Actions,
		"Entries": rows,
		"Pager":   auditPager(q, before, entries, limit),
	})
}

func parseAuditCursor(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("before: not a cursor of this console")
	}
	return n, nil
}

func auditPager(q url.Values, before int64, entries []store.AuditEntry, limit int) pager {
	var p pager
	if before > 0 {
		first := cloneValues(q)
		first.Del("before")
		p.First = withQuery("/audit", first)
	}
	if len(entries) == limit {
		older := cloneValues(q)
		older.Set("before", strconv.FormatInt(entries[len(entries)-1].ID, 10))
		p.Older = withQuery("/audit", older)
	}
	return p
}
