package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/build"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/testenv"
)

// stripeMockBin finds the stripe-mock binary: $STRIPE_MOCK, then PATH,
// then .dev/bin of the workspace (where `make stripe-mock` installs it),
// then $GOPATH/bin.
func stripeMockBin() (string, error) {
	if p := os.Getenv("STRIPE_MOCK"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("STRIPE_MOCK=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p, nil
	}
	var candidates []string
	if dir, err := os.Getwd(); err == nil {
		for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
				candidates = append(candidates, filepath.Join(dir, ".dev", "bin", "stripe-mock"))
				break
			}
		}
	}
	for _, gopath := range filepath.SplitList(build.Default.GOPATH) {
		candidates = append(candidates, filepath.Join(gopath, "bin", "stripe-mock"))
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("stripe-mock not in $STRIPE_MOCK, PATH or %s (make stripe-mock installs it)", strings.Join(candidates, ", "))
}

// startStripeMock runs stripe-mock on a free loopback port for the test and
// returns its base URL.
func startStripeMock(t *testing.T) string {
	t.Helper()
	bin, err := stripeMockBin()
	testenv.RequireServer(t, "stripe-mock", err)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	logs := &testenv.Buffer{}
	// An HTTPS listener is always started: keep it on loopback, any port.
	cmd := exec.Command(bin, "-http-addr", addr, "-https-addr", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("stripe-mock output:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	testenv.Eventually(t, 30*time.Second, "stripe-mock to answer", func() bool {
		select {
		case <-done:
			t.Fatalf("stripe-mock exited: %v\n%s", cmd.ProcessState, logs.String())
		default:
		}
		// Any answer will do: without a key it is a 401.
		resp, err := http.Get(base + "/v1/accounts")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return base
}

// TestStripeMock runs the client against stripe-mock, which checks each
// request against Stripe's OpenAPI description and answers with Stripe's
// fixtures. It ignores filters and answers one fixed item per list: it
// proves the requests and the decoding of Stripe's shapes, not the paging.
func TestStripeMock(t *testing.T) {
	t.Parallel()
	base := startStripeMock(t)
	logs := &testenv.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := New(config.StripeAPI{Key: "sk_test_123", Base: base, Rate: 100}, logger)
	ctx := context.Background()
	since := time.Now().Add(-72 * time.Hour)
	types := []string{"account.updated", "capability.updated", "account.external_account.created"}

	for _, account := range []string{"", "acct_1Mock"} {
		var events []Event
		err := c.Events(ctx, account, since, types, func(e Event) error {
			events = append(events, e)
			return nil
		})
		if err != nil {
			t.Fatalf("Events(%q): %v", account, err)
		}
		if len(events) == 0 {
			t.Fatalf("Events(%q): none", account)
		}
		for _, e := range events {
			var obj struct {
				ID     string `json:"id"`
				Object string `json:"object"`
				Data   struct {
					Object json.RawMessage `json:"object"`
				} `json:"data"`
			}
			if err := json.Unmarshal(e.Raw, &obj); err != nil || obj.ID != e.ID || obj.Object != "event" || len(obj.Data.Object) == 0 {
				t.Errorf("Events(%q): raw %s is not the event %s", account, e.Raw, e.ID)
			}
			if !strings.HasPrefix(e.ID, "evt_") || e.Type == "" || e.Created.IsZero() || e.Account != account {
				t.Errorf("Events(%q): decoded %+v", account, e)
			}
		}
	}

	var ids []string
	if err := c.Accounts(ctx, func(id string) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 || !strings.HasPrefix(ids[0], "acct_") {
		t.Errorf("Accounts: %v", ids)
	}

	a, err := c.Account(ctx, "acct_1Mock")
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != "acct_1Mock" || a.Capabilities == nil || a.Capabilities.CardPayments == "" || a.Requirements == nil {
		t.Errorf("Account: id %s, capabilities %+v, requirements %+v", a.ID, a.Capabilities, a.Requirements)
	}
	if !json.Valid(a.LastResponse.RawJSON) || !strings.Contains(string(a.LastResponse.RawJSON), `"capabilities"`) {
		t.Errorf("Account raw JSON %s", a.LastResponse.RawJSON)
	}

	var objects []string
	err = c.ExternalAccounts(ctx, "acct_1Mock", func(object string, raw []byte) error {
		objects = append(objects, object)
		if !json.Valid(raw) {
			t.Errorf("external account raw %s", raw)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(objects) == 0 || (objects[0] != "bank_account" && objects[0] != "card") {
		t.Errorf("ExternalAccounts: objects %v", objects)
	}
	// One page per listing: 2 event listings, accounts, one account,
	// external accounts.
	if c.Calls() != 5 {
		t.Errorf("Calls() = %d, want 5", c.Calls())
	}

	// stripe-mock echoes the Authorization header of a key it refuses.
	const liveKey = "sk_live_51MockKeyThatStripeMockRefuses"
	bad := New(config.StripeAPI{Key: liveKey, Base: base, Rate: 100}, logger)
	_, err = bad.Account(ctx, "acct_1Mock")
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || apiErr.Account != "acct_1Mock" {
		t.Fatalf("Account with a refused key: %v, want a 401 *Error for acct_1Mock", err)
	}
	for name, out := range map[string]string{"error": err.Error(), "%#v": fmt.Sprintf("%#v", err), "logs": logs.String()} {
		for _, secret := range []string{liveKey, "sk_test_123", "Bearer"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s contains %q: %s", name, secret, out)
			}
		}
	}
}
