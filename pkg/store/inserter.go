package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Inserter stores deliveries with group commit: deliveries that arrive
// while a commit is in flight are stored together by the next one, in one
// multi-row INSERT … ON CONFLICT (stripe_event_id) DO NOTHING and one
// commit, and each caller is answered only after that commit. Under light
// load a delivery is stored alone at once; no delivery waits for a batch to
// fill.
type Inserter struct {
	db          *sql.DB
	afterCommit AfterCommit
	batchFailed func(err error, deliveries int)
	reqs        chan *insertReq
	maxBatch    int
	stop        chan struct{}
	wg          sync.WaitGroup
	once        sync.Once
}

type insertReq struct {
	ev   NewEvent
	res  Stored
	err  error
	done chan struct{}
}

// Committed is a delivery whose row is committed.
type Committed struct {
	Stored
	StripeEventID string
	EventType     string
}

// AfterCommit runs once per batch, after its commit and before any of its
// callers is answered (the ingest queues the batch's jobs in one round trip
// to Redis). Its error is each row's AfterCommitErr; the rows stay stored.
// It runs on a goroutine of its own, so that the flusher goes on storing
// the next batch meanwhile: a slow hook delays its own batch's answers
// only, never the deliveries behind it. It must bound its own wait.
type AfterCommit func(rows []Committed) error

// InserterOptions configures an Inserter.
type InserterOptions struct {
	// Flushers is how many batches are stored at once (default 1).
	Flushers int
	// MaxBatch is the most deliveries in one statement (default 1).
	MaxBatch int
	// AfterCommit, if set, runs once per committed batch.
	AfterCommit AfterCommit
	// BatchFailed, if set, is told why a batch's statement failed and how
	// many deliveries it held; they are then stored one by one, so that
	// only a row Postgres refuses fails.
	BatchFailed func(err error, deliveries int)
}

// NewInserter starts the flushers that store deliveries; Close stops them.
func (s *Store) NewInserter(opts InserterOptions) (*Inserter, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, err
	}
	opts.Flushers, opts.MaxBatch = max(opts.Flushers, 1), max(opts.MaxBatch, 1)
	in := &Inserter{db: sqlDB, afterCommit: opts.AfterCommit, batchFailed: opts.BatchFailed, reqs: make(chan *insertReq),
		maxBatch: opts.MaxBatch, stop: make(chan struct{})}
	for range opts.Flushers {
		in.wg.Add(1)
		go in.flusher()
	}
	return in, nil
}

// Close stops the flushers after the batches in flight and their hooks.
func (in *Inserter) Close() {
	in.once.Do(func() { close(in.stop) })
	in.wg.Wait()
}

// ErrInserterClosed answers deliveries that arrive after Close.
var ErrInserterClosed = errors.New("store: inserter closed")

// Insert stores one delivery once per Stripe event id, like InsertEvent, and
// returns after the commit that made it durable.
func (in *Inserter) Insert(ctx context.Context, ev NewEvent) (Stored, error) {
	r := &insertReq{ev: ev, done: make(chan struct{})}
	select {
	case in.reqs <- r:
	case <-in.stop:
		return Stored{}, ErrInserterClosed
	case <-ctx.Done():
		return Stored{}, ctx.Err()
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		// The batch may still commit; a redelivery then reads as a duplicate.
		return Stored{}, ctx.Err()
	}
}

func (in *Inserter) flusher() {
	defer in.wg.Done()
	batch := make([]*insertReq, 0, in.maxBatch)
	params := &batchParams{}
	for {
		select {
		case r := <-in.reqs:
			batch = append(batch[:0], r)
		case <-in.stop:
			return
		}
	fill:
		for len(batch) < in.maxBatch {
			select {
			case r := <-in.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		in.flush(batch, params)
	}
}

// insertBatch is one statement for any batch size, so it is prepared once.
const insertBatch = `INSERT INTO webhook_events (stripe_event_id, event_type, payload, received_at, livemode, stripe_account_id)
SELECT e.id, e.type, e.payload::jsonb, e.received_at, e.livemode, NULLIF(e.account, '')
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamp[], $5::boolean[], $6::text[])
	AS e(id, type, payload, received_at, livemode, account)
ON CONFLICT (stripe_event_id) DO NOTHING
RETURNING id, stripe_event_id`

func (in *Inserter) flush(batch []*insertReq, params *batchParams) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// One candidate row per event id; later copies in the batch are duplicates of it.
	first := make(map[string]*insertReq, len(batch))
	var ids, types []string
	var payloads [][]byte
	var received []time.Time
	var livemode []bool
	var accounts []string
	for _, r := range batch {
		if _, dup := first[r.ev.StripeEventID]; dup {
			continue
		}
		first[r.ev.StripeEventID] = r
		ids = append(ids, r.ev.StripeEventID)
		types = append(types, r.ev.EventType)
		payloads = append(payloads, r.ev.Payload)
		received = append(received, r.ev.ReceivedAt.UTC())
		livemode = append(livemode, r.ev.Livemode)
		accounts = append(accounts, r.ev.account())
	}
	inserted, err := insertRows(ctx, in.db, params, ids, types, payloads, received, livemode, accounts)
	if err != nil && len(ids) > 1 && ctx.Err() == nil {
		// One bad row (say, a payload jsonb refuses) must not fail its
		// neighbours: store them one by one, so only it gets the error.
		if in.batchFailed != nil {
			in.batchFailed(err, len(ids))
		}
		inserted, err = in.insertOneByOne(ctx, batch, first, params)
	}
	var existing map[string]Stored
	if err == nil && len(inserted) < len(ids) {
		var missing []string
		for _, id := range ids {
			if _, ok := inserted[id]; !ok {
				missing = append(missing, id)
			}
		}
		existing, err = lookupRows(ctx, in.db, missing)
	}
	for _, r := range batch {
		switch {
		case r.err != nil:
			// Failed on its own (insertOneByOne).
		case first[r.ev.StripeEventID].err != nil:
			r.err = first[r.ev.StripeEventID].err
		case err != nil:
			r.err = fmt.Errorf("store: insert events: %w", err)
		case first[r.ev.StripeEventID] != r:
			// A copy of an event earlier in this batch.
			r.res = inserted[r.ev.StripeEventID]
			if r.res.WebhookID == "" {
				r.res = existing[r.ev.StripeEventID]
			}
			r.res.Inserted = false
		default:
			if s, ok := inserted[r.ev.StripeEventID]; ok {
				r.res = s
			} else if s, ok := existing[r.ev.StripeEventID]; ok {
				r.res = s
			} else {
				r.err = fmt.Errorf("store: event %s neither inserted nor found", r.ev.StripeEventID)
			}
		}
	}
	if err != nil || in.afterCommit == nil {
		answer(batch)
		return
	}
	rows := make([]Committed, 0, len(batch))
	for _, r := range batch {
		if r.err == nil {
			rows = append(rows, Committed{Stored: r.res, StripeEventID: r.ev.StripeEventID, EventType: r.ev.EventType})
		}
	}
	batch = slices.Clone(batch) // the flusher reuses its slice
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		if hookErr := in.afterCommit(rows); hookErr != nil {
			for _, r := range batch {
				r.res.AfterCommitErr = hookErr
			}
		}
		answer(batch)
	}()
}

// answer wakes the callers of a finished batch.
func answer(batch []*insertReq) {
	for _, r := range batch {
		close(r.done)
	}
}

// insertBatchName names insertBatch's prepared statement on each connection
// (behind PgBouncer: session pooling, or transaction pooling with
// max_prepared_statements; see JSON).
const insertBatchName = "sw_insert_batch"

// insertRows runs insertBatch and returns the rows it inserted, by event id.
// The parameters are encoded into params' kept buffer (nil: a new one) and
// sent with the prepared statement as they are.
func insertRows(ctx context.Context, db *sql.DB, params *batchParams, ids, types []string, payloads [][]byte, received []time.Time,
	livemode []bool, accounts []string) (map[string]Stored, error) {
	if params == nil {
		params = &batchParams{}
	}
	out := make(map[string]Stored, len(ids))
	err := withConn(ctx, db, func(conn *pgx.Conn) error {
		sd, err := conn.Prepare(ctx, insertBatchName, insertBatch)
		if err != nil {
			return err
		}
		values := params.encode(ids, types, payloads, received, livemode, accounts)
		rr := conn.PgConn().ExecPrepared(ctx, sd.Name, values, binaryParams[:], nil)
		for rr.NextRow() {
			row := rr.Values() // text format: id, stripe_event_id
			out[string(row[1])] = Stored{WebhookID: string(row[0]), Inserted: true}
		}
		_, err = rr.Close()
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// binaryParams sends each of insertBatch's parameters in binary format.
var binaryParams = [6]int16{1, 1, 1, 1, 1, 1}

// insertOneByOne stores each candidate row alone; a row that fails is
// answered with its own error.
func (in *Inserter) insertOneByOne(ctx context.Context, batch []*insertReq, first map[string]*insertReq, params *batchParams) (map[string]Stored, error) {
	out := map[string]Stored{}
	for _, r := range batch {
		if first[r.ev.StripeEventID] != r {
			continue
		}
		got, err := insertRows(ctx, in.db, params, []string{r.ev.StripeEventID}, []string{r.ev.EventType}, [][]byte{r.ev.Payload},
			[]time.Time{r.ev.ReceivedAt.UTC()}, []bool{r.ev.Livemode}, []string{r.ev.account()})
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			r.err = fmt.Errorf("store: insert event: %w", err)
			continue
		}
		for k, v := range got {
			out[k] = v
		}
	}
	return out, nil
}

// lookupRows reads the rows of event ids that were already stored. ON
// CONFLICT waited for any concurrent insert of them to commit, so they are
// visible.
func lookupRows(ctx context.Context, db *sql.DB, ids []string) (map[string]Stored, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, stripe_event_id, processed FROM webhook_events WHERE stripe_event_id = ANY($1::text[])`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]Stored, len(ids))
	for rows.Next() {
		var webhookID, eventID string
		var processed bool
		if err := rows.Scan(&webhookID, &eventID, &processed); err != nil {
			return nil, err
		}
		out[eventID] = Stored{WebhookID: webhookID, Processed: processed}
	}
	return out, rows.Err()
}
