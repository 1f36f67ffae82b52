package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
)

func TestInsertEventConcurrentDuplicatesGiveOneRow(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	const n = 25
	var wg sync.WaitGroup
	results := make([]store.Stored, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = s.InsertEvent(ctx, store.NewEvent{
				StripeEventID: "evt_concurrent", EventType: "account.updated",
				Payload: []byte(`{"id":"evt_concurrent","type":"account.updated"}`), ReceivedAt: time.Now(),
			})
		}()
	}
	close(start)
	wg.Wait()
	inserted := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("insert %d: %v", i, errs[i])
		}
		if results[i].Inserted {
			inserted++
		}
		if results[i].WebhookID != results[0].WebhookID || results[i].WebhookID == "" {
			t.Errorf("insert %d mapped to row %q, insert 0 to %q", i, results[i].WebhookID, results[0].WebhookID)
		}
	}
	if inserted != 1 {
		t.Errorf("inserted = %d, want 1", inserted)
	}
	var rows int64
	if err := s.DB().Model(&store.WebhookEvent{}).Where("stripe_event_id = ?", "evt_concurrent").Count(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Errorf("rows = %d, want 1", rows)
	}
}

func TestInsertEventPayloadRoundTrips(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	payload := []byte(`{
	  "id": "evt_roundtrip", "object": "event", "type": "account.updated", "created": 1721948530,
	  "data": {"object": {"id": "acct_1", "charges_enabled": true, "big": 12345678901234567890,
	    "price": 19.99, "name": "Zoë \"quoted\" \u00e9 \ud83d\ude00", "nested": {"list": [1, null, "x", {"a": []}]}}},
	  "api_version": "2023-10-16", "request": {"id": null, "idempotency_key": null}
	}`)
	// Stored as UTC, to the microsecond.
	received := time.Date(2026, 1, 2, 4, 4, 5, 123456789, time.FixedZone("CET", 3600))
	res, err := s.InsertEvent(ctx, store.NewEvent{StripeEventID: "evt_roundtrip", EventType: "account.updated", Payload: payload, ReceivedAt: received})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Inserted {
		t.Fatal("first insert not reported as inserted")
	}
	got, err := s.EventByStripeID(ctx, "evt_roundtrip")
	if err != nil {
		t.Fatal(err)
	}
	var want, have any
	dec := func(b []byte, v *any) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	dec(payload, &want)
	dec(got.Payload, &have)
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("payload changed (-want +got):\n%s", diff)
	}
	if got.ID != res.WebhookID || got.EventType != "account.updated" || got.Processed || got.RetryCount != 0 || got.Error != nil {
		t.Errorf("row = %+v", got)
	}
	if want := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC); !got.ReceivedAt.Equal(want) {
		t.Errorf("received_at = %s, want %s", got.ReceivedAt, want)
	}
	if d := time.Since(got.CreatedAt); d < -time.Minute || d > time.Minute {
		t.Errorf("created_at = %s is not UTC now", got.CreatedAt)
	}
	// A repeat reports the existing row.
	again, err := s.InsertEvent(ctx, store.NewEvent{StripeEventID: "evt_roundtrip", EventType: "account.updated", Payload: payload, ReceivedAt: received})
	if err != nil {
		t.Fatal(err)
	}
	if again.Inserted || again.WebhookID != res.WebhookID || again.Processed {
		t.Errorf("duplicate = %+v, want the first row, not inserted", again)
	}
}

// A delivery's body is stored compressed by the application (a zstd frame,
// pkg/payload), a fraction of its size, and reads back byte for byte, its
// spacing and key order included.
func TestPayloadIsStoredCompressedAndReadsBackByteForByte(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	var indented bytes.Buffer
	if err := json.Indent(&indented, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_zstd"}), "", "  "); err != nil {
		t.Fatal(err)
	}
	raw := indented.Bytes()
	if _, err := s.InsertEvent(ctx, store.NewEvent{StripeEventID: "evt_zstd", EventType: "account.updated", Payload: raw, ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := s.DB().Raw(`SELECT payload FROM webhook_events WHERE stripe_event_id = 'evt_zstd'`).Row().Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(stored, []byte{0x28, 0xb5, 0x2f, 0xfd}) || len(stored) > len(raw)/4 {
		t.Errorf("stored %d bytes starting % x for a body of %d: want a zstd frame under a quarter of it", len(stored), stored[:min(4, len(stored))], len(raw))
	}
	got, err := s.EventByStripeID(ctx, "evt_zstd")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Payload, raw) {
		t.Error("payload does not read back byte for byte")
	}
}

// Both insert paths store the payload's top-level account in a column of
// its own (the console's account index), and NULL when there is none.
func TestInsertStoresTheConnectedAccount(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	in, err := s.NewInserter(store.InserterOptions{MaxBatch: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for _, e := range []struct{ id, payload string }{
		{"evt_acct_one", `{"id":"evt_acct_one","type":"account.updated","account":"acct_one","data":{"object":{}}}`},
		{"evt_platform", `{"id":"evt_platform","type":"plan.created","data":{"object":{"account":"acct_nested"}}}`},
	} {
		if _, err := s.InsertEvent(ctx, store.NewEvent{StripeEventID: e.id, EventType: "x", Payload: []byte(e.payload), ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		batched := e.id + "_batched"
		p := strings.Replace(e.payload, e.id, batched, 1)
		if _, err := in.Insert(ctx, store.NewEvent{StripeEventID: batched, EventType: "x", Payload: []byte(p), ReceivedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]*string{}
	rows, err := s.DB().Raw("SELECT stripe_event_id, stripe_account_id FROM webhook_events").Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var acct *string
		if err := rows.Scan(&id, &acct); err != nil {
			t.Fatal(err)
		}
		got[id] = acct
	}
	for _, id := range []string{"evt_acct_one", "evt_acct_one_batched"} {
		if got[id] == nil || *got[id] != "acct_one" {
			t.Errorf("%s: stripe_account_id %v, want acct_one", id, got[id])
		}
	}
	for _, id := range []string{"evt_platform", "evt_platform_batched"} {
		if a, ok := got[id]; !ok || a != nil {
			t.Errorf("%s: stripe_account_id %v (stored %v), want NULL", id, a, ok)
		}
	}
}
