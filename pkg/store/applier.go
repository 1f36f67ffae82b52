package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidwall/gjson"
)

// Applier is group commit for the worker: the events of jobs running at the
// same moment in one process are applied in one transaction (one claim of
// all their rows, one commit), each job answered after that commit. A job
// running alone takes ProcessEvent's path. If anything in a group fails, the
// group is rolled back and each of its events is processed on its own, so a
// failure is recorded against its own event only.
type Applier struct {
	store    *Store
	apply    ApplyFunc
	timeout  time.Duration
	maxBatch int
	reqs     chan *applyReq
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

type applyReq struct {
	webhookID string
	attempt   Attempt
	outcome   Outcome
	event     WebhookEvent
	err       error
	done      chan struct{}
}

// NewApplier starts flushers goroutines applying up to maxBatch events per
// transaction with apply, each group within timeout.
func (s *Store) NewApplier(apply ApplyFunc, flushers, maxBatch int, timeout time.Duration) *Applier {
	a := &Applier{store: s, apply: apply, timeout: timeout, maxBatch: maxBatch,
		reqs: make(chan *applyReq), stop: make(chan struct{})}
	for range flushers {
		a.wg.Add(1)
		go a.flusher()
	}
	return a
}

// Close stops the flushers after the groups in flight.
func (a *Applier) Close() {
	a.once.Do(func() { close(a.stop) })
	a.wg.Wait()
}

// Process applies one event as ProcessEvent does, possibly together with
// the events of other jobs running at the same time.
func (a *Applier) Process(ctx context.Context, webhookID string, attempt Attempt) (Outcome, WebhookEvent, error) {
	r := &applyReq{webhookID: webhookID, attempt: attempt, done: make(chan struct{})}
	select {
	case a.reqs <- r:
	case <-a.stop:
		return a.store.ProcessEvent(ctx, webhookID, attempt, a.apply)
	case <-ctx.Done():
		return 0, WebhookEvent{}, ctx.Err()
	}
	<-r.done
	return r.outcome, r.event, r.err
}

func (a *Applier) flusher() {
	defer a.wg.Done()
	for {
		var batch []*applyReq
		select {
		case r := <-a.reqs:
			batch = append(batch, r)
		case <-a.stop:
			return
		}
	fill:
		for len(batch) < a.maxBatch {
			select {
			case r := <-a.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		a.flush(batch)
	}
}

func (a *Applier) flush(batch []*applyReq) {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	if len(batch) > 1 && a.group(ctx, batch) == nil {
		return
	}
	// Alone, or the group failed: each event on its own, failures recorded.
	for _, r := range batch {
		r.outcome, r.event, r.err = a.store.ProcessEvent(ctx, r.webhookID, r.attempt, a.apply)
	}
}

// group applies the batch's events in one transaction; any error rolls it
// all back and is returned.
func (a *Applier) group(ctx context.Context, batch []*applyReq) error {
	sqlDB, err := a.store.db.DB()
	if err != nil {
		return err
	}
	ids := make([]string, len(batch))
	for i, r := range batch {
		ids[i] = r.webhookID
	}
	now := time.Now().UTC()
	claimed := map[string]WebhookEvent{}
	err = withConn(ctx, sqlDB, func(conn *pgx.Conn) error {
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		var events []WebhookEvent
		b.Queue(`UPDATE webhook_events SET processed = true, processed_at = $2, error = NULL, dead_at = NULL, next_attempt_at = NULL
			WHERE id = ANY($1::uuid[]) AND NOT processed
			RETURNING id, stripe_event_id, event_type, payload::text, retry_count, received_at, created_at`, ids, now).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					e := WebhookEvent{Processed: true, ProcessedAt: &now}
					var payload string
					if err := rows.Scan(&e.ID, &e.StripeEventID, &e.EventType, &payload, &e.RetryCount, &e.ReceivedAt, &e.CreatedAt); err != nil {
						return err
					}
					e.Payload = JSON(payload)
					events = append(events, e)
				}
				return rows.Err()
			})
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("store: claim events: %w", err)
		}
		// Lock accounts in one order in every group (by connected account,
		// then event), so that two groups never wait on each other.
		account := make(map[string]string, len(events))
		for _, e := range events {
			account[e.ID] = gjson.GetBytes(e.Payload, "account").Str
		}
		slices.SortFunc(events, func(x, y WebhookEvent) int {
			return cmp.Or(cmp.Compare(account[x.ID], account[y.ID]),
				cmp.Compare(x.CreatedAt.UnixNano(), y.CreatedAt.UnixNano()), cmp.Compare(x.ID, y.ID))
		})
		tx := &Tx{conn: conn, pending: &pgx.Batch{}, accounts: map[string]ConnectedAccount{}}
		// The group's existing accounts, locked in one round trip; the
		// handlers read them from here.
		var accounts []string
		for _, e := range events {
			if id := account[e.ID]; id != "" && !slices.Contains(accounts, id) {
				accounts = append(accounts, id)
			}
		}
		if len(accounts) > 0 {
			if err := tx.lockAccounts(ctx, accounts); err != nil {
				return err
			}
		}
		for _, e := range events {
			if err := safeApply(ctx, tx, e, a.apply); err != nil {
				return err
			}
			claimed[e.ID] = e
		}
		tx.pending.Queue("COMMIT")
		if err := conn.SendBatch(ctx, tx.pending).Close(); err != nil {
			return fmt.Errorf("store: apply and commit: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Rows not claimed were processed already, or are gone. Two jobs of one
	// event in the group: the first applied it, the second finds it done.
	var missing []string
	answered := map[string]bool{}
	for _, r := range batch {
		e, ok := claimed[r.webhookID]
		switch {
		case ok && !answered[r.webhookID]:
			r.outcome, r.event = Applied, e
			answered[r.webhookID] = true
		case ok:
			r.outcome, r.event = AlreadyProcessed, e
		default:
			missing = append(missing, r.webhookID)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var present []string
	if err := a.store.db.WithContext(ctx).Model(&WebhookEvent{}).Where("id IN ?", missing).Pluck("id", &present).Error; err != nil {
		return errors.Join(errors.New("store: events committed, but their state could not be read"), err)
	}
	for _, r := range batch {
		if _, ok := claimed[r.webhookID]; ok {
			continue
		}
		r.outcome, r.event = Missing, WebhookEvent{ID: r.webhookID}
		if slices.Contains(present, r.webhookID) {
			r.outcome, r.event = AlreadyProcessed, WebhookEvent{ID: r.webhookID, Processed: true}
		}
	}
	return nil
}
