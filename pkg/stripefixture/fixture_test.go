package stripefixture_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripeevent"
	"stripe-webhooks/pkg/stripefixture"
)

func TestEventsAreRealisticAndSigned(t *testing.T) {
	t.Parallel()
	for _, typ := range append(stripefixture.Types, "plan.created") {
		p, err := stripefixture.Event(stripefixture.Options{Type: typ, Account: "acct_fixture"})
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			ID, Type, Account, Object string
			Data                      struct {
				Object             map[string]any
				PreviousAttributes map[string]any `json:"previous_attributes"`
			}
		}
		if err := json.Unmarshal(p, &e); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if e.Type != typ || e.Account != "acct_fixture" || e.Object != "event" || len(e.Data.Object) == 0 {
			t.Errorf("%s: envelope %+v", typ, e)
		}
		if (len(e.Data.PreviousAttributes) > 0) != (typ == "account.updated" || typ == "capability.updated" || typ == "account.external_account.updated") {
			t.Errorf("%s: previous_attributes %v", typ, e.Data.PreviousAttributes)
		}
		ev, err := stripeevent.NewVerifier([]string{"whsec_f"}).Verify(p, stripefixture.Sign(p, "whsec_f", time.Now()))
		if err != nil || ev.ID != e.ID {
			t.Errorf("%s: signature does not verify: %v", typ, err)
		}
	}
	// Connect application events carry the platform's application object;
	// the account is the envelope's.
	for _, typ := range []string{"account.application.authorized", "account.application.deauthorized"} {
		var e struct {
			Account string
			Data    struct{ Object map[string]any }
		}
		if err := json.Unmarshal(stripefixture.MustEvent(stripefixture.Options{Type: typ, Account: "acct_fixture"}), &e); err != nil {
			t.Fatal(err)
		}
		id, _ := e.Data.Object["id"].(string)
		if e.Account != "acct_fixture" || e.Data.Object["object"] != "application" || !strings.HasPrefix(id, "ca_") {
			t.Errorf("%s: account %q, data.object %v; want acct_fixture and an application ca_…", typ, e.Account, e.Data.Object)
		}
	}
	p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	if len(p) < 3500 || len(p) > 6000 {
		t.Errorf("account.updated is %d bytes; a real one with its external accounts is 4 to 5 KB", len(p))
	}
}
