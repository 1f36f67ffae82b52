package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"stripe-webhooks/pkg/telemetry"
)

// Inserter stores deliveries with group commit: deliveries that arrive
// while a commit is in flight are stored together by the next one, in one
// multi-row INSERT … ON CONFLICT (id) DO NOTHING and one
// commit, and each caller is answered only after that commit. Under light
// load a delivery is stored alone at once; no delivery waits for a batch to
// fill. Up to Batches such statements are in flight at once, each sent by
// a goroutine of its own that takes the deliveries waiting, up to MaxBatch,
// as its next batch.
type Inserter struct {
	store       *Store
	afterCommit AfterCommit
	batchFailed func(err error, deliveries int)
	deliveries  chan *delivery
	maxBatch    int
	stop        chan struct{}
	wg          sync.WaitGroup
	once        sync.Once
}

// delivery is one caller of Insert: its event, and the answer it waits for.
type delivery struct {
	// ctx is the caller's: its span, if any, is linked to the batch's.
	ctx  context.Context
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
// It runs on a goroutine of its own, so that the next batch is stored
// meanwhile: a slow hook delays its own batch's answers only, never the
// deliveries behind it. It must bound its own wait: ctx has no deadline,
// and holds the batch's span when tracing is on.
type AfterCommit func(ctx context.Context, rows []Committed) error

// InserterOptions configures an Inserter.
type InserterOptions struct {
	// Batches is how many batches are stored at once (default 1).
	Batches int
	// MaxBatch is the most deliveries in one statement (default 1).
	MaxBatch int
	// AfterCommit, if set, runs once per committed batch.
	AfterCommit AfterCommit
	// BatchFailed, if set, is told why a batch's statement failed and how
	// many deliveries it held; they are then stored one by one, so that
	// only a row Postgres refuses fails.
	BatchFailed func(err error, deliveries int)
}

// NewInserter starts the goroutines that store deliveries; Close stops them.
func (s *Store) NewInserter(opts InserterOptions) (*Inserter, error) {
	opts.Batches, opts.MaxBatch = max(opts.Batches, 1), max(opts.MaxBatch, 1)
	in := &Inserter{store: s, afterCommit: opts.AfterCommit, batchFailed: opts.BatchFailed,
		deliveries: make(chan *delivery), maxBatch: opts.MaxBatch, stop: make(chan struct{})}
	for range opts.Batches {
		in.wg.Add(1)
		go in.runBatches()
	}
	return in, nil
}

// Close stops the goroutines after the batches in flight and their hooks.
func (in *Inserter) Close() {
	in.once.Do(func() { close(in.stop) })
	in.wg.Wait()
}

// ErrInserterClosed answers deliveries that arrive after Close.
var ErrInserterClosed = errors.New("store: inserter closed")

// Insert stores one delivery once per Stripe event id, like InsertEvent, and
// returns after the commit that made it durable. With tracing on, the span
// of ctx is linked to its batch's span and told the batch committed.
func (in *Inserter) Insert(ctx context.Context, ev NewEvent) (Stored, error) {
	d := &delivery{ctx: ctx, ev: ev, done: make(chan struct{})}
	select {
	case in.deliveries <- d:
	case <-in.stop:
		return Stored{}, ErrInserterClosed
	case <-ctx.Done():
		return Stored{}, ctx.Err()
	}
	select {
	case <-d.done:
		return d.res, d.err
	case <-ctx.Done():
		// The batch may still commit; a redelivery then reads as a duplicate.
		return Stored{}, ctx.Err()
	}
}

// runBatches takes the deliveries waiting, up to MaxBatch, and stores them
// as one batch, again and again until Close, with one parameter buffer
// kept throughout.
func (in *Inserter) runBatches() {
	defer in.wg.Done()
	batch := make([]*delivery, 0, in.maxBatch)
	params := &batchParams{}
	for {
		select {
		case d := <-in.deliveries:
			batch = append(batch[:0], d)
		case <-in.stop:
			return
		}
	more:
		for len(batch) < in.maxBatch {
			select {
			case d := <-in.deliveries:
				batch = append(batch, d)
			default:
				break more
			}
		}
		in.storeBatch(batch, params)
	}
}

// storeBatch stores batch in one statement and one commit (or row by row if
// that fails), then answers each delivery, after the AfterCommit hook.
func (in *Inserter) storeBatch(batch []*delivery, params *batchParams) {
	traced, span := startBatchSpan(batch)
	ctx, cancel := context.WithTimeout(traced, 10*time.Second)
	defer cancel()
	// One candidate row per event id; later copies in the batch are duplicates of it.
	first := make(map[string]*delivery, len(batch))
	var rows eventRows
	for _, d := range batch {
		if _, dup := first[d.ev.StripeEventID]; !dup {
			first[d.ev.StripeEventID] = d
			rows.add(d.ev)
		}
	}
	stored, err := in.insert(ctx, batch, first, rows, params)
	for _, d := range batch {
		d.settle(first[d.ev.StripeEventID], stored, err)
	}
	noteBatch(span, batch, len(rows.ids), err)
	if err != nil || in.afterCommit == nil {
		span.End()
		answer(batch)
		return
	}
	in.runHook(traced, span, slices.Clone(batch)) // the loop reuses its slice
}

// insert stores the candidate rows and returns every one's row by event
// id, inserted or found stored before.
func (in *Inserter) insert(ctx context.Context, batch []*delivery, first map[string]*delivery, rows eventRows,
	params *batchParams) (map[string]Stored, error) {
	stored, err := in.store.insertRows(ctx, params, rows)
	if err != nil && len(rows.ids) > 1 && ctx.Err() == nil {
		// One bad row (say, a value longer than its column) must not fail
		// its neighbours: store them one by one, so only it gets the error.
		if in.batchFailed != nil {
			in.batchFailed(err, len(rows.ids))
		}
		stored, err = in.insertOneByOne(ctx, batch, first, params)
	}
	if err != nil || len(stored) == len(rows.ids) {
		return stored, err
	}
	var missing []string
	for i, id := range rows.ids {
		if _, ok := stored[id]; !ok {
			missing = append(missing, rows.keys[i])
		}
	}
	existing, err := in.store.lookupRows(ctx, missing)
	if err != nil {
		return nil, err
	}
	maps.Copy(stored, existing)
	return stored, nil
}

// insertOneByOne stores each candidate row alone; a row that fails is
// answered with its own error.
func (in *Inserter) insertOneByOne(ctx context.Context, batch []*delivery, first map[string]*delivery, params *batchParams) (map[string]Stored, error) {
	out := map[string]Stored{}
	for _, d := range batch {
		if first[d.ev.StripeEventID] != d {
			continue
		}
		var one eventRows
		one.add(d.ev)
		got, err := in.store.insertRows(ctx, params, one)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			d.err = fmt.Errorf("store: insert event: %w", err)
			continue
		}
		maps.Copy(out, got)
	}
	return out, nil
}

// settle sets d's answer from the batch's outcome: first is the delivery
// of its event id whose row was inserted (d itself, or an earlier copy),
// stored every candidate's row, err the batch's failure.
func (d *delivery) settle(first *delivery, stored map[string]Stored, err error) {
	id := d.ev.StripeEventID
	switch {
	case d.err != nil:
		// Failed on its own (insertOneByOne).
	case first.err != nil:
		d.err = first.err
	case err != nil:
		d.err = fmt.Errorf("store: insert events: %w", err)
	case first != d:
		// A copy of an event earlier in this batch.
		d.res = stored[id]
		d.res.Inserted = false
	default:
		s, ok := stored[id]
		if !ok {
			d.err = fmt.Errorf("store: event %s neither inserted nor found", id)
		}
		d.res = s
	}
}

// runHook runs AfterCommit over the batch's committed rows on a goroutine
// of its own, then ends the batch's span and answers the batch.
func (in *Inserter) runHook(ctx context.Context, span trace.Span, batch []*delivery) {
	rows := make([]Committed, 0, len(batch))
	for _, d := range batch {
		if d.err == nil {
			rows = append(rows, Committed{Stored: d.res, StripeEventID: d.ev.StripeEventID, EventType: d.ev.EventType})
		}
	}
	in.wg.Add(1)
	go func() {
		defer in.wg.Done()
		if hookErr := in.afterCommit(ctx, rows); hookErr != nil {
			telemetry.Fail(span, hookErr)
			for _, d := range batch {
				d.res.AfterCommitErr = hookErr
			}
		}
		span.End()
		answer(batch)
	}()
}

// answer wakes the callers of a finished batch.
func answer(batch []*delivery) {
	for _, d := range batch {
		close(d.done)
	}
}

// startBatchSpan opens the batch's span (telemetry.StartShared: a child of
// its first sampled delivery, linked to each), under a context without
// deadline that its AfterCommit hook runs under too. Off, it is a span that
// records nothing, at no cost.
func startBatchSpan(batch []*delivery) (context.Context, trace.Span) {
	if !telemetry.Enabled() {
		return telemetry.Start(context.Background(), "", trace.SpanKindInternal)
	}
	parents := make([]trace.SpanContext, len(batch))
	for i, d := range batch {
		parents[i] = trace.SpanContextFromContext(d.ctx)
	}
	ctx, span := telemetry.StartShared(context.Background(), "store.insert_batch", parents)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("stripe_webhooks.batch.deliveries", len(batch)))
	}
	return ctx, span
}

// noteBatch records the batch's outcome on its span, and on each delivery's
// span an event and a link to the batch's span: rows is how many distinct
// events it held, err its failure.
func noteBatch(span trace.Span, batch []*delivery, rows int, err error) {
	if !span.IsRecording() {
		return
	}
	inserted := 0
	for _, d := range batch {
		if d.err == nil && d.res.Inserted {
			inserted++
		}
	}
	span.SetAttributes(attribute.Int("stripe_webhooks.batch.events", rows), attribute.Int("stripe_webhooks.batch.inserted", inserted))
	telemetry.Fail(span, err)
	// The event marks when; the link names the batch's span, which tells
	// the rest.
	link := trace.Link{SpanContext: span.SpanContext()}
	for _, d := range batch {
		if ds := trace.SpanFromContext(d.ctx); ds.IsRecording() {
			name := "group commit"
			if d.err != nil {
				name = "group commit failed"
			}
			ds.AddEvent(name)
			ds.AddLink(link)
		}
	}
}
