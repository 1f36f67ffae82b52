package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// The ways the web UI identifies its users (WEBUI_AUTH).
const (
	// WebUIAuthBasic is HTTP basic auth with WEBUI_USERNAME and
	// WEBUI_PASSWORD; that one user is an operator.
	WebUIAuthBasic = "basic"
	// WebUIAuthProxy takes the user and their groups from headers set by
	// an authenticating proxy (oauth2-proxy) at WEBUI_TRUSTED_PROXIES.
	WebUIAuthProxy = "proxy"
	// WebUIAuthNone is no login, on a loopback WEBUI_ADDR only: whoever
	// reaches it is the operator "local".
	WebUIAuthNone = "none"
)

// WebUI is the configuration of `bin/worker webui`: the gocraft/work job
// UI reads Redis, its console reads Postgres.
type WebUI struct {
	Database
	Redis
	Log
	// Livemode is what the console's replay applies, as the workers do.
	Livemode
	// Addr is where the authenticating proxy listens. Default: 127.0.0.1:5040.
	Addr string `env:"WEBUI_ADDR" envDefault:"127.0.0.1:5040"`
	// LoginUser is the HTTP basic auth user of WEBUI_AUTH=basic. Default: empty.
	LoginUser string `env:"WEBUI_USERNAME"`
	// LoginPassword is the HTTP basic auth password. Default: empty.
	LoginPassword string `env:"WEBUI_PASSWORD"`
	WebUIAccess
}

// WebUIAccess is how the web UI identifies its users and what each may do.
type WebUIAccess struct {
	// Auth is basic, proxy or none (the WebUIAuth constants); LoadWebUI
	// fills in the default. Default: basic when WEBUI_USERNAME is set, else none.
	Auth string `env:"WEBUI_AUTH"`
	// TrustedProxies are the CIDRs (or IPs) whose requests may carry the
	// identity headers; required with proxy. Use TrustedPrefixes. Default: none.
	TrustedProxies []string `env:"WEBUI_TRUSTED_PROXIES" envSeparator:","`
	// ProxyUserHeader names the user (an e-mail address with oauth2-proxy).
	// Default: X-Forwarded-Email.
	ProxyUserHeader string `env:"WEBUI_PROXY_USER_HEADER" envDefault:"X-Forwarded-Email"`
	// ProxyGroupsHeader holds the user's groups, comma-separated.
	// Default: X-Forwarded-Groups.
	ProxyGroupsHeader string `env:"WEBUI_PROXY_GROUPS_HEADER" envDefault:"X-Forwarded-Groups"`
	// OperatorGroups may change things (replay, retry or delete jobs);
	// required with proxy. Default: none.
	OperatorGroups []string `env:"WEBUI_OPERATOR_GROUPS" envSeparator:","`
	// ViewerGroups may only read; when empty, any identified user reads.
	// Default: empty.
	ViewerGroups []string `env:"WEBUI_VIEWER_GROUPS" envSeparator:","`
}

// TrustedPrefixes are TrustedProxies parsed (LoadWebUI has checked them).
func (a WebUIAccess) TrustedPrefixes() []netip.Prefix {
	p, _ := parsePrefixes(a.TrustedProxies)
	return p
}

// LoadWebUI reads the web UI's configuration from environ.
func LoadWebUI(environ []string) (WebUI, error) {
	var c WebUI
	if err := load(&c, environ); err != nil {
		return c, err
	}
	var p problems
	p.services(c.Database, &c.Redis, c.Log, c.Livemode)
	host, _, err := splitHostPort(c.Addr)
	if err != nil {
		p.add("WEBUI_ADDR must be host:port, such as 127.0.0.1:5040")
	}
	c.OperatorGroups, c.ViewerGroups = trimList(c.OperatorGroups), trimList(c.ViewerGroups)
	c.TrustedProxies = trimList(c.TrustedProxies)
	if c.Auth == "" {
		c.Auth = WebUIAuthNone
		if c.LoginUser != "" || c.LoginPassword != "" {
			c.Auth = WebUIAuthBasic
		}
	}
	switch c.Auth {
	case WebUIAuthBasic:
		p.webUIBasic(c)
	case WebUIAuthProxy:
		p.webUIProxy(c.WebUIAccess)
	case WebUIAuthNone:
		p.webUINone(c, err != nil || IsLoopback(host)) // a malformed address is reported above
	default:
		p.add(fmt.Sprintf("WEBUI_AUTH must be basic, proxy or none, got %q", c.Auth))
	}
	return c, p.err()
}

func (p *problems) webUIBasic(c WebUI) {
	switch {
	case c.LoginUser == "" && c.LoginPassword == "":
		p.add("WEBUI_AUTH=basic needs WEBUI_USERNAME and WEBUI_PASSWORD")
	case (c.LoginUser == "") != (c.LoginPassword == ""):
		p.add("WEBUI_USERNAME and WEBUI_PASSWORD must be set together")
	}
	p.webUIProxySettingsUnused(c.WebUIAccess)
}

func (p *problems) webUINone(c WebUI, loopback bool) {
	switch {
	case c.LoginUser != "" || c.LoginPassword != "":
		p.add("WEBUI_AUTH=none but WEBUI_USERNAME or WEBUI_PASSWORD is set: use WEBUI_AUTH=basic, or unset them")
	case !loopback:
		p.add("WEBUI_ADDR is not a loopback address: WEBUI_AUTH=none (no login) serves loopback only; " +
			"set WEBUI_USERNAME and WEBUI_PASSWORD, or WEBUI_AUTH=proxy behind an authenticating proxy")
	}
	p.webUIProxySettingsUnused(c.WebUIAccess)
}

// webUIProxySettingsUnused refuses the proxy mode's settings in another
// mode: whoever set them believes the proxy identifies users.
func (p *problems) webUIProxySettingsUnused(a WebUIAccess) {
	for _, v := range []struct {
		name string
		set  bool
	}{
		{"WEBUI_TRUSTED_PROXIES", len(a.TrustedProxies) > 0},
		{"WEBUI_OPERATOR_GROUPS", len(a.OperatorGroups) > 0},
		{"WEBUI_VIEWER_GROUPS", len(a.ViewerGroups) > 0},
	} {
		if v.set {
			p.add(fmt.Sprintf("%s is set but WEBUI_AUTH is %s: set WEBUI_AUTH=proxy to identify users through a proxy", v.name, a.Auth))
		}
	}
}

func (p *problems) webUIProxy(a WebUIAccess) {
	if len(a.TrustedProxies) == 0 {
		p.add("WEBUI_TRUSTED_PROXIES is required with WEBUI_AUTH=proxy (the CIDRs the authenticating proxy connects from)")
	} else if _, err := parsePrefixes(a.TrustedProxies); err != nil {
		p.add("WEBUI_TRUSTED_PROXIES " + err.Error())
	}
	if len(a.OperatorGroups) == 0 {
		p.add("WEBUI_OPERATOR_GROUPS is required with WEBUI_AUTH=proxy (the groups whose members may change things)")
	}
	for _, h := range [][2]string{{"WEBUI_PROXY_USER_HEADER", a.ProxyUserHeader}, {"WEBUI_PROXY_GROUPS_HEADER", a.ProxyGroupsHeader}} {
		if !validHeaderName(h[1]) {
			p.add(fmt.Sprintf("%s must be an HTTP header name, got %q", h[0], h[1]))
		}
	}
}

// parsePrefixes reads CIDRs and bare IPs (a /32 or /128).
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if pfx, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pfx.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("has %q, which is neither a CIDR nor an IP", s)
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// validHeaderName reports whether h is an HTTP token (RFC 9110).
func validHeaderName(h string) bool {
	return h != "" && strings.IndexFunc(h, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	}) < 0
}

// trimList drops the blank elements of a comma-separated list and trims the others.
func trimList(list []string) []string {
	var out []string
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// IsLoopback reports whether host (a name or an IP) means this machine only.
// An empty host means every interface, so it is not.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func splitHostPort(addr string) (string, string, error) {
	u, err := url.Parse("//" + addr)
	if err != nil {
		return "", "", err
	}
	if u.Port() == "" {
		return "", "", errors.New("no port")
	}
	return u.Hostname(), u.Port(), nil
}
