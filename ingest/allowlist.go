package main

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/gin-gonic/gin"

	"stripe-webhooks/pkg/config"
)

// stripeWebhookIPsFile is Stripe's published list of webhook addresses,
// one a line, with '#' comments and a "# taken: YYYY-MM-DD" line.
//
//go:embed stripe_webhook_ips.txt
var stripeWebhookIPsFile string

// takenLine finds the date stripeWebhookIPsFile was taken.
var takenLine = regexp.MustCompile(`(?m)^#\s*taken:\s*(\d{4}-\d{2}-\d{2})\s*$`)

// stripeWebhookIPs parses list, a file in the format of
// stripe_webhook_ips.txt, into its addresses and the date it was taken.
func stripeWebhookIPs(list string) (prefixes []netip.Prefix, taken string, err error) {
	var entries []string
	for line := range strings.Lines(list) {
		line, _, _ = strings.Cut(line, "#")
		entries = append(entries, line)
	}
	a, err := config.ParseAllowlist(entries)
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("embedded Stripe webhook list %w", err)
	case a.Stripe:
		return nil, "", errors.New("embedded Stripe webhook list names itself")
	case len(a.Prefixes) == 0:
		return nil, "", errors.New("embedded Stripe webhook list is empty")
	}
	m := takenLine.FindStringSubmatch(list)
	if m == nil {
		return nil, "", errors.New("embedded Stripe webhook list has no '# taken: YYYY-MM-DD' line")
	}
	return a.Prefixes, m[1], nil
}

// allowlist is the set of client addresses the webhook route accepts. Its
// addresses may be replaced while it is in use (STRIPE_IP_ALLOWLIST_FILE
// read again).
type allowlist struct {
	prefixes atomic.Pointer[[]netip.Prefix]
}

// newAllowlist expands a parsed STRIPE_IP_ALLOWLIST: "stripe" becomes the
// embedded list, whose date it returns ("" when the list is not used).
func newAllowlist(c config.Allowlist) (*allowlist, string, error) {
	prefixes, taken, err := expandAllowlist(c)
	if err != nil {
		return nil, "", err
	}
	a := &allowlist{}
	a.prefixes.Store(&prefixes)
	return a, taken, nil
}

// expandAllowlist turns a parsed allowlist into prefixes: "stripe" becomes
// the embedded list, whose date it returns ("" when the list is not used).
// An IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/n, n ≥ 96) is kept as the IPv4
// prefix it maps, since client addresses are compared unmapped.
func expandAllowlist(c config.Allowlist) ([]netip.Prefix, string, error) {
	var prefixes []netip.Prefix
	var taken string
	if c.Stripe {
		stripe, date, err := stripeWebhookIPs(stripeWebhookIPsFile)
		if err != nil {
			return nil, "", err
		}
		prefixes, taken = append(prefixes, stripe...), date
	}
	for _, p := range c.Prefixes {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, taken, nil
}

// len is how many prefixes the list holds.
func (a *allowlist) len() int { return len(*a.prefixes.Load()) }

// allows reports whether ip, a textual address as gin's ClientIP gives it,
// is in the list. An address that does not parse is not.
func (a *allowlist) allows(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range *a.prefixes.Load() {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// allowlistFrom is the allowlist cfg sets, nil when none is set: the
// embedded list for "stripe", and the addresses and CIDRs listed. It is
// logged once.
func allowlistFrom(cfg config.Ingest, logger *slog.Logger) (*allowlist, error) {
	parsed, err := config.ParseAllowlist(cfg.IPAllowlist)
	if err != nil {
		return nil, fmt.Errorf("STRIPE_IP_ALLOWLIST %w", err)
	}
	if !parsed.On() {
		return nil, nil
	}
	list, taken, err := newAllowlist(parsed)
	if err != nil {
		return nil, err
	}
	logger.Info("webhook IP allowlist on", "prefixes", list.len(), "stripe_list", parsed.Stripe, "stripe_list_taken", taken)
	return list, nil
}

// watchAllowlistFile reads STRIPE_IP_ALLOWLIST_FILE at path again when it
// changes and puts its addresses in list. A file that cannot be read, lists
// no address or does not parse leaves the list as it is: a failed download
// of Stripe's list never opens the route to every address.
func watchAllowlistFile(path string, list *allowlist, logger *slog.Logger) *fileWatcher {
	read := func() (string, error) { return config.ReadFileVar("STRIPE_IP_ALLOWLIST", path) }
	start, _ := read()
	return &fileWatcher{what: "IP allowlist", entries: "prefixes", path: path, logger: logger, poll: fileWatchPoll,
		current: start, currentN: list.len(),
		read: func() (string, int, error) {
			v, err := read()
			if err != nil {
				return "", 0, err
			}
			prefixes, err := allowlistValue(path, v)
			return v, len(prefixes), err
		},
		apply: func(v string) error {
			prefixes, err := allowlistValue(path, v)
			if err == nil {
				list.prefixes.Store(&prefixes)
			}
			return err
		},
	}
}

// allowlistValue expands the value of an allowlist file.
func allowlistValue(path, v string) ([]netip.Prefix, error) {
	parsed, err := config.ParseAllowlist(strings.Split(v, ","))
	if err != nil {
		return nil, fmt.Errorf("STRIPE_IP_ALLOWLIST_FILE: %s %w", path, err)
	}
	prefixes, _, err := expandAllowlist(parsed)
	return prefixes, err
}

// requireAllowedAddress answers 403 to a request whose client address (as
// TRUSTED_PROXIES resolves it) is not in list, before its body is read, and
// closes its connection. Its rejections are counted, logged and limited
// like the webhook handler's.
func requireAllowedAddress(list *allowlist, logger *slog.Logger, m *metrics, limiter *rejectLimiter) gin.HandlerFunc {
	return func(c *gin.Context) {
		if list.allows(c.ClientIP()) {
			c.Next()
			return
		}
		hangUp(c)
		reject(c, logger, m, limiter, http.StatusForbidden, "ip_not_allowed", "deliveries are not accepted from this address")
	}
}
