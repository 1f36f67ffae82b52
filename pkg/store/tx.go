package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"stripe-webhooks/pkg/telemetry"
)

// Tx is the transaction a handler runs in; its methods are the only writes
// handlers make. Reads that decide something (an account's row, locked) go
// to Postgres at once; writes are sent with the commit, in one round trip.
type Tx struct {
	conn    *pgx.Conn
	pending *pgx.Batch
	// accounts are the rows this transaction holds locked, as its queued
	// writes leave them.
	accounts map[string]ConnectedAccount
	// externals are the external accounts' rows it holds locked, as its
	// queued writes leave them (a zero row: none stored).
	externals map[string]ExternalAccount
	// resyncTies and reportTie are set by SettleTies.
	resyncTies bool
	reportTie  func(Tie)
	// afterCommit runs once the transaction has committed.
	afterCommit []func()
}

// newTx is a transaction on conn, which has begun it or will with the
// first statement queued.
func newTx(conn *pgx.Conn) *Tx {
	return &Tx{conn: conn, pending: &pgx.Batch{}, accounts: map[string]ConnectedAccount{},
		externals: map[string]ExternalAccount{}}
}

// ApplyFunc applies one event inside tx.
type ApplyFunc func(ctx context.Context, tx *Tx, event WebhookEvent) error

// safeApply runs apply, turning a panic into an error so that it is rolled
// back and recorded like any other failure.
func safeApply(ctx context.Context, tx *Tx, event WebhookEvent, apply ApplyFunc) (err error) {
	if event.payloadErr != nil {
		return event.payloadErr // the event's own failure: recorded, retried, then dead
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return apply(ctx, tx, event)
}

// send sends, in one round trip, the writes queued so far followed by what
// queue adds: a locking read, which then sees them.
func (tx *Tx) send(ctx context.Context, queue func(*pgx.Batch)) error {
	b := tx.pending
	tx.pending = &pgx.Batch{}
	queue(b)
	return tx.conn.SendBatch(ctx, b).Close()
}

// commitTraced is commit inside a store.commit span.
func (tx *Tx) commitTraced(ctx context.Context) error {
	ctx, span := startStep(ctx, "store.commit")
	defer span.End()
	err := tx.commit(ctx)
	telemetry.Fail(span, err)
	return err
}

// commit sends the queued writes and COMMIT in one round trip, then runs
// what waited for the commit.
func (tx *Tx) commit(ctx context.Context) error {
	tx.pending.Queue("COMMIT")
	if err := tx.conn.SendBatch(ctx, tx.pending).Close(); err != nil {
		return err
	}
	for _, fn := range tx.afterCommit {
		fn()
	}
	tx.afterCommit = nil
	return nil
}
