package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// StripeAPI is the connection to Stripe's API, for reconcile and resync.
type StripeAPI struct {
	// Key is a restricted API key (read access to Events and Connect
	// accounts); empty turns periodic reconcile off. Default: empty.
	Key string `env:"STRIPE_API_KEY"`
	// Base is where requests go (tests, a proxy). Default: https://api.stripe.com.
	Base string `env:"STRIPE_API_BASE" envDefault:"https://api.stripe.com"`
	// Rate is the most requests per second one process sends. Default: 20.
	Rate float64 `env:"STRIPE_API_RATE" envDefault:"20"`
}

func (p *problems) stripeAPI(s StripeAPI, keyRequired bool) {
	if keyRequired && s.Key == "" {
		p.add("STRIPE_API_KEY is required (a restricted key with read access to Events and Connect accounts)")
	}
	if s.Key != "" && !strings.HasPrefix(s.Key, "sk_") && !strings.HasPrefix(s.Key, "rk_") {
		// Never echo the key.
		p.add("STRIPE_API_KEY must be a secret or restricted key (sk_… or rk_…)")
	}
	if u, err := url.Parse(s.Base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.add("STRIPE_API_BASE must be an http(s) URL such as https://api.stripe.com")
	}
	if s.Rate <= 0 {
		p.add(fmt.Sprintf("STRIPE_API_RATE must be a positive number of requests per second, got %v", s.Rate))
	}
}

// Livemode chooses which of Stripe's modes a deployment applies.
type Livemode struct {
	// Mode is live, test or any: events of the other mode are stored and
	// answered 200, but never applied. Default: any.
	Mode string `env:"STRIPE_LIVEMODE" envDefault:"any"`
}

// Applies reports whether an event of the given livemode is applied.
func (l Livemode) Applies(livemode bool) bool {
	switch l.Mode {
	case "live":
		return livemode
	case "test":
		return !livemode
	}
	return true
}

func (p *problems) livemode(l Livemode) {
	switch l.Mode {
	case "live", "test", "any":
	default:
		p.add(fmt.Sprintf("STRIPE_LIVEMODE must be live, test or any, got %q", l.Mode))
	}
}

// Allowlist is a parsed STRIPE_IP_ALLOWLIST.
type Allowlist struct {
	// Stripe: Stripe's published webhook addresses are allowed.
	Stripe bool
	// Prefixes are the other addresses allowed (a single IP is a /32 or /128).
	Prefixes []netip.Prefix
}

// On reports whether the allowlist restricts anything.
func (a Allowlist) On() bool { return a.Stripe || len(a.Prefixes) > 0 }

// ParseAllowlist reads STRIPE_IP_ALLOWLIST's elements: "stripe", IPs and
// CIDRs. Empty elements are skipped; none at all is no allowlist.
func ParseAllowlist(list []string) (Allowlist, error) {
	var a Allowlist
	for _, s := range list {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
		case strings.EqualFold(s, "stripe"):
			a.Stripe = true
		case strings.Contains(s, "/"):
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return a, fmt.Errorf("has %q, which is neither stripe, an IP nor a CIDR", s)
			}
			a.Prefixes = append(a.Prefixes, p.Masked())
		default:
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return a, fmt.Errorf("has %q, which is neither stripe, an IP nor a CIDR", s)
			}
			ip = ip.Unmap()
			a.Prefixes = append(a.Prefixes, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return a, nil
}

func (p *problems) ipAllowlist(list []string) {
	if _, err := ParseAllowlist(list); err != nil {
		p.add("STRIPE_IP_ALLOWLIST " + err.Error())
	}
}
