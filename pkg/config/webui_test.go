package config

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWebUIBeyondLoopbackNeedsLogin(t *testing.T) {
	t.Parallel()
	for _, environ := range [][]string{
		{"WEBUI_ADDR=localhost:5040"},
		{"WEBUI_ADDR=[::1]:5040"},
		{"WEBUI_ADDR=0.0.0.0:5040", "WEBUI_USERNAME=ops", "WEBUI_PASSWORD=s3cret"},
	} {
		if err := webui(environ); err != nil {
			t.Errorf("%v: %v", environ, err)
		}
	}
}

// WEBUI_AUTH defaults to basic with a login, to none without; proxy reads
// its CIDRs (bare IPs as one address), headers and groups, blanks dropped.
func TestWebUIAuthModes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		environ []string
		want    string
	}{
		{nil, WebUIAuthNone},
		{[]string{"WEBUI_USERNAME=ops", "WEBUI_PASSWORD=s3cret"}, WebUIAuthBasic},
		{[]string{"WEBUI_AUTH=basic", "WEBUI_USERNAME=ops", "WEBUI_PASSWORD=s3cret"}, WebUIAuthBasic},
		{[]string{"WEBUI_AUTH=none"}, WebUIAuthNone},
		{[]string{"WEBUI_AUTH=proxy", "WEBUI_ADDR=0.0.0.0:5040", "WEBUI_TRUSTED_PROXIES=10.0.0.0/8", "WEBUI_OPERATOR_GROUPS=ops"}, WebUIAuthProxy},
	} {
		cfg, err := LoadWebUI(c.environ)
		if err != nil || cfg.Auth != c.want {
			t.Errorf("%v: auth %q, %v; want %q", c.environ, cfg.Auth, err, c.want)
		}
	}
	cfg, err := LoadWebUI([]string{"WEBUI_AUTH=proxy", "WEBUI_ADDR=0.0.0.0:5040",
		"WEBUI_TRUSTED_PROXIES=10.0.0.0/8, 192.168.1.7 ,,::ffff:172.16.0.1,fd00::/8",
		"WEBUI_PROXY_USER_HEADER=X-Auth-Request-Email", "WEBUI_OPERATOR_GROUPS= sre , ops,", "WEBUI_VIEWER_GROUPS=support"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("172.16.0.1/32"), netip.MustParsePrefix("fd00::/8")}
	if diff := cmp.Diff(want, cfg.TrustedPrefixes(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("trusted proxies (-want +got):\n%s", diff)
	}
	if cfg.ProxyUserHeader != "X-Auth-Request-Email" || cfg.ProxyGroupsHeader != "X-Forwarded-Groups" ||
		!slices.Equal(cfg.OperatorGroups, []string{"sre", "ops"}) || !slices.Equal(cfg.ViewerGroups, []string{"support"}) {
		t.Errorf("proxy settings: %+v", cfg.WebUIAccess)
	}
}
