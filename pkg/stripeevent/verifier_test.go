package stripeevent_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripeevent"
	"stripe-webhooks/pkg/stripefixture"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Now()
	event := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_v"})
	oldVersion := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_old", APIVersion: "2020-08-27"})
	v := stripeevent.NewVerifier([]string{"whsec_old", "whsec_new"})
	tests := []struct {
		name    string
		payload []byte
		header  string
		reason  stripeevent.Reason // empty: accepted
	}{
		{"first secret", event, stripefixture.Sign(event, "whsec_old", now), ""},
		{"second secret", event, stripefixture.Sign(event, "whsec_new", now), ""},
		{"two v1 signatures, one good", event, stripefixture.SignAll(event, []string{"whsec_other", "whsec_new"}, now), ""},
		{"other api_version", oldVersion, stripefixture.Sign(oldVersion, "whsec_new", now), ""},
		{"no header", event, "", stripeevent.NoSignature},
		{"wrong secret", event, stripefixture.Sign(event, "whsec_other", now), stripeevent.BadSignature},
		{"malformed header", event, "garbage", stripeevent.BadSignature},
		{"body changed", append([]byte(" "), event...), stripefixture.Sign(event, "whsec_new", now), stripeevent.BadSignature},
		{"too old", event, stripefixture.Sign(event, "whsec_new", now.Add(-301*time.Second)), stripeevent.TooOld},
		{"not json", []byte("hello"), stripefixture.Sign([]byte("hello"), "whsec_new", now), stripeevent.NotAnEvent},
		{"no id", []byte(`{"type":"account.updated"}`), stripefixture.Sign([]byte(`{"type":"account.updated"}`), "whsec_new", now), stripeevent.NotAnEvent},
		{"no type", []byte(`{"id":"evt_1"}`), stripefixture.Sign([]byte(`{"id":"evt_1"}`), "whsec_old", now), stripeevent.NotAnEvent},
		{"id not a string", []byte(`{"id":1,"type":"x"}`), stripefixture.Sign([]byte(`{"id":1,"type":"x"}`), "whsec_old", now), stripeevent.NotAnEvent},
		{"an array", []byte(`[{"id":"evt_1","type":"x"}]`), stripefixture.Sign([]byte(`[{"id":"evt_1","type":"x"}]`), "whsec_old", now), stripeevent.NotAnEvent},
		{"truncated", event[:len(event)-1], stripefixture.Sign(event[:len(event)-1], "whsec_old", now), stripeevent.NotAnEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev, err := v.Verify(tt.payload, tt.header)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if ev.ID == "" || ev.Type != "account.updated" {
					t.Errorf("event = %s %s", ev.ID, ev.Type)
				}
				return
			}
			var rej *stripeevent.RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("want a RejectError (%s), got %v", tt.reason, err)
			}
			if rej.Reason != tt.reason {
				t.Errorf("reason = %s (%s), want %s", rej.Reason, rej.Message, tt.reason)
			}
		})
	}
}

// reason returns why v rejects the delivery, "" when it accepts it.
func reason(t *testing.T, v *stripeevent.Verifier, payload []byte, header string) stripeevent.Reason {
	t.Helper()
	_, err := v.Verify(payload, header)
	if err == nil {
		return ""
	}
	var rej *stripeevent.RejectError
	if !errors.As(err, &rej) {
		t.Fatalf("want a RejectError, got %v", err)
	}
	return rej.Reason
}

func TestSetSecrets(t *testing.T) {
	t.Parallel()
	now := time.Now()
	event := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	signedOld := stripefixture.Sign(event, "whsec_old", now)
	signedNew := stripefixture.Sign(event, "whsec_new", now)

	if got := reason(t, stripeevent.NewVerifier(nil), event, signedOld); got != stripeevent.BadSignature {
		t.Errorf("verifier without secrets: reason %q, want %s", got, stripeevent.BadSignature)
	}

	initial := []string{"whsec_old"}
	v := stripeevent.NewVerifier(initial)
	initial[0] = "whsec_changed_by_caller"
	if _, err := v.Verify(event, signedOld); err != nil {
		t.Fatalf("NewVerifier did not copy its list: %v", err)
	}

	for _, tt := range []struct {
		name    string
		secrets []string
		want    error
	}{
		{"nil", nil, stripeevent.ErrNoSecrets},
		{"no element", []string{}, stripeevent.ErrNoSecrets},
		{"an empty element", []string{"whsec_new", ""}, stripeevent.ErrEmptySecret},
	} {
		if err := v.SetSecrets(tt.secrets); !errors.Is(err, tt.want) {
			t.Errorf("SetSecrets(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := v.Verify(event, signedOld); err != nil {
		t.Fatalf("a refused list replaced the secrets: %v", err)
	}
	if got := reason(t, v, event, signedNew); got != stripeevent.BadSignature {
		t.Errorf("new secret before SetSecrets: reason %q, want %s", got, stripeevent.BadSignature)
	}

	both := []string{"whsec_new", "whsec_old"}
	if err := v.SetSecrets(both); err != nil {
		t.Fatal(err)
	}
	both[0], both[1] = "whsec_x", "whsec_y"
	for name, header := range map[string]string{"old": signedOld, "new": signedNew} {
		if _, err := v.Verify(event, header); err != nil {
			t.Errorf("%s secret with both configured: %v", name, err)
		}
	}

	if err := v.SetSecrets([]string{"whsec_new"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(event, signedNew); err != nil {
		t.Errorf("new secret alone: %v", err)
	}
	if got := reason(t, v, event, signedOld); got != stripeevent.BadSignature {
		t.Errorf("old secret after it was removed: reason %q, want %s", got, stripeevent.BadSignature)
	}
}

// Verify runs while the secrets change; run with -race. A secret in every
// list is always accepted, and one in no list never.
func TestSetSecretsDuringVerify(t *testing.T) {
	t.Parallel()
	now := time.Now()
	event := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	kept := stripefixture.Sign(event, "whsec_kept", now)
	never := stripefixture.Sign(event, "whsec_never", now)
	lists := [][]string{
		{"whsec_kept"},
		{"whsec_a", "whsec_kept"},
		{"whsec_kept", "whsec_b", "whsec_c"},
	}
	v := stripeevent.NewVerifier(lists[0])

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if err := v.SetSecrets(lists[i%len(lists)]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var verifiers sync.WaitGroup
	for range 4 {
		verifiers.Add(1)
		go func() {
			defer verifiers.Done()
			for range 300 {
				if _, err := v.Verify(event, kept); err != nil {
					t.Errorf("secret in every list refused: %v", err)
					return
				}
				if _, err := v.Verify(event, never); err == nil {
					t.Error("secret in no list accepted")
					return
				}
			}
		}()
	}
	verifiers.Wait()
	stop.Store(true)
	wg.Wait()
}
