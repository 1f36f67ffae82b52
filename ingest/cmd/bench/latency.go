package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"stripe-webhooks/ingest/loadgen"
)

// Latency is the end-to-end latency at one open-loop rate: from a
// delivery's 200 to its event's processed_at.
type Latency struct {
	Rate       float64 `json:"rate_per_second"`
	IdleSec    float64 `json:"idle_before_seconds"`
	Deliveries int     `json:"deliveries"`
	// Non200 counts deliveries answered otherwise, or not at all.
	Non200 int `json:"answered_non_200"`
	// Ingest is the deliveries' own latency, from when each was due.
	Ingest loadgen.Report `json:"ingest"`
	P50Ms  float64        `json:"p50_ms"`
	P90Ms  float64        `json:"p90_ms"`
	P99Ms  float64        `json:"p99_ms"`
	MaxMs  float64        `json:"max_ms"`
	// Unprocessed counts 200-answered events still unprocessed when the
	// bench stopped waiting for them.
	Unprocessed int `json:"unprocessed"`
}

// Burst is a closed-loop burst into an idle pool.
type Burst struct {
	Deliveries int     `json:"deliveries"`
	Clients    int     `json:"clients"`
	IdleSec    float64 `json:"idle_before_seconds"`
	Non200     int     `json:"answered_non_200"`
	// StoreSec runs from the first request to the last 200.
	StoreSec       float64 `json:"first_request_to_last_200_seconds"`
	StoredPerSec   float64 `json:"stored_per_second"`
	IngestP99Ms    float64 `json:"ingest_p99_ms"`
	LastOKToAllSec float64 `json:"last_200_to_all_processed_seconds"`
	// ProcessedByLastOK counts the events already processed at the last 200.
	ProcessedByLastOK int `json:"processed_by_last_200"`
	// P50Ms… are each delivery's 200 to its processed_at.
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	Unprocessed int     `json:"unprocessed"`
}

// rate is one open-loop measure: deliveries per second for a while.
type rate struct {
	perSec float64
	d      time.Duration
}

// parseRates reads "2:20s,50:10s".
func parseRates(s string) ([]rate, error) {
	var rs []rate
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, d, ok := strings.Cut(f, ":")
		perSec, err1 := strconv.ParseFloat(r, 64)
		dur, err2 := time.ParseDuration(d)
		if !ok || err1 != nil || err2 != nil || perSec <= 0 || dur <= 0 {
			return nil, fmt.Errorf("-latency: %q is not rate:duration, such as 2:20s", f)
		}
		rs = append(rs, rate{perSec, dur})
	}
	return rs, nil
}

// openLoopConns caps the connections of an open-loop measure: far above
// what the rates need, so a delivery never waits for one.
const openLoopConns = 64

// settleWait is how long the bench waits for answered events to be
// processed before it counts the rest as unprocessed.
const settleWait = time.Minute

// endToEnd runs one bin/worker (default concurrency) and one bin/ingest
// and, for each rate, idles for idle-before and sends deliveries open loop
// at that rate; then idles again and sends a burst of deliveries back to
// back. After each, it waits until every answered event is processed and
// reads the processed_at times.
func endToEnd(ctx context.Context, h *harness, opts options) ([]Latency, *Burst, error) {
	w, err := startService(ctx, filepath.Join(opts.bin, "worker"), nil, h.env, "WORKER_HTTP_PORT")
	if err != nil {
		return nil, nil, err
	}
	defer w.Stop()
	in, err := startService(ctx, filepath.Join(opts.bin, "ingest"), nil, withEnv(h.env, "SHUTDOWN_TIMEOUT=5s"), "PORT")
	if err != nil {
		return nil, nil, err
	}
	defer in.Stop()
	o := loadgen.Options{URL: in.Base + webhookPath, Secret: secret, EventType: "account.updated", Accounts: opts.accounts, Record: true}
	idle := opts.idleBefore
	var lats []Latency
	for _, r := range opts.rates {
		fmt.Fprintf(os.Stderr, "latency: %.0fs idle, then %g deliveries/s for %s…\n", idle.Seconds(), r.perSec, r.d)
		if !sleep(ctx, idle) {
			return nil, nil, ctx.Err()
		}
		o.Concurrency, o.Rate, o.Duration = openLoopConns, r.perSec, r.d
		rep, err := loadgen.Run(ctx, o)
		if err != nil {
			return nil, nil, err
		}
		s, err := settle(ctx, h.conn, rep.Deliveries)
		if err != nil {
			return nil, nil, err
		}
		l := Latency{Rate: r.perSec, IdleSec: idle.Seconds(), Deliveries: len(rep.Deliveries), Non200: s.non200,
			Ingest: rep, P50Ms: s.p.P50Ms, P90Ms: s.p.P90Ms, P99Ms: s.p.P99Ms, MaxMs: s.p.MaxMs, Unprocessed: s.unprocessed}
		l.Ingest.Deliveries = nil
		lats = append(lats, l)
	}
	if opts.burstN <= 0 {
		return lats, nil, nil
	}
	b, err := burst(ctx, h, o, opts)
	return lats, b, err
}

// burst idles for idle-before, then sends burst deliveries from burst-c
// clients back to back through o, and waits until they are processed.
func burst(ctx context.Context, h *harness, o loadgen.Options, opts options) (*Burst, error) {
	idle := opts.idleBefore
	fmt.Fprintf(os.Stderr, "burst: %.0fs idle, then %d deliveries from %d clients…\n", idle.Seconds(), opts.burstN, opts.burstC)
	if !sleep(ctx, idle) {
		return nil, ctx.Err()
	}
	o.Concurrency, o.Rate, o.Duration, o.Requests = opts.burstC, 0, 0, opts.burstN
	rep, err := loadgen.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	s, err := settle(ctx, h.conn, rep.Deliveries)
	if err != nil {
		return nil, err
	}
	b := &Burst{Deliveries: len(rep.Deliveries), Clients: opts.burstC, IdleSec: idle.Seconds(), Non200: s.non200,
		IngestP99Ms: rep.P99Ms, P50Ms: s.p.P50Ms, P99Ms: s.p.P99Ms, MaxMs: s.p.MaxMs, Unprocessed: s.unprocessed}
	if !s.lastOK.IsZero() {
		b.StoreSec = s.lastOK.Sub(s.firstSent).Seconds()
		b.StoredPerSec = float64(s.ok) / b.StoreSec
		b.LastOKToAllSec = s.lastProcessed.Sub(s.lastOK).Seconds()
		b.ProcessedByLastOK = s.processedByLastOK
	}
	return b, nil
}

// settled is what became of a run's deliveries.
type settled struct {
	ok, non200, unprocessed int
	firstSent, lastOK       time.Time
	lastProcessed           time.Time
	// processedByLastOK counts the events processed by the last 200.
	processedByLastOK int
	// p holds the percentiles of 200 → processed_at.
	p loadgen.Report
}

// settle waits (up to settleWait) until every 200-answered delivery's event
// is processed, then reads each processed_at: written in UTC by the worker
// when it claims the event, in the transaction that applies it.
func settle(ctx context.Context, conn *pgx.Conn, ds []loadgen.Delivery) (settled, error) {
	var s settled
	answered := map[string]time.Time{}
	for _, d := range ds {
		if s.firstSent.IsZero() || d.Sent.Before(s.firstSent) {
			s.firstSent = d.Sent
		}
		if d.Status != 200 {
			s.non200++
			continue
		}
		answered[d.ID] = d.Answered
		if d.Answered.After(s.lastOK) {
			s.lastOK = d.Answered
		}
	}
	s.ok = len(answered)
	ids := make([]string, 0, len(answered))
	for id := range answered {
		ids = append(ids, id)
	}
	deadline := time.Now().Add(settleWait)
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM webhook_events WHERE stripe_event_id = ANY($1) AND processed", ids).Scan(&n); err != nil {
			return s, err
		}
		if n == len(ids) || time.Now().After(deadline) {
			break
		}
		if !sleep(ctx, 250*time.Millisecond) {
			return s, ctx.Err()
		}
	}
	rows, err := conn.Query(ctx, "SELECT stripe_event_id, processed_at FROM webhook_events WHERE stripe_event_id = ANY($1) AND processed", ids)
	if err != nil {
		return s, err
	}
	var lat []time.Duration
	for rows.Next() {
		var id string
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return s, err
		}
		lat = append(lat, at.Sub(answered[id]))
		if !at.After(s.lastOK) {
			s.processedByLastOK++
		}
		if at.After(s.lastProcessed) {
			s.lastProcessed = at
		}
	}
	if err := rows.Err(); err != nil {
		return s, err
	}
	s.unprocessed = len(ids) - len(lat)
	s.p = loadgen.Summarise(1, lat, nil, 0, time.Second, 0)
	return s, nil
}

// sleep waits for d, or less if ctx ends first; it reports whether ctx is
// still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
