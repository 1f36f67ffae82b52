package access

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"stripe-webhooks/pkg/config"
)

// serveIdentity serves, over real TCP on 127.0.0.1, the identity that
// cfg's Authenticator gives each request ("user role"), behind its
// Middleware.
func serveIdentity(t *testing.T, cfg config.WebUI) string {
	t.Helper()
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := FromContext(r.Context())
		fmt.Fprintf(w, "%s %s", id.User, id.Role)
	})))
	t.Cleanup(srv.Close)
	return srv.URL
}

// get sends GET base/ with header and returns the status and the body.
func get(t *testing.T, base string, header map[string][]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func proxyConfig(trusted string, viewers ...string) config.WebUI {
	return config.WebUI{WebUIAccess: config.WebUIAccess{Auth: config.WebUIAuthProxy, TrustedProxies: []string{trusted},
		ProxyUserHeader: "X-Forwarded-Email", ProxyGroupsHeader: "X-Forwarded-Groups",
		OperatorGroups: []string{"sre", "payments-ops"}, ViewerGroups: viewers}}
}

// Identity headers sent straight to the UI from an address that is not a
// trusted proxy are 401, whatever they say, X-Forwarded-For included: the
// TCP peer (127.0.0.1 here) is what is checked.
func TestProxyHeadersFromAnUntrustedAddressAre401(t *testing.T) {
	t.Parallel()
	base := serveIdentity(t, proxyConfig("10.0.0.0/8"))
	for name, h := range map[string]map[string][]string{
		"operator headers":   {"X-Forwarded-Email": {"mallory@example.com"}, "X-Forwarded-Groups": {"sre"}},
		"with a trusted XFF": {"X-Forwarded-Email": {"mallory@example.com"}, "X-Forwarded-Groups": {"sre"}, "X-Forwarded-For": {"10.0.0.7"}, "X-Real-Ip": {"10.0.0.7"}},
		"no headers":         {},
	} {
		if code, body := get(t, base, h); code != http.StatusUnauthorized {
			t.Errorf("%s from 127.0.0.1, trusted 10.0.0.0/8: %d %q, want 401", name, code, body)
		}
	}
}

// From a trusted proxy: no user header is 401; the groups decide the
// role; a user in none of the groups is 403 when viewer groups are set,
// and a viewer when they are not.
func TestProxyIdentityAndRoles(t *testing.T) {
	t.Parallel()
	withViewers := serveIdentity(t, proxyConfig("127.0.0.1/32", "support", "finance"))
	anyReader := serveIdentity(t, proxyConfig("127.0.0.0/8"))
	cases := []struct {
		name, base string
		header     map[string][]string
		code       int
		want       string
	}{
		{"no user header", withViewers, map[string][]string{"X-Forwarded-Groups": {"sre"}}, 401, ""},
		{"two user headers", withViewers, map[string][]string{"X-Forwarded-Email": {"mallory@example.com", "ana@example.com"}, "X-Forwarded-Groups": {"sre"}}, 401, ""},
		{"blank user header", withViewers, map[string][]string{"X-Forwarded-Email": {"  "}, "X-Forwarded-Groups": {"sre"}}, 401, ""},
		{"operator group", withViewers, map[string][]string{"X-Forwarded-Email": {"ana@example.com"}, "X-Forwarded-Groups": {"support, payments-ops"}}, 200, "ana@example.com operator"},
		{"groups in two header lines", withViewers, map[string][]string{"X-Forwarded-Email": {"ana@example.com"}, "X-Forwarded-Groups": {"finance", "sre"}}, 200, "ana@example.com operator"},
		{"viewer group", withViewers, map[string][]string{"X-Forwarded-Email": {"bo@example.com"}, "X-Forwarded-Groups": {"everyone,finance"}}, 200, "bo@example.com viewer"},
		{"no listed group", withViewers, map[string][]string{"X-Forwarded-Email": {"cy@example.com"}, "X-Forwarded-Groups": {"everyone"}}, 403, ""},
		{"no groups at all", withViewers, map[string][]string{"X-Forwarded-Email": {"cy@example.com"}}, 403, ""},
		{"a group named like part of one", withViewers, map[string][]string{"X-Forwarded-Email": {"cy@example.com"}, "X-Forwarded-Groups": {"sre-interns"}}, 403, ""},
		{"no viewer groups: any user reads", anyReader, map[string][]string{"X-Forwarded-Email": {"dee@example.com"}}, 200, "dee@example.com viewer"},
		{"no viewer groups: operators still", anyReader, map[string][]string{"X-Forwarded-Email": {"ana@example.com"}, "X-Forwarded-Groups": {"sre"}}, 200, "ana@example.com operator"},
	}
	for _, c := range cases {
		code, body := get(t, c.base, c.header)
		if code != c.code || (c.want != "" && body != c.want) {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, body, c.code, c.want)
		}
	}
}

// WEBUI_PROXY_USER_HEADER and WEBUI_PROXY_GROUPS_HEADER name other
// headers (oauth2-proxy's X-Auth-Request-*); the default ones then count
// for nothing.
func TestProxyHeaderNames(t *testing.T) {
	t.Parallel()
	cfg := proxyConfig("127.0.0.1")
	cfg.ProxyUserHeader, cfg.ProxyGroupsHeader = "X-Auth-Request-Email", "X-Auth-Request-Groups"
	base := serveIdentity(t, cfg)
	if code, body := get(t, base, map[string][]string{"X-Auth-Request-Email": {"ana@example.com"}, "X-Auth-Request-Groups": {"sre"}}); code != 200 || body != "ana@example.com operator" {
		t.Errorf("X-Auth-Request-*: %d %q", code, body)
	}
	if code, _ := get(t, base, map[string][]string{"X-Forwarded-Email": {"ana@example.com"}, "X-Forwarded-Groups": {"sre"}}); code != 401 {
		t.Errorf("X-Forwarded-* when X-Auth-Request-* are configured: %d, want 401", code)
	}
	if code, body := get(t, base, map[string][]string{"X-Auth-Request-Email": {"ana@example.com"}, "X-Forwarded-Groups": {"sre"}}); code != 200 || body != "ana@example.com viewer" {
		t.Errorf("groups in the unconfigured header: %d %q, want a viewer", code, body)
	}
}

// Basic auth: its one user is an operator, named in the identity; a wrong
// login is 401 with a challenge.
func TestBasicIdentity(t *testing.T) {
	t.Parallel()
	base := serveIdentity(t, config.WebUI{LoginUser: "ops", LoginPassword: "s3cret", WebUIAccess: config.WebUIAccess{Auth: config.WebUIAuthBasic}})
	if code, body := get(t, base, map[string][]string{"Authorization": {"Basic b3BzOnMzY3JldA=="}}); code != 200 || body != "ops operator" {
		t.Errorf("ops:s3cret: %d %q", code, body)
	}
	for name, h := range map[string]map[string][]string{
		"wrong password":        {"Authorization": {"Basic b3BzOndyb25n"}},
		"none":                  {},
		"proxy headers instead": {"X-Forwarded-Email": {"ana@example.com"}, "X-Forwarded-Groups": {"sre"}},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: %d %q, want 401 with a Basic challenge", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

// Without login, a request from this machine is the operator "local"; one
// from elsewhere (which a loopback WEBUI_ADDR cannot receive) is 401.
func TestNoLoginIsLocalOperatorOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	base := serveIdentity(t, config.WebUI{WebUIAccess: config.WebUIAccess{Auth: config.WebUIAuthNone}})
	if code, body := get(t, base, nil); code != 200 || body != "local operator" {
		t.Errorf("from 127.0.0.1: %d %q", code, body)
	}
	a, err := New(config.WebUI{WebUIAccess: config.WebUIAccess{Auth: config.WebUIAuthNone}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = "192.0.2.10:40000"
	rec := httptest.NewRecorder()
	a.Middleware(http.NotFoundHandler()).ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("from 192.0.2.10: %d, want 401", rec.Code)
	}
}
