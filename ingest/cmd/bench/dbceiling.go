package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"stripe-webhooks/ingest/loadgen"
	payloadcodec "stripe-webhooks/pkg/payload"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
)

// ceilingInsert stores one event as the store does (its row, compressed
// payload, and pending row), once per id.
const ceilingInsert = `WITH stored AS (
	INSERT INTO webhook_events (id, stripe_event_id, event_type, payload) VALUES ($1, $2, $3, $4)
	ON CONFLICT (id) DO NOTHING RETURNING id, created_at)
INSERT INTO pending_events (id, created_at) SELECT id, created_at FROM stored`

// dbCeiling runs single-row autocommits of ceilingInsert with the same
// payloads, from c goroutines, for d: what Postgres alone allows.
func dbCeiling(ctx context.Context, dbURL string, c int, d time.Duration) (loadgen.Report, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return loadgen.Report{}, err
	}
	cfg.MaxConns = int32(min(c, maxDBConns))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return loadgen.Report{}, err
	}
	defer pool.Close()
	const placeholder = "evt_DBCEILINGxxxxxxxxxxxxxxxxxx"
	template := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: placeholder})
	at := bytes.Index(template, []byte(placeholder))
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	began := time.Now()
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := slices.Clone(template)
			var local []time.Duration
			localErrs := 0
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("evt_db%03d%0*d", w, len(placeholder)-9, i)
				copy(payload[at:], id)
				t0 := time.Now()
				_, err := pool.Exec(ctx, ceilingInsert, store.EventKey(time.Now(), id), id, "account.updated",
					payloadcodec.Encode(payload))
				if err != nil {
					if ctx.Err() == nil {
						localErrs++
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += localErrs
			mu.Unlock()
		}()
	}
	wg.Wait()
	return loadgen.Summarise(c, lat, map[string]int{"ok": len(lat)}, errs, time.Since(began), len(template)), nil
}
