package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

// postFrom posts payload as in.post does, with forwardedFor (when not
// empty) as its X-Forwarded-For.
func (in *ingest) postFrom(forwardedFor string, payload []byte, signature string) reply {
	in.t.Helper()
	req, err := http.NewRequest(http.MethodPost, in.base+WebhookPath, bytes.NewReader(payload))
	if err != nil {
		in.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signature)
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	return decode(in.t, resp)
}

// metricsBody returns the text of /metrics.
func (in *ingest) metricsBody() string {
	in.t.Helper()
	resp, err := http.Get(in.base + "/metrics")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		in.t.Fatal(err)
	}
	return string(b)
}

const ipNotAllowedSeries = `stripe_webhooks_deliveries_total{outcome="rejected",reason="ip_not_allowed"}`

func TestIPAllowlistStoresAllowedAndRefusesOthers(t *testing.T) {
	t.Parallel()
	in := start(t, options{env: map[string]string{
		"STRIPE_IP_ALLOWLIST": "203.0.113.0/24",
		"TRUSTED_PROXIES":     "127.0.0.1",
	}})

	allowed, sig := signed(t, "account.updated")
	if r := in.postFrom("203.0.113.9", allowed, sig); r.status != http.StatusOK || r.body["received"] != true {
		t.Fatalf("from 203.0.113.9 through the trusted proxy: %d %v, want 200", r.status, r.body)
	}
	if _, err := in.store.EventByStripeID(t.Context(), eventID(t, allowed)); err != nil {
		t.Fatalf("allowed delivery not stored: %v", err)
	}

	other, sig := signed(t, "account.updated")
	r := in.postFrom("198.51.100.7", other, sig)
	if r.status != http.StatusForbidden || r.body["reason"] != "ip_not_allowed" || r.body["error"] == nil {
		t.Fatalf("from 198.51.100.7: %d %v, want 403 with reason ip_not_allowed", r.status, r.body)
	}
	if n := in.rows(); n != 1 {
		t.Errorf("rows = %d, want 1 (the allowed delivery only)", n)
	}
	if !strings.Contains(in.metricsBody(), ipNotAllowedSeries+" 1") {
		t.Errorf("/metrics lacks %s 1", ipNotAllowedSeries)
	}
	logs := in.logs.String()
	if !strings.Contains(logs, "ip_not_allowed") || !strings.Contains(logs, "198.51.100.7") {
		t.Errorf("rejection not logged with its reason and client address")
	}
	if strings.Contains(logs, sig) || strings.Contains(logs, "business_profile") {
		t.Error("logs contain the signature or the payload")
	}
}

// Without TRUSTED_PROXIES, X-Forwarded-For is not believed: the client
// address is the peer's, 127.0.0.1, which is not in the list.
func TestIPAllowlistIgnoresForwardedForFromUntrustedPeer(t *testing.T) {
	t.Parallel()
	in := start(t, options{env: map[string]string{"STRIPE_IP_ALLOWLIST": "203.0.113.0/24"}})
	p, sig := signed(t, "account.updated")
	for _, xff := range []string{"203.0.113.9", "203.0.113.9, 127.0.0.1"} {
		r := in.postFrom(xff, p, sig)
		if r.status != http.StatusForbidden || r.body["reason"] != "ip_not_allowed" {
			t.Errorf("X-Forwarded-For %q from an untrusted peer: %d %v, want 403", xff, r.status, r.body)
		}
	}
	if n := in.rows(); n != 0 {
		t.Errorf("rows = %d, want 0", n)
	}
}

func TestIPAllowlistLeavesHealthAndMetricsOpen(t *testing.T) {
	t.Parallel()
	in := start(t, options{env: map[string]string{"STRIPE_IP_ALLOWLIST": "203.0.113.0/24"}})
	for _, path := range []string{"/healthz", "/readyz", "/health", "/metrics"} {
		if r := in.get(path); r.status != http.StatusOK {
			t.Errorf("GET %s from 127.0.0.1 (not in the list) = %d, want 200", path, r.status)
		}
	}
	if r := in.get(WebhookPath); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET %s = %d, want 405", WebhookPath, r.status)
	}
}

// A refused address is answered as soon as its headers are in, though it
// declares a large body and sends none, and its connection is closed.
func TestIPAllowlistRefusesBeforeTheBody(t *testing.T) {
	t.Parallel()
	// A body timeout far beyond the wait below: an answer within it came
	// before any of the body was waited for.
	in := start(t, options{env: map[string]string{
		"STRIPE_IP_ALLOWLIST":  "203.0.113.0/24",
		"WEBHOOK_BODY_TIMEOUT": "60s",
	}})
	addr := strings.TrimPrefix(in.base, "http://")
	// A signature header that passes the check made before the body.
	signature := fmt.Sprintf("t=%d,v1=%s", time.Now().Unix(), strings.Repeat("ab", 32))
	for _, length := range []int{1_000_000, 5000} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nStripe-Signature: %s\r\n\r\n",
			WebhookPath, addr, length, signature)
		if _, err := conn.Write([]byte(head)); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		_ = conn.SetReadDeadline(began.Add(5 * time.Second))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("Content-Length %d: no answer before the body: %v", length, err)
		}
		if waited := time.Since(began); waited > 2*time.Second {
			t.Errorf("Content-Length %d: answered after %s", length, waited)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || body["reason"] != "ip_not_allowed" {
			t.Errorf("Content-Length %d: %d %v, want 403 with reason ip_not_allowed", length, resp.StatusCode, body)
		}
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("Content-Length %d: connection not closed after the answer (read: %v)", length, err)
		}
		conn.Close()
	}
	if n := in.rows(); n != 0 {
		t.Errorf("rows = %d, want 0", n)
	}
}

func TestIPAllowlistStripe(t *testing.T) {
	t.Parallel()
	in := start(t, options{env: map[string]string{
		"STRIPE_IP_ALLOWLIST": "stripe",
		"TRUSTED_PROXIES":     "127.0.0.1",
	}})
	p, sig := signed(t, "account.updated")
	if r := in.postFrom("", p, sig); r.status != http.StatusForbidden || r.body["reason"] != "ip_not_allowed" {
		t.Errorf("from 127.0.0.1: %d %v, want 403", r.status, r.body)
	}
	if n := in.rows(); n != 0 {
		t.Fatalf("rows = %d after a refused delivery, want 0", n)
	}
	if r := in.postFrom("54.187.174.169", p, sig); r.status != http.StatusOK || r.body["received"] != true {
		t.Fatalf("from Stripe's 54.187.174.169 through the trusted proxy: %d %v, want 200", r.status, r.body)
	}
	if _, err := in.store.EventByStripeID(t.Context(), eventID(t, p)); err != nil {
		t.Fatalf("delivery from Stripe not stored: %v", err)
	}
	if !strings.Contains(in.logs.String(), "stripe_list_taken") {
		t.Error("start-up log does not give the embedded list's date")
	}
}

// Refusals by address share the per-address budget of other rejections.
func TestIPAllowlistRejectionsAreRateLimited(t *testing.T) {
	t.Parallel()
	in := start(t, options{env: map[string]string{
		"STRIPE_IP_ALLOWLIST":       "203.0.113.0/24",
		"TRUSTED_PROXIES":           "127.0.0.1",
		"WEBHOOK_REJECT_RATE_LIMIT": "2",
	}})
	p, sig := signed(t, "account.updated")
	for i := range 2 {
		if r := in.postFrom("198.51.100.7", p, sig); r.status != http.StatusForbidden {
			t.Fatalf("refusal %d: %d %v, want 403", i+1, r.status, r.body)
		}
	}
	r := in.postFrom("198.51.100.7", p, sig)
	if r.status != http.StatusTooManyRequests || r.body["reason"] != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("third refusal: %d %v (Retry-After %q), want 429", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := in.postFrom("198.51.100.8", p, sig); r.status != http.StatusForbidden {
		t.Errorf("another refused address: %d, want 403 (budgets are per address)", r.status)
	}
	// The bad signatures below draw on 203.0.113.9's own budget.
	for i := range 2 {
		if r := in.postFrom("203.0.113.9", p, "t=1,v1=00"); r.status != http.StatusBadRequest {
			t.Fatalf("bad signature %d from an allowed address: %d, want 400", i+1, r.status)
		}
	}
	if r := in.postFrom("203.0.113.9", p, "t=1,v1=00"); r.status != http.StatusTooManyRequests {
		t.Errorf("third bad signature from an allowed address: %d, want 429", r.status)
	}
	if r := in.postFrom("203.0.113.9", p, sig); r.status != http.StatusOK {
		t.Errorf("verified delivery from an allowed address past its limit: %d %v, want 200", r.status, r.body)
	}
	if n := in.rows(); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
	metrics := in.metricsBody()
	for _, want := range []string{ipNotAllowedSeries + " 3", `stripe_webhooks_deliveries_total{outcome="rejected",reason="rate_limited"} 2`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestEmbeddedStripeWebhookIPs(t *testing.T) {
	t.Parallel()
	prefixes, taken, err := stripeWebhookIPs(stripeWebhookIPsFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := time.Parse(time.DateOnly, taken); err != nil {
		t.Errorf("taken = %q: %v", taken, err)
	}
	if !strings.Contains(stripeWebhookIPsFile, "https://stripe.com/files/ips/ips_webhooks.txt") {
		t.Error("the list does not name its source")
	}
	if len(prefixes) < 10 {
		t.Errorf("%d addresses, want Stripe's whole list", len(prefixes))
	}
	seen := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		if !p.Addr().Is4() || !p.IsSingleIP() {
			t.Errorf("%s is not a single IPv4 address", p)
		}
		if seen[p] {
			t.Errorf("%s listed twice", p)
		}
		seen[p] = true
	}
	for _, ip := range []string{"3.18.12.63", "54.187.174.169", "54.187.216.72"} {
		if !seen[netip.MustParsePrefix(ip+"/32")] {
			t.Errorf("%s missing", ip)
		}
	}
	for _, bad := range []string{"", "# taken: 2026-09-04\n", "# no date\n3.18.12.63\n", "# taken: 2026-09-04\nstripe\n", "# taken: 2026-09-04\nnot-an-ip\n"} {
		if _, _, err := stripeWebhookIPs(bad); err == nil {
			t.Errorf("stripeWebhookIPs(%q) succeeded, want an error", bad)
		}
	}
}

func TestIPAllowlistMatches(t *testing.T) {
	t.Parallel()
	parsed, err := config.ParseAllowlist([]string{"stripe", "203.0.113.0/24", "2001:db8::/32", "::ffff:192.0.2.0/120", "198.51.100.7"})
	if err != nil {
		t.Fatal(err)
	}
	list, taken, err := newAllowlist(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if taken == "" {
		t.Error("no date for the embedded list")
	}
	tests := []struct {
		ip   string
		want bool
	}{
		{"54.187.216.72", true},
		{"::ffff:54.187.216.72", true},
		{"54.187.216.73", false},
		{"203.0.113.0", true},
		{"203.0.113.255", true},
		{"::ffff:203.0.113.9", true},
		{"203.0.114.1", false},
		{"2001:db8::1", true},
		{"2001:db9::1", false},
		{"192.0.2.44", true},
		{"198.51.100.7", true},
		{"198.51.100.8", false},
		{"127.0.0.1", false},
		{"::1", false},
		{"", false},
		{"not an address", false},
	}
	for _, tt := range tests {
		if got := list.allows(tt.ip); got != tt.want {
			t.Errorf("allows(%q) = %v, want %v", tt.ip, got, tt.want)
		}
	}

	none, taken, err := newAllowlist(config.Allowlist{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err != nil || taken != "" || none.allows("54.187.216.72") {
		t.Errorf("a list without stripe: taken %q, err %v, allows Stripe's address %v", taken, err, none.allows("54.187.216.72"))
	}
}

// A stripe.com/files/ips/ips_webhooks.txt download given as
// STRIPE_IP_ALLOWLIST_FILE replaces the embedded list.
func TestIPAllowlistFromFile(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/ips_webhooks.txt"
	if err := os.WriteFile(path, []byte("3.18.12.63\n203.0.113.9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := start(t, options{env: map[string]string{
		"STRIPE_IP_ALLOWLIST_FILE": path,
		"TRUSTED_PROXIES":          "127.0.0.1",
	}})
	p, sig := signed(t, "account.updated")
	if r := in.postFrom("54.187.174.169", p, sig); r.status != http.StatusForbidden {
		t.Errorf("from an embedded-list address not in the file: %d, want 403", r.status)
	}
	if r := in.postFrom("203.0.113.9", p, stripefixture.Sign(p, testSecret, time.Now())); r.status != http.StatusOK {
		t.Errorf("from an address in the file: %d %v, want 200", r.status, r.body)
	}
	if n := in.rows(); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
}

// STRIPE_IP_ALLOWLIST_FILE is read again when it changes, like the secrets
// file: a new list is in effect within 2 s, and a file that becomes empty,
// comments only or malformed (a failed download of Stripe's list) keeps the
// last good list instead of letting every address in.
func TestIPAllowlistFileReloadKeepsTheLastGoodList(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "ips_webhooks.txt")
	replace := func(content string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	replace("203.0.113.9\n")
	in := start(t, options{env: map[string]string{"STRIPE_IP_ALLOWLIST_FILE": path, "TRUSTED_PROXIES": "127.0.0.1",
		"WEBHOOK_REJECT_RATE_LIMIT": "0"}})
	status := func(from string) int {
		p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
		return in.postFrom(from, p, stripefixture.Sign(p, testSecret, time.Now())).status
	}
	allowedOnly := func(from, not string) func() bool {
		return func() bool { return status(from) == http.StatusOK && status(not) == http.StatusForbidden }
	}
	if !allowedOnly("203.0.113.9", "198.51.100.7")() {
		t.Fatal("the list read at start is not in effect")
	}
	replace("# taken: 2026-12-07\n198.51.100.0/24\n")
	testenv.Eventually(t, 2*time.Second, "the new list in effect", allowedOnly("198.51.100.7", "203.0.113.9"))
	for _, bad := range []string{"", "# Stripe webhook IPs\n# taken: 2026-12-07\n", "<html>503 Service Unavailable</html>\n"} {
		replace(bad)
		testenv.Consistently(t, 1500*time.Millisecond, "the last good list kept with "+strconv.Quote(bad),
			allowedOnly("198.51.100.7", "203.0.113.9"))
	}
	// The empty and the comments-only file fail alike: one line for both.
	if n := len(logLines(t, in.logs.String(), "IP allowlist file unusable: keeping the previous prefixes")); n != 2 {
		t.Errorf("%d log lines for two distinct failures, want 2", n)
	}
	if !strings.Contains(in.metricsText(), "stripe_webhooks_ip_allowlist_file_usable 0") {
		t.Error("an unusable allowlist file does not show in stripe_webhooks_ip_allowlist_file_usable")
	}
	replace("203.0.113.9\n")
	testenv.Eventually(t, 2*time.Second, "a good file in effect again", allowedOnly("203.0.113.9", "198.51.100.7"))
}
