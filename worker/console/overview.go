package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/worker/internal/access"
)

// chartMinutes is the span of the overview's chart, one column a minute.
const chartMinutes = 24 * 60

const (
	chartHeight = 160 // the plot's height in SVG units
	chartTop    = 10  // space above the plot
)

// chart is the overview's SVG: a bar a minute for the deliveries and a
// line for the applications, on one scale.
type chart struct {
	Width, Height, PlotBottom int
	Bars                      []chartBar
	Line                      string // polyline points
	Max                       int64
	From, To                  time.Time
}

type chartBar struct{ X, Y, H int }

// newChart lays out the per-minute counts of the chartMinutes minutes up
// to now (the current minute last).
func newChart(now time.Time, deliveries, applications []store.MinuteCount) chart {
	end := now.UTC().Truncate(time.Minute)
	start := end.Add(-(chartMinutes - 1) * time.Minute)
	var del, app [chartMinutes]int64
	fill := func(dst *[chartMinutes]int64, counts []store.MinuteCount) {
		for _, c := range counts {
			i := int(c.Minute.UTC().Sub(start) / time.Minute)
			if i >= 0 && i < chartMinutes {
				dst[i] += c.Count
			}
		}
	}
	fill(&del, deliveries)
	fill(&app, applications)
	c := chart{Width: chartMinutes, Height: chartHeight + chartTop + 20, PlotBottom: chartHeight + chartTop, From: start, To: end}
	for i := range chartMinutes {
		c.Max = max(c.Max, del[i], app[i])
	}
	scale := func(n int64) int {
		if c.Max == 0 {
			return 0
		}
		return int(n * chartHeight / c.Max)
	}
	line := make([]byte, 0, chartMinutes*10)
	for i := range chartMinutes {
		if h := scale(del[i]); del[i] > 0 {
			h = max(h, 1)
			c.Bars = append(c.Bars, chartBar{X: i, Y: c.PlotBottom - h, H: h})
		}
		if i > 0 {
			line = append(line, ' ')
		}
		line = fmt.Appendf(line, "%d,%d", i, c.PlotBottom-scale(app[i]))
	}
	c.Line = string(line)
	return c
}

// deadSetSize is the number of jobs in the dead set, read within 2 s.
func (c *Console) deadSetSize(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := c.pool.GetContext(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return redis.Int64(redis.DoContext(conn, ctx, "ZCARD", queue.DeadKey(c.namespace)))
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	o, err := c.store.Overview(r.Context(), time.Now().Add(-chartMinutes*time.Minute))
	if err != nil {
		c.serverError(w, r, err)
		return
	}
	dead, err := c.deadSetSize(r.Context())
	deadSet := fmt.Sprint(dead)
	if err != nil {
		c.logger.Warn("console dead set size", "err", err)
		deadSet = "unknown (Redis did not answer)"
	}
	var oldestAge string
	if o.OldestPending != nil {
		oldestAge = o.Now.Sub(*o.OldestPending).Truncate(time.Second).String()
	}
	c.render(w, r, "overview", map[string]any{
		"Title":     "Overview",
		"O":         o,
		"OldestAge": oldestAge,
		"DeadSet":   deadSet,
		"Chart":     newChart(o.Now, o.Deliveries, o.Applications),
	})
}

// replayMessages are the results a replay redirects back with.
var replayMessages = map[string]string{
	"applied":  "Replayed: the event was applied.",
	"failed":   "Replay failed: the error is on the event.",
	"mode":     "Not replayed: the event is of the Stripe mode this deployment never applies.",
	"notfound": "Not replayed: no event with that id is stored.",
}

// replayOne applies one event again, as `worker replay --event` does,
// describes it for the audit trail, logs who did it, and redirects back to
// the event's page with the result.
func (c *Console) replayOne(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	user := userOf(r)
	change := access.ChangeOf(r)
	change.Action, change.StripeEventIDs = access.ActionReplay, []string{id}
	log := c.logger.With("user", user, "action", "replay", "stripe_event_id", id)
	result, err := c.replay(r.Context(), id)
	change.Detail = string(result)
	if err != nil {
		change.Err = err.Error()
	}
	switch {
	case result == "":
		c.serverError(w, r, err)
		return
	case err != nil:
		log = log.With("error", err)
	}
	if result == ReplayApplied {
		log.Info("console action", "result", result)
	} else {
		log.Warn("console action", "result", result)
	}
	http.Redirect(w, r, "/events/"+url.PathEscape(id)+"?replay="+string(result), http.StatusSeeOther)
}

// userOf names who sent r.
func userOf(r *http.Request) string {
	id, _ := access.FromContext(r.Context())
	return id.User
}

// replayGet refuses a GET of the replay path: only the form's POST replays.
func (c *Console) replayGet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	c.fail(w, http.StatusMethodNotAllowed, "replay takes a POST from the event's page")
}
