package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/internal/access"
)

const (
	// bulkReplayMax is the most events one bulk replay applies: the newest
	// of those the filter matches, as the list shows them first.
	bulkReplayMax = 1000
	// bulkLogChunk is the most event ids one "console action" line holds.
	bulkLogChunk = 100
)

// bulkFilterKeys are the form fields a bulk replay carries: the list's filter.
var bulkFilterKeys = []string{"status", "type", "account", "id", "from", "to"}

// bulkFilter reads the filter of a bulk replay from q; only the failing
// and dead statuses may be replayed in bulk.
func bulkFilter(q url.Values) (store.EventFilter, url.Values, error) {
	f, err := parseEventFilter(q)
	if err != nil {
		return f, nil, err
	}
	if f.Status != store.StatusFailing && f.Status != store.StatusDead {
		return f, nil, errBulkStatus
	}
	carry := url.Values{}
	for _, k := range bulkFilterKeys {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			carry.Set(k, v)
		}
	}
	return f, carry, nil
}

type bulkStatusError struct{}

func (bulkStatusError) Error() string {
	return "status: only failing or dead events are replayed in bulk"
}

var errBulkStatus error = bulkStatusError{}

// hiddenField is one filter field of the bulk replay's POST form.
type hiddenField struct{ Name, Value string }

func hiddenFields(carry url.Values) []hiddenField {
	var out []hiddenField
	for _, k := range bulkFilterKeys {
		if v := carry.Get(k); v != "" {
			out = append(out, hiddenField{k, v})
		}
	}
	return out
}

// replayBulkConfirm says how many events a bulk replay of the filter would
// apply and offers the POST that does it. It replays nothing.
func (c *Console) replayBulkConfirm(w http.ResponseWriter, r *http.Request) {
	f, carry, err := bulkFilter(r.URL.Query())
	if err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	events, err := c.store.ListEvents(r.Context(), f, store.Cursor{}, bulkReplayMax+1)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	count, more := len(events), len(events) > bulkReplayMax
	if more {
		count = bulkReplayMax
	}
	c.render(w, r, "replay", map[string]any{
		"Title":   "Replay " + f.Status + " events",
		"Confirm": true,
		"Count":   count,
		"More":    more,
		"Max":     bulkReplayMax,
		"Fields":  hiddenFields(carry),
		"Back":    withQuery("/events", carry),
	})
}

// replayBulk re-reads the events of the posted filter (the newest
// bulkReplayMax), replays each as the event page's replay does, describes
// the action with the event ids for the audit trail, logs it, and shows
// how many were replayed.
func (c *Console) replayBulk(w http.ResponseWriter, r *http.Request) {
	change := access.ChangeOf(r)
	change.Action = access.ActionReplayBulk
	if err := r.ParseForm(); err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	f, carry, err := bulkFilter(r.PostForm)
	if err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	events, err := c.store.ListEvents(r.Context(), f, store.Cursor{}, bulkReplayMax)
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	res := c.replayEach(r, events)
	change.StripeEventIDs = res.ids
	change.Detail = fmt.Sprintf("%s events: replayed %d, failed %d, not replayed %d, of %d",
		f.Status, res.replayed, res.failed, res.skipped, len(res.ids))
	c.logBulk(r, f.Status, res)
	c.render(w, r, "replay", map[string]any{
		"Title":    "Replayed " + f.Status + " events",
		"Count":    len(res.ids),
		"Replayed": res.replayed,
		"Failed":   res.failed,
		"Skipped":  res.skipped,
		"Back":     withQuery("/events", carry),
	})
}

// bulkResult is what a bulk replay did.
type bulkResult struct {
	ids                       []string // the events it tried, in order
	replayed, failed, skipped int
}

// replayEach replays events one by one until r is cancelled.
func (c *Console) replayEach(r *http.Request, events []store.EventSummary) bulkResult {
	user := userOf(r)
	res := bulkResult{ids: make([]string, 0, len(events))}
	for _, e := range events {
		if r.Context().Err() != nil {
			break
		}
		res.ids = append(res.ids, e.StripeEventID)
		result, err := c.replay(r.Context(), e.StripeEventID)
		switch result {
		case ReplayApplied:
			res.replayed++
		case ReplayFailed:
			res.failed++
			c.logger.Warn("console bulk replay failed", "user", user, "stripe_event_id", e.StripeEventID, "error", err)
		case "":
			res.failed++
			c.logger.Error("console bulk replay", "user", user, "stripe_event_id", e.StripeEventID, "err", err)
		default:
			res.skipped++
		}
	}
	return res
}

// logBulk logs a bulk replay as "console action" lines of at most
// bulkLogChunk event ids each.
func (c *Console) logBulk(r *http.Request, status string, res bulkResult) {
	ids := res.ids
	chunks := (len(ids) + bulkLogChunk - 1) / bulkLogChunk
	for i := 0; i == 0 || i < chunks; i++ {
		chunk := ids[min(i*bulkLogChunk, len(ids)):min((i+1)*bulkLogChunk, len(ids))]
		c.logger.Info("console action", "user", userOf(r), "action", "replay_bulk",
			"status", status, "count", len(ids), "replayed", res.replayed, "failed", res.failed, "skipped", res.skipped,
			"chunk", i+1, "chunks", max(chunks, 1), "stripe_event_ids", strings.Join(chunk, ","))
	}
}

// bulkLink is the filter that the list's "Replay these…" form sends to the
// confirmation page, for a failing or dead list; none for other statuses.
func bulkLink(f store.EventFilter, q url.Values) []hiddenField {
	if f.Status != store.StatusFailing && f.Status != store.StatusDead {
		return nil
	}
	carry := url.Values{}
	for _, k := range bulkFilterKeys {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			carry.Set(k, v)
		}
	}
	return hiddenFields(carry)
}
