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
	"stripe-webhooks/pkg/stripefixture"
)

// dbCeiling runs single-row INSERT … ON CONFLICT DO NOTHING autocommits of
// the same payloads, from c goroutines, for d: what Postgres alone allows.
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
				_, err := pool.Exec(ctx, `INSERT INTO webhook_events (stripe_event_id, event_type, payload)
					VALUES ($1, $2, $3) ON CONFLICT (stripe_event_id) DO NOTHING`, id, "account.updated", string(payload))
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
