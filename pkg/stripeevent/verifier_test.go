package stripeevent_test

import (
	"errors"
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
