package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/worker/internal/testkit"
)

// worker payload prints an event's payload byte for byte as delivered (the
// table holds it compressed); an unknown event is an error, a missing id a
// usage error.
func TestPayloadCommandPrintsTheBodyAsDelivered(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	var indented bytes.Buffer
	if err := json.Indent(&indented, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_show"}), "", "  "); err != nil {
		t.Fatal(err)
	}
	b.Seed(t, indented.Bytes())
	var out bytes.Buffer
	if err := run(context.Background(), []string{"worker", "payload", "evt_show"}, b.Env(t, nil), &out, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), indented.Bytes()) {
		t.Errorf("worker payload printed %d bytes, not the %d delivered", out.Len(), indented.Len())
	}
	out.Reset()
	err := run(context.Background(), []string{"worker", "payload", "evt_unknown"}, b.Env(t, nil), &out, &out)
	if code := config.ExitCode(err, &out); code != 1 {
		t.Errorf("an unknown event: exit %d (%v), want 1", code, err)
	}
	err = run(context.Background(), []string{"worker", "payload"}, b.Env(t, nil), &out, &out)
	if code := config.ExitCode(err, &out); code != 2 {
		t.Errorf("no event id: exit %d (%v), want 2", code, err)
	}
}
