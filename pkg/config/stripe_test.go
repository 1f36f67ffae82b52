package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestLivemodeAndAllowlist(t *testing.T) {
	t.Parallel()
	for mode, applies := range map[string][2]bool{"live": {true, false}, "test": {false, true}, "any": {true, true}} {
		c, err := LoadWorker([]string{"STRIPE_LIVEMODE=" + mode})
		if err != nil {
			t.Fatal(err)
		}
		if c.Applies(true) != applies[0] || c.Applies(false) != applies[1] {
			t.Errorf("STRIPE_LIVEMODE=%s applies live %v, test %v", mode, c.Applies(true), c.Applies(false))
		}
	}
	if err := worker([]string{"STRIPE_LIVEMODE=prod"}); err == nil || !strings.Contains(err.Error(), "STRIPE_LIVEMODE must be live, test or any") {
		t.Errorf("STRIPE_LIVEMODE=prod: %v", err)
	}
	a, err := ParseAllowlist([]string{"stripe", " 10.0.0.0/8", "192.0.2.7", "::ffff:198.51.100.1", ""})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(a.Prefixes)
	if !a.Stripe || got != "[10.0.0.0/8 192.0.2.7/32 198.51.100.1/32]" {
		t.Errorf("allowlist = %v %s", a.Stripe, got)
	}
	if err := ingest([]string{"STRIPE_WEBHOOK_SECRET=whsec_x", "STRIPE_IP_ALLOWLIST=stripe,10.0.0.300"}); err == nil || !strings.Contains(err.Error(), "STRIPE_IP_ALLOWLIST") {
		t.Errorf("a bad allowlist: %v", err)
	}
	if a, _ := ParseAllowlist(nil); a.On() {
		t.Error("an empty allowlist restricts")
	}
}
