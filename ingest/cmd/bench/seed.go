package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
)

// seed stores and queues n account.updated events over 2,000 accounts, as
// the ingest would, with group commit and pipelined enqueues.
func seed(ctx context.Context, st *store.Store, enq *queue.Enqueuer, n int) error {
	in, err := st.NewInserter(store.InserterOptions{Batches: 4, MaxBatch: 500, AfterCommit: func(_ context.Context, rows []store.Committed) error {
		jobs := make([]queue.Job, len(rows))
		for i, r := range rows {
			jobs[i] = queue.Job{WebhookID: r.WebhookID, EventID: r.StripeEventID, EventType: r.EventType}
		}
		_, err := enq.EnqueueMany(ctx, jobs)
		return err
	}})
	if err != nil {
		return err
	}
	defer in.Close()
	errs := make(chan error, 16)
	for w := range 16 {
		go func() {
			for i := w; i < n; i += 16 {
				p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: fmt.Sprintf("acct_bench_%04d", i%2000)})
				var e struct{ ID, Type string }
				_ = json.Unmarshal(p, &e)
				res, err := in.Insert(ctx, store.NewEvent{StripeEventID: e.ID, EventType: e.Type, Payload: p, ReceivedAt: time.Now()})
				if err == nil {
					err = res.AfterCommitErr
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}
